"""The sigmoid and its derivative, for NumPy arrays.

``1 / (1 + exp(-x))`` is exact but overflows (and warns) for x below about
-709 in float64 or -88 in float32, where ``exp(-x)`` becomes inf and the
quotient correctly becomes 0. We keep that exact formula, so the result is
bit-for-bit the seed's wherever the seed's is finite, and only silence the
overflow warning, which here signals nothing wrong.
"""

from __future__ import annotations

import numpy as np


def sigmoid(x, out=None):
    """Logistic sigmoid ``1 / (1 + exp(-x))``, silent for any finite x.

    Parameters
    ----------
    x : ndarray
    out : ndarray, optional
        Where to write the result (may be ``x`` itself).
    """
    with np.errstate(over="ignore"):
        return sigmoid_unchecked(x, out=out)


def sigmoid_unchecked(x, out=None):
    """:func:`sigmoid` without the ``errstate``: for loops that set it once."""
    out = np.negative(x, out=out)
    np.exp(out, out=out)
    out += 1
    return np.reciprocal(out, out=out)


def sigmoid_derivative(a, out=None):
    """The sigmoid's derivative written through its output: ``a * (1 - a)``."""
    out = np.subtract(1, a, out=out)
    out *= a
    return out
