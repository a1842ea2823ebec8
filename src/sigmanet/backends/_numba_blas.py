"""A whole report interval in one compiled call, the GEMMs through NumPy's own OpenBLAS.

Why: between the small nets the fused kernel handles and the large tables the
blocked path handles, an iteration lasts well under a millisecond, and the
Python between iterations (views, thread handoffs, limits) was most of it.
Here the loop, the batch slicing, the GEMMs and the fused epilogues all run in
one ``@njit(nogil=True)`` call. The GEMMs go to the ``cblas_?gemm`` that
NumPy's bundled OpenBLAS exports (``scipy_cblas_dgemm64_``: 64-bit integers),
called through ctypes: one BLAS, one thread pool (NumPy's), no SciPy, and the
weight update fused into the GEMM (``alpha`` = the step, ``beta`` = 1).

The price: numba cannot cache a function that holds a ctypes pointer, so the
kernel is compiled once per process and dtype (about a second; reported
apart by the benchmarks). Where NumPy's BLAS does not export the symbols (a
NumPy built against another BLAS), :func:`available` says why and the backend
keeps its other strategies.
"""

from __future__ import annotations

import ctypes
import functools
import math

import numba
import numpy as np

ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112


@functools.cache
def _gemm(dtype_name: str):
    """NumPy's OpenBLAS ``cblas_{s,d}gemm`` (64-bit integer interface) as a ctypes function, or None."""
    from threadpoolctl import threadpool_info

    numpy_dir = "numpy.libs"
    paths = [
        lib["filepath"]
        for lib in threadpool_info()
        if lib.get("internal_api") == "openblas" and numpy_dir in lib["filepath"]
    ]
    if not paths:
        return None
    lib = ctypes.CDLL(paths[0])
    name = "scipy_cblas_sgemm64_" if dtype_name == "float32" else "scipy_cblas_dgemm64_"
    if not hasattr(lib, name):
        return None
    real = ctypes.c_float if dtype_name == "float32" else ctypes.c_double
    fn = getattr(lib, name)
    fn.argtypes = [
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_int64,
        ctypes.c_int64,
        ctypes.c_int64,
        real,
        ctypes.c_void_p,
        ctypes.c_int64,
        ctypes.c_void_p,
        ctypes.c_int64,
        real,
        ctypes.c_void_p,
        ctypes.c_int64,
    ]
    fn.restype = None
    return fn


def available(dtype) -> str | None:
    """None when the compiled BLAS loop can run for ``dtype``, else why not."""
    if _gemm(np.dtype(dtype).name) is None:
        return "NumPy's BLAS does not export scipy_cblas_?gemm64_ (NumPy built against another BLAS)"
    return None


@functools.cache
def kernel(dtype_name: str):
    """The interval kernel for one dtype, compiled on first call (not cached on disk: it holds a ctypes pointer)."""
    gemm = _gemm(dtype_name)

    @numba.njit(nogil=True, error_model="numpy")
    def train(X, Y, W, B, A, D, start, iterations, batch_size, learning_rate, bce, mean, use_bias):
        """Run ``iterations`` iterations; return the first one's mean |y - out|.

        W[k] (n_k, n_{k+1}) and B[k] (n_{k+1},) are updated in place; A[k], D[k]
        (m_max, n_{k+1}) are the activations and deltas of layer k+1 (A[-1] the
        output). X (n_rows, n_0), Y (n_rows, n_L), row-major.
        """
        L = len(W)
        n_rows = X.shape[0]
        one = X.dtype.type(1.0)
        zero = X.dtype.type(0.0)
        err0 = np.nan
        full = batch_size <= 0 or batch_size >= n_rows
        n_batches = 1 if full else (n_rows + batch_size - 1) // batch_size
        itemsize = X.itemsize
        for it in range(iterations):
            b = 0 if full else (start + it) % n_batches
            r0 = 0 if full else b * batch_size
            m = (n_rows if full else min(r0 + batch_size, n_rows)) - r0
            x_ptr = X.ctypes.data + np.uint64(r0 * X.shape[1] * itemsize)  # uint64 + int64 would be float64
            # forward: A[k] = sigmoid(A[k-1] @ W[k] + B[k])
            for k in range(L):
                nin, nout = W[k].shape
                a_in = x_ptr if k == 0 else A[k - 1].ctypes.data
                gemm(
                    ROW_MAJOR,
                    NO_TRANS,
                    NO_TRANS,
                    m,
                    nout,
                    nin,
                    one,
                    a_in,
                    nin,
                    W[k].ctypes.data,
                    nout,
                    zero,
                    A[k].ctypes.data,
                    nout,
                )
                a = A[k]
                for i in range(m):
                    for j in range(nout):
                        z = a[i, j] + B[k][j] if use_bias else a[i, j]
                        a[i, j] = one / (one + math.exp(-z))
            # output delta, and the interval's reported error before any update
            out, dL = A[L - 1], D[L - 1]
            nL = out.shape[1]
            acc = 0.0
            for i in range(m):
                for j in range(nL):
                    av = out[i, j]
                    e = Y[r0 + i, j] - av
                    if it == 0:
                        acc += abs(e)
                    dL[i, j] = e if bce else e * (av * (one - av))
            if it == 0:
                err0 = acc / (m * nL)
            # hidden deltas: D[k-1] = (D[k] @ W[k].T) * A[k-1](1 - A[k-1]), from the output down
            for k in range(L - 1, 0, -1):
                nin, nout = W[k].shape
                gemm(
                    ROW_MAJOR,
                    NO_TRANS,
                    TRANS,
                    m,
                    nin,
                    nout,
                    one,
                    D[k].ctypes.data,
                    nout,
                    W[k].ctypes.data,
                    nout,
                    zero,
                    D[k - 1].ctypes.data,
                    nin,
                )
                d, a = D[k - 1], A[k - 1]
                for i in range(m):
                    for p in range(nin):
                        av = a[i, p]
                        d[i, p] *= av * (one - av)
            # the step, fused into the GEMM: W[k] += scale * A[k-1].T @ D[k]
            scale = X.dtype.type(learning_rate / m if mean else learning_rate)
            for k in range(L):
                nin, nout = W[k].shape
                a_in = x_ptr if k == 0 else A[k - 1].ctypes.data
                gemm(
                    ROW_MAJOR,
                    TRANS,
                    NO_TRANS,
                    nin,
                    nout,
                    m,
                    scale,
                    a_in,
                    nin,
                    D[k].ctypes.data,
                    nout,
                    one,
                    W[k].ctypes.data,
                    nout,
                )
                if use_bias:
                    d = D[k]
                    for j in range(nout):
                        g = X.dtype.type(0.0)
                        for i in range(m):
                            g += d[i, j]
                        B[k][j] += g * scale
        return err0

    return train
