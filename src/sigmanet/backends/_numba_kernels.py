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


@_jit()
def train_small(X, Y, W, B, sizes, woff, aoff, start, iterations, batch_size, scale_sum, bce, mean, use_bias, A, D):
    """Run ``iterations`` iterations of the seed's loop; return the first one's mean |error|.

    Flat buffers (one dtype throughout):
      W[woff[k] + p*n_{k+1} + j]  weight (p, j) of layer k, k = 0..L-1
      B[n_1 + .. + n_k + j]       bias j of layer k (ignored unless ``use_bias``)
      A[aoff[k] + i*n_k + p]      activation (i, p) of layer k for the batch, k = 0..L (layer 0 = X rows)
      D[aoff[k] + i*n_k + p]      delta (i, p) of layer k, k = 1..L
    sizes: n_0..n_L. batch_size <= 0 means full batch. scale_sum: the learning
    rate (the step is divided by the batch's rows when ``mean``).
    """
    L = sizes.shape[0] - 1
    n_rows = X.shape[0]
    one = A.dtype.type(1.0)
    zero = A.dtype.type(0.0)
    err0 = np.nan
    full = batch_size <= 0 or batch_size >= n_rows
    n_batches = 1 if full else (n_rows + batch_size - 1) // batch_size
    loaded = -1
    for it in range(iterations):
        # rows of this iteration's batch; copy them into layer 0 when they change
        b = 0 if full else (start + it) % n_batches
        r0 = 0 if full else b * batch_size
        r1 = n_rows if full else min(r0 + batch_size, n_rows)
        m = r1 - r0
        n0 = sizes[0]
        if b != loaded:
            for i in range(m):
                for p in range(n0):
                    A[i * n0 + p] = X[r0 + i, p]
            loaded = b
        # forward: a[k+1] = sigmoid(a[k] @ W[k] (+ b[k]))
        boff = 0
        for k in range(L):
            nin = sizes[k]
            nout = sizes[k + 1]
            ai = aoff[k]
            ao = aoff[k + 1]
            wo = woff[k]
            for i in range(m):
                for j in range(nout):
                    s = B[boff + j] if use_bias else zero
                    for p in range(nin):
                        s += A[ai + i * nin + p] * W[wo + p * nout + j]
                    A[ao + i * nout + j] = one / (one + math.exp(-s))
            boff += nout
        # output delta (and the interval's reported error, before any update)
        nL = sizes[L]
        aL = aoff[L]
        acc = 0.0
        for i in range(m):
            for j in range(nL):
                a = A[aL + i * nL + j]
                e = Y[r0 + i, j] - a
                if it == 0:
                    acc += abs(e)
                D[aL + i * nL + j] = e if bce else e * (a * (one - a))
        if it == 0:
            err0 = acc / (m * nL)
        # hidden deltas: d[k] = (d[k+1] @ W[k].T) * a[k]*(1-a[k]), all before any update
        for k in range(L - 1, 0, -1):
            nin = sizes[k]
            nout = sizes[k + 1]
            ak = aoff[k]
            dn = aoff[k + 1]
            wo = woff[k]
            for i in range(m):
                for p in range(nin):
                    s = zero
                    for j in range(nout):
                        s += D[dn + i * nout + j] * W[wo + p * nout + j]
                    a = A[ak + i * nin + p]
                    D[ak + i * nin + p] = s * (a * (one - a))
        # gradient step: W[k] += scale * a[k].T @ d[k+1]
        scale = A.dtype.type(scale_sum / m) if mean else A.dtype.type(scale_sum)
        boff = 0
        for k in range(L):
            nin = sizes[k]
            nout = sizes[k + 1]
            ak = aoff[k]
            dn = aoff[k + 1]
            wo = woff[k]
            for p in range(nin):
                for j in range(nout):
                    g = zero
                    for i in range(m):
                        g += A[ak + i * nin + p] * D[dn + i * nout + j]
                    W[wo + p * nout + j] += g * scale
            if use_bias:
                for j in range(nout):
                    g = zero
                    for i in range(m):
                        g += D[dn + i * nout + j]
                    B[boff + j] += g * scale
            boff += nout
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
