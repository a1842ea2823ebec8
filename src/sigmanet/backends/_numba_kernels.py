"""numba kernels. Imported only by the numba backend (it imports numba).

Two kinds:

* ``train_small``: a whole report interval of the seed's loop in one compiled
  call, for networks whose activations fit in cache. Everything lives in flat
  preallocated buffers; the loop allocates nothing.
* parallel elementwise epilogues for large data (the GEMMs stay in BLAS):
  each reads and writes an activation once.

Compiled code is cached on disk (``cache=True``) unless ``SIGMANET_NUMBA_CACHE=0``
or no cache folder is writable (then compiled per process). ``fastmath`` is
off: it would let LLVM assume no inf/NaN, and the sigmoid relies on exp(-x)
overflowing to inf, and on 1e-9 agreement with NumPy. ``error_model="numpy"``
makes ``/`` plain IEEE division (1/(1+inf) = 0) instead of a checked one that
raises ZeroDivisionError, and lets LLVM vectorise loops that divide.
"""

from __future__ import annotations

import math
import os

import numba
import numpy as np

_CACHE = os.environ.get("SIGMANET_NUMBA_CACHE", "1") not in ("0", "false", "no", "")


def _jit(**options):
    """njit with caching where a cache folder is writable, without where not."""

    options.setdefault("error_model", "numpy")

    def wrap(fn):
        if _CACHE:
            try:
                return numba.njit(cache=True, nogil=True, **options)(fn)
            except RuntimeError:  # "no locator available": nowhere to write the cache
                pass
        return numba.njit(nogil=True, **options)(fn)

    return wrap


# Layers narrower than this use scalar dot products (a running sum in a
# register); wider ones accumulate whole rows, which LLVM vectorises.
VECTOR_WIDTH = 8


@_jit()
def forward_sigmoid(A, W, WT, B, k, m, nin, nout, use_bias):
    """A[k+1, :m, :nout] = sigmoid(A[k] @ W[k] (+ B[k]))."""
    one = A.dtype.type(1.0)
    for i in range(m):
        if nout < VECTOR_WIDTH:
            for j in range(nout):
                s = B[k, j] if use_bias else A.dtype.type(0.0)
                for p in range(nin):
                    s += A[k, i, p] * WT[k, j, p]
                A[k + 1, i, j] = one / (one + math.exp(-s))
        else:
            for j in range(nout):
                A[k + 1, i, j] = B[k, j] if use_bias else A.dtype.type(0.0)
            for p in range(nin):
                x = A[k, i, p]
                for j in range(nout):
                    A[k + 1, i, j] += x * W[k, p, j]
            for j in range(nout):
                A[k + 1, i, j] = one / (one + math.exp(-A[k + 1, i, j]))


@_jit()
def hidden_delta_layer(A, D, W, WT, k, m, nin, nout):
    """D[k, :m, :nin] = (D[k+1] @ W[k].T) * A[k]*(1-A[k])."""
    one = A.dtype.type(1.0)
    for i in range(m):
        if nin < VECTOR_WIDTH:
            for p in range(nin):
                s = A.dtype.type(0.0)
                for j in range(nout):
                    s += D[k + 1, i, j] * W[k, p, j]
                a = A[k, i, p]
                D[k, i, p] = s * (a * (one - a))
        else:
            for p in range(nin):
                D[k, i, p] = 0.0
            for j in range(nout):
                dj = D[k + 1, i, j]
                for p in range(nin):
                    D[k, i, p] += dj * WT[k, j, p]
            for p in range(nin):
                a = A[k, i, p]
                D[k, i, p] *= a * (one - a)


@_jit()
def update_layer(A, D, W, WT, G, k, m, nin, nout, scale):
    """W[k] += scale * A[k].T @ D[k+1] (the gradient summed over rows in order), WT kept in step."""
    if nout < VECTOR_WIDTH:
        for p in range(nin):
            for j in range(nout):
                g = A.dtype.type(0.0)
                for i in range(m):
                    g += A[k, i, p] * D[k + 1, i, j]
                W[k, p, j] += g * scale
                WT[k, j, p] = W[k, p, j]
    else:
        for p in range(nin):
            for j in range(nout):
                G[p, j] = 0.0
        for i in range(m):
            for p in range(nin):
                x = A[k, i, p]
                for j in range(nout):
                    G[p, j] += x * D[k + 1, i, j]
        for p in range(nin):
            for j in range(nout):
                W[k, p, j] += G[p, j] * scale
        for j in range(nout):
            for p in range(nin):
                WT[k, j, p] = W[k, p, j]


@_jit()
def batch_rows(iteration, n_rows, batch_size):
    """(batch index, first row, rows) of global iteration ``iteration``'s batch.

    The compiled twin of ``base.batch_bounds``: batch_size <= 0 means full
    batch; otherwise consecutive slices in row order, the last possibly short.
    """
    if batch_size <= 0 or batch_size >= n_rows:
        return 0, 0, n_rows
    n_batches = (n_rows + batch_size - 1) // batch_size
    b = iteration % n_batches
    r0 = b * batch_size
    return b, r0, min(r0 + batch_size, n_rows) - r0


@_jit()
def train_small(X, Y, W, B, A, D, WT, G, sizes, start, iterations, batch_size, learning_rate, bce, mean, use_bias):
    """Run ``iterations`` iterations of the seed's loop; return the first one's mean |error|.

    Every layer is padded to the widest, w = max(sizes), so all indices are
    loop variables: LLVM can then drop numba's negative-index checks and
    vectorise the contiguous innermost loops. Shapes:
      W, WT (L, w, w)    W[k, p, j] weight (p, j) of layer k; WT[k, j, p] the same (kept in step)
      B (L, w)           biases (unused unless ``use_bias``);  G (w, w) gradient scratch
      A, D (L+1, m, w)   activations and deltas; A[0] holds the batch's X rows
    sizes: n_0..n_L. batch_size <= 0 means full batch. The step is the learning
    rate (divided by the batch's rows when ``mean``). Every sum runs over its
    index in order.
    """
    L = sizes.shape[0] - 1
    n_rows = X.shape[0]
    one = A.dtype.type(1.0)
    err0 = np.nan
    for k in range(L):
        for p in range(sizes[k]):
            for j in range(sizes[k + 1]):
                WT[k, j, p] = W[k, p, j]
    loaded = -1
    for it in range(iterations):
        # rows of this iteration's batch; copy them into layer 0 when they change
        b, r0, m = batch_rows(start + it, n_rows, batch_size)
        if b != loaded:
            for i in range(m):
                for p in range(sizes[0]):
                    A[0, i, p] = X[r0 + i, p]
            loaded = b
        # forward: a[k+1] = sigmoid(a[k] @ W[k] (+ b[k]))
        for k in range(L):
            forward_sigmoid(A, W, WT, B, k, m, sizes[k], sizes[k + 1], use_bias)
        # output delta (and the interval's reported error, before any update)
        nL = sizes[L]
        acc = 0.0
        for i in range(m):
            for j in range(nL):
                a = A[L, i, j]
                e = Y[r0 + i, j] - a
                if it == 0:
                    acc += abs(e)
                D[L, i, j] = e if bce else e * (a * (one - a))
        if it == 0:
            err0 = acc / (m * nL)
        # hidden deltas, from the output down, all before any update
        for k in range(L - 1, 0, -1):
            hidden_delta_layer(A, D, W, WT, k, m, sizes[k], sizes[k + 1])
        # gradient step: W[k] += scale * a[k].T @ d[k+1]
        scale = A.dtype.type(learning_rate / m) if mean else A.dtype.type(learning_rate)
        for k in range(L):
            update_layer(A, D, W, WT, G, k, m, sizes[k], sizes[k + 1], scale)
            if use_bias:
                for j in range(sizes[k + 1]):
                    g = A.dtype.type(0.0)
                    for i in range(m):
                        g += D[k + 1, i, j]
                    B[k, j] += g * scale
    return err0


# -- elementwise epilogues for the large-data path --
# The GEMMs stay in BLAS and exp in NumPy's SIMD ufunc (this llvmlite has no
# vector exp); each kernel below fuses the rest of one step into a single pass
# over a row chunk that sits in cache. They run serially: parallelism comes
# from worker threads each taking its own chunks (nogil).


@_jit()
def negate_bias(z, b, use_bias):
    """z (m, n) <- -(z + b): the sigmoid's argument, ready for exp."""
    m, n = z.shape
    for i in range(m):
        for j in range(n):
            z[i, j] = -(z[i, j] + b[j]) if use_bias else -z[i, j]


@_jit()
def reciprocal_one_plus(z):
    """z <- 1 / (1 + z): finishes the sigmoid after exp."""
    m, n = z.shape
    one = z.dtype.type(1.0)
    for i in range(m):
        for j in range(n):
            z[i, j] = one / (one + z[i, j])


@_jit()
def output_delta(y, a, d, bce, want_error):
    """d (m, n) <- (y - a) * a*(1-a), or y - a for cross-entropy; returns sum |y - a| if asked."""
    m, n = a.shape
    one = a.dtype.type(1.0)
    acc = 0.0
    for i in range(m):
        for j in range(n):
            e = y[i, j] - a[i, j]
            if want_error:
                acc += abs(e)
            d[i, j] = e if bce else e * (a[i, j] * (one - a[i, j]))
    return acc


@_jit()
def hidden_delta(d, a):
    """d (m, n) <- d * a*(1-a) in place (d holds d[k+1] @ W[k].T)."""
    m, n = a.shape
    one = a.dtype.type(1.0)
    for i in range(m):
        for j in range(n):
            d[i, j] = d[i, j] * (a[i, j] * (one - a[i, j]))


@_jit()
def add_column_sums(g, d):
    """g (n,) += column sums of d (m, n): the bias gradient."""
    m, n = d.shape
    for i in range(m):
        for j in range(n):
            g[j] += d[i, j]
