"""Datasets: the tutorial's table and deterministic scaled-up tables.

``make_table(n, d, o)`` draws n rows of d inputs in [0, 1) (the last column is
the constant 1 that plays the seed's bias role) and o 0/1 targets that a hidden
layer can learn but a single layer cannot: target j is the XOR of two random
half-space tests, with a few labels flipped as noise. Rows are generated in
chunks straight into the output arrays, so nothing bigger than the result is
ever held, and the result depends only on (n, d, o, seed, noise), not on the
chunk size.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import DTypeLike

from . import _validation as v

ROW_BLOCK = 1 << 16  # rows drawn from one random stream


def tutorial_table(dtype: DTypeLike = "float64") -> tuple[np.ndarray, np.ndarray]:
    """The tutorial's 4-row table: X (4 x 3) and y (4 x 1)."""
    dt = v.check_dtype(dtype)
    X = np.array([[0, 0, 1], [0, 1, 1], [1, 0, 1], [1, 1, 1]], dtype=dt)
    y = np.array([[0], [1], [1], [0]], dtype=dt)
    return X, y


def make_table(
    n: int,
    d: int = 3,
    o: int = 1,
    *,
    seed: int = 0,
    noise: float = 0.02,
    dtype: DTypeLike = "float64",
    first_row: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """A deterministic n x d -> n x o table a hidden layer can learn.

    Parameters
    ----------
    n : int
        Rows (4 to millions).
    d : int, default 3
        Input columns, at least 2 (the last is the constant 1).
    o : int, default 1
        Output columns.
    seed : int, default 0
    noise : float, default 0.02
        Fraction of labels flipped, in [0, 0.5).
    dtype : {"float64", "float32"}
    first_row : int, default 0
        Rows ``first_row .. first_row + n - 1`` of the same table, a multiple
        of ``ROW_BLOCK`` (65536): so a Dask worker can build its own chunk.

    Returns
    -------
    X : ndarray (n, d), y : ndarray (n, o)
    """
    n = v.check_int("n", n)
    d = v.check_int("d", d, minimum=2)
    o = v.check_int("o", o)
    seed = v.check_int("seed", seed, minimum=0)
    if not 0 <= noise < 0.5:
        raise ValueError(f"noise must be in [0, 0.5), got {noise!r}")
    dt = v.check_dtype(dtype)
    first_row = v.check_int("first_row", first_row, minimum=0)
    if first_row % ROW_BLOCK:
        raise ValueError(f"first_row must be a multiple of {ROW_BLOCK}, got {first_row}")
    rs = np.random.default_rng([seed, 0])
    # two half-space tests per output, over the d-1 varying inputs
    u = rs.standard_normal((d - 1, o))
    w = rs.standard_normal((d - 1, o))
    X = np.empty((n, d), dt)
    y = np.empty((n, o), dt)
    for c, start in enumerate(range(0, n, ROW_BLOCK), start=first_row // ROW_BLOCK):
        stop = min(start + ROW_BLOCK, n)
        g = np.random.default_rng([seed, 1, c])  # one stream per block: independent of how far we go
        xc = g.random((stop - start, d - 1))
        centred = xc - 0.5
        label = (centred @ u > 0) ^ (centred @ w > 0)
        label ^= g.random((stop - start, o)) < noise
        X[start:stop, :-1] = xc
        X[start:stop, -1] = 1
        y[start:stop] = label
    return X, y


def as_dask(X: np.ndarray, rows_per_chunk: int) -> Any:
    """A NumPy array as a Dask array chunked by rows (extra ``dask``; for tests and small examples)."""
    import dask.array as da

    return da.from_array(X, chunks=(rows_per_chunk, -1) if X.ndim == 2 else (rows_per_chunk,))


def make_dask_table(
    n: int,
    d: int = 3,
    o: int = 1,
    *,
    blocks_per_chunk: int = 4,
    seed: int = 0,
    noise: float = 0.02,
    dtype: DTypeLike = "float64",
) -> tuple[Any, Any]:
    """:func:`make_table` as two Dask arrays whose chunks are built where they are computed (extra ``dask``).

    Each chunk holds ``blocks_per_chunk`` x 65536 rows (the last fewer), and
    is drawn by the worker that computes it: nothing is sent from the client,
    and the rows equal ``make_table(n, ...)``'s.
    """
    import dask
    import dask.array as da

    step = blocks_per_chunk * ROW_BLOCK
    starts = list(range(0, n, step))
    parts = [
        dask.delayed(make_table, nout=2, pure=True)(
            min(step, n - s), d, o, seed=seed, noise=noise, dtype=dtype, first_row=s
        )
        for s in starts
    ]
    X = da.concatenate([da.from_delayed(p[0], (min(step, n - s), d), dtype=dtype) for p, s in zip(parts, starts)])
    y = da.concatenate([da.from_delayed(p[1], (min(step, n - s), o), dtype=dtype) for p, s in zip(parts, starts)])
    return X, y
