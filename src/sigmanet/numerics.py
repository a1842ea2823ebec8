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


SATURATED_WITHIN = 1e-6  # an output this close to 0 or 1 is saturated: its sigmoid's slope is below 1e-6


def saturated_share(a, weights, biases, n_layers: int) -> float:
    """The largest share of a sigmoid layer's outputs within :data:`SATURATED_WITHIN` of 0 or 1.

    ``a`` is a few rows of the inputs (the checks use the first 256); the first ``n_layers`` layers are
    applied in turn (``biases`` may be None) and each one of two or more units is measured. 0 when ``a``
    has fewer than 8 rows: too few to call a layer saturated. Shared by :meth:`Network.diagnose` and the
    estimators' check of unscaled inputs, so the two cannot drift apart.
    """
    share = 0.0
    if a.shape[0] < 8:
        return share
    with np.errstate(over="ignore"):
        for k in range(n_layers):
            a = sigmoid_unchecked(a @ weights[k] + (0 if biases is None else biases[k]))
            if a.shape[1] >= 2:
                share = max(share, float(np.mean((a < SATURATED_WITHIN) | (a > 1 - SATURATED_WITHIN))))
    return share
