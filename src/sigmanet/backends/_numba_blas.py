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
from numba.core import types
from numba.extending import intrinsic

from ._numba_kernels import batch_rows

ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112


# -- a sigmoid whose exp LLVM can vectorise ------------------------------------------------------
#
# numba's math.exp is a scalar libm call (pip's llvmlite has no vector math library), and at
# 1024 x 64->256->16 the 278K exps of an iteration cost more than its GEMMs. Here exp(x) is
# computed branch-free: x = k ln2 + r with |r| <= ln2/2 (Cody-Waite, ln2 split in two), exp(r)
# by its Taylor polynomial (degree 13 in float64, 7 in float32: truncation far below an ulp),
# and 2^k built from the exponent bits. Measured against NumPy's sigmoid on 250K arguments from
# -800 to 800: at most 1.5 ulp apart, and identical where either saturates to exactly 0 or 1
# (exp overflowing to inf gives exactly 0, as the exact formula does).


@intrinsic
def _f64_from_bits(typingctx, bits):
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(types.float64))

    return types.float64(types.int64), codegen


@intrinsic
def _f32_from_bits(typingctx, bits):
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(types.float32))

    return types.float32(types.int32), codegen


_LOG2E, _LN2_HI, _LN2_LO = 1.4426950408889634, 6.93147180369123816490e-01, 1.90821492927058770002e-10
_INV_FACT = [1.0 / math.factorial(i) for i in range(14)]
F32 = np.float32
_LOG2E_F, _LN2_HI_F, _LN2_LO_F = F32(1.44269504), F32(0.693359375), F32(-2.12194440e-4)
_C7, _C6, _C5, _C4, _C3 = (F32(_INV_FACT[i]) for i in (7, 6, 5, 4, 3))
_HALF_F, _ONE_F, _X_MIN_F, _X_MAX_F, _OVER_F = F32(0.5), F32(1.0), F32(-87.0), F32(88.0), F32(88.72283)
_C13, _C12, _C11, _C10, _C9, _C8, _D7, _D6, _D5, _D4, _D3 = (_INV_FACT[i] for i in range(13, 2, -1))


@numba.njit(inline="always", error_model="numpy")
def sigmoid64(z):
    """1 / (1 + exp(-z)) in float64, vectorisable (see above)."""
    x = -z
    xc = min(max(x, -708.0), 709.0)
    k = math.floor(xc * _LOG2E + 0.5)
    r = (xc - k * _LN2_HI) - k * _LN2_LO
    p = _C13 * r + _C12
    p = p * r + _C11
    p = p * r + _C10
    p = p * r + _C9
    p = p * r + _C8
    p = p * r + _D7
    p = p * r + _D6
    p = p * r + _D5
    p = p * r + _D4
    p = p * r + _D3
    p = p * r + 0.5
    p = p * r + 1.0
    p = p * r + 1.0
    e = p * _f64_from_bits((np.int64(k) + 1023) << 52)
    e = np.inf if x > 709.782712893384 else e
    return 1.0 / (1.0 + e)


@numba.njit(inline="always", error_model="numpy")
def sigmoid32(z):
    """1 / (1 + exp(-z)) in float32, vectorisable (see above)."""
    x = -z
    xc = min(max(x, _X_MIN_F), _X_MAX_F)
    k = math.floor(xc * _LOG2E_F + _HALF_F)
    r = (xc - k * _LN2_HI_F) - k * _LN2_LO_F
    p = _C7 * r + _C6
    p = p * r + _C5
    p = p * r + _C4
    p = p * r + _C3
    p = p * r + _HALF_F
    p = p * r + _ONE_F
    p = p * r + _ONE_F
    e = p * _f32_from_bits((np.int32(k) + np.int32(127)) << np.int32(23))
    e = F32(np.inf) if x > _OVER_F else e
    return _ONE_F / (_ONE_F + e)


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
    sigmoid = sigmoid32 if dtype_name == "float32" else sigmoid64

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
        itemsize = X.itemsize
        for it in range(iterations):
            _, r0, m = batch_rows(start + it, n_rows, batch_size)
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
                bk = B[k]
                for i in range(m):
                    if use_bias:
                        for j in range(nout):
                            a[i, j] = sigmoid(a[i, j] + bk[j])
                    else:
                        for j in range(nout):
                            a[i, j] = sigmoid(a[i, j])
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
