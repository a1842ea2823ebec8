"""The seed's step for numba, written once: inline pieces and one interval loop built from them.

The pieces (``@njit(inline="always")``) are the step's parts, each named for
what it does and each a plain reading of the seed's program: :func:`gemm`
(a matrix product, through BLAS or in loops), :func:`activate` (bias and
sigmoid, softmax or identity), :func:`output_delta` (with the error and the
loss), :func:`hidden_delta`, :func:`bias_gradient` and :func:`update_one`
(the optimizers' rules, element by element, as :mod:`sigmanet.optimizers`
writes them for arrays). :func:`interval_loop` is the one loop over a report
interval's iterations that calls them; umap-style, it is compiled into every
engine the backend runs:

* :data:`serial` and :data:`parallel`: the loop as it is, compiled once per
  dtype, cached on disk. ``ptr`` selects the matrix products: 0 runs them as
  loops (the fused engine, for small networks: no call between iterations
  costs more than the arithmetic), else it is the address of NumPy's own
  OpenBLAS ``cblas_?gemm`` (the compiled engine); ``T`` splits each batch's
  rows over that many threads (``prange``), each running single-threaded BLAS
  on its own cache-sized row chunks, then the threads share the update.
* the specialised engine (:mod:`._specialise`): the same loop's source,
  partially evaluated for one network (its sizes and options as constants,
  the layer loops unrolled, the pieces' bodies inlined), so LLVM turns a tiny
  network's iteration (the seed's 3-4-1) into straight-line code. It is
  generated because numba neither unrolls loops nor folds run-time options,
  and its own inlining of the whole loop took 18 s to compile; the generated
  function is derived from this module's code, not a second copy of the step.

Layout: every array is flat. ``P`` holds all parameters (every layer's
weights, row-major, at ``woff[k]``, then every bias at ``nW + boff[k]``); ``G``
holds ``T`` gradient sums of P's length; ``S`` the optimizer's slots (one row
each, P's length); ``A`` and ``D`` each thread's activations and deltas, layer
k of a chunk of ``cr`` rows at ``t * (A.size // T) + cr * aoff[k]``. Indices
follow :mod:`sigmanet._plan`: ``a[k+1] = act(a[k] @ W[k] + b[k])``.

Compiled code is cached on disk (``cache=True``) unless ``SIGMANET_NUMBA_CACHE=0``
or no cache folder is writable. ``fastmath`` is off: it would let LLVM assume
no inf/NaN, and the sigmoid relies on exp(-x) overflowing to inf.
``error_model="numpy"`` makes ``/`` plain IEEE division and lets LLVM
vectorise loops that divide.
"""

from __future__ import annotations

import math
import os
import types as types_
from typing import Any

import numba
import numpy as np
from llvmlite import ir
from numba import prange, types
from numba.extending import intrinsic

_CACHE = os.environ.get("SIGMANET_NUMBA_CACHE", "1").strip().lower() not in ("0", "false", "no", "")


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


def inline(fn):
    """A piece of the step: compiled on its own and called (LLVM inlines it where that pays);
    numba-level inlining (``inline="always"``) cost seconds of compile time per call site."""
    return _jit()(fn)


def inline_always(fn):
    return numba.njit(inline="always", error_model="numpy")(fn)


# -- calling BLAS through a function pointer held as an integer ----------------------------------
#
# NumPy's bundled OpenBLAS exports cblas_?gemm with 64-bit integers (scipy_cblas_dgemm64_); its
# address is found at run time (:mod:`._cblas`) and passed in as an int64. Calling it through this
# intrinsic keeps the compiled function free of ctypes objects, so numba caches it on disk.

ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112


@intrinsic
def _gemm_call(typingctx, ptr, order, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, like):
    """cblas_?gemm(order, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc) at address ``ptr``;
    ``like`` is a scalar of the arrays' dtype: alpha and beta are passed in it, whatever their type."""
    sig = types.void(ptr, order, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, like)

    def codegen(context, builder, signature, args):
        i32, i64, vp = ir.IntType(32), ir.IntType(64), ir.IntType(8).as_pointer()
        real_type = signature.args[15]
        real = context.get_value_type(real_type)
        fnty = ir.FunctionType(ir.VoidType(), [i32, i32, i32, i64, i64, i64, real, vp, i64, vp, i64, real, vp, i64])
        fn = builder.inttoptr(args[0], fnty.as_pointer())
        ints = [context.cast(builder, args[i], signature.args[i], types.int32) for i in (1, 2, 3)]
        longs = {i: context.cast(builder, args[i], signature.args[i], types.int64) for i in (4, 5, 6, 9, 11, 14)}
        alpha_, beta_ = (context.cast(builder, args[i], signature.args[i], real_type) for i in (7, 12))
        a_, b_, c_ = (builder.inttoptr(context.cast(builder, args[i], signature.args[i], types.int64), vp)
                      for i in (8, 10, 13))  # fmt: skip
        builder.call(
            fn, [*ints, longs[4], longs[5], longs[6], alpha_, a_, longs[9], b_, longs[11], beta_, c_, longs[14]]
        )
        return context.get_dummy_value()

    return sig, codegen


# -- a sigmoid computed in vector registers ------------------------------------------------------
#
# numba's math.exp is a scalar libm call (pip's llvmlite has no vector math library): on long rows
# the exps of an iteration cost more than its GEMMs. Here exp(x) is computed branch-free, written
# directly in LLVM IR: x = k ln2 + r with |r| <= ln2/2 (Cody-Waite, ln2 split in two), exp(r) by its
# Taylor polynomial (degree 13 in float64, 7 in float32: truncation far below an ulp) evaluated by
# Estrin's scheme with fused multiply-adds (4 dependent steps instead of Horner's 13 multiplies and
# 13 adds: a tiny network's iteration is one chain of dependent layers, so the latency is the cost),
# and 2^k built from the exponent bits. Measured against NumPy's sigmoid on 100K arguments from -60
# to 60: at most 4.7e-16 (float64) and 1.4e-7 (float32) apart, relatively; saturated where either
# gives exactly 0 or 1.
#
# The same IR serves one element (fast_sigmoid, which the loop vectoriser widens on long loops) and a
# register's worth in place (sigmoid_inplace: a tiny layer's 4 to 16 units are fewer than the loop
# vectoriser's minimum trip count), so every element's result is the same whichever path took it.

_LOG2E, _LN2_HI, _LN2_LO = 1.4426950408889634, 6.93147180369123816490e-01, 1.90821492927058770002e-10
_INV_FACT = [1.0 / math.factorial(i) for i in range(14)]
F32 = np.float32
_SIGMOID_CONSTANTS: dict[int, dict[str, Any]] = {
    64: dict(lo=-708.0, hi=709.0, log2e=_LOG2E, ln2_hi=_LN2_HI, ln2_lo=_LN2_LO, over=709.782712893384,
             taylor=_INV_FACT, bias=1023, shift=52),
    32: dict(lo=-87.0, hi=88.0, log2e=float(F32(1.44269504)), ln2_hi=float(F32(0.693359375)),
             ln2_lo=float(F32(-2.12194440e-4)), over=float(F32(88.72283)),
             taylor=[float(F32(c)) for c in _INV_FACT[:8]], bias=127, shift=23),
}  # fmt: skip


def _sigmoid_ir(builder, z, bits: int, lanes: int):
    """IR for 1 / (1 + exp(-z)) of ``z``: a float of ``bits`` (lanes == 1) or a vector of ``lanes``."""
    c = _SIGMOID_CONSTANTS[bits]
    real = ir.DoubleType() if bits == 64 else ir.FloatType()
    integer = ir.IntType(bits)
    ty, ity = (real, integer) if lanes == 1 else (ir.VectorType(real, lanes), ir.VectorType(integer, lanes))
    suffix = f"f{bits}" if lanes == 1 else f"v{lanes}f{bits}"  # llvmlite names scalar intrinsics only

    def const(value, of=real, vector=ty):
        return ir.Constant(of, value) if lanes == 1 else ir.Constant(vector, [ir.Constant(of, value)] * lanes)

    module = builder.module
    floor = module.declare_intrinsic(f"llvm.floor.{suffix}", fnty=ir.FunctionType(ty, [ty]))
    fma_ = module.declare_intrinsic(f"llvm.fma.{suffix}", fnty=ir.FunctionType(ty, [ty, ty, ty]))

    def fma(a, b, d):
        return builder.call(fma_, [a, b, d])

    x = builder.fneg(z)
    lo, hi = const(c["lo"]), const(c["hi"])
    xc = builder.select(builder.fcmp_ordered(">", lo, x), lo, x)  # NaN stays NaN
    xc = builder.select(builder.fcmp_ordered("<", hi, xc), hi, xc)
    k = builder.call(floor, [fma(xc, const(c["log2e"]), const(0.5))])
    r = builder.fsub(builder.fsub(xc, builder.fmul(k, const(c["ln2_hi"]))), builder.fmul(k, const(c["ln2_lo"])))
    # Estrin: pairs c[2j] + c[2j+1] r, then pairs of pairs with r^2, r^4, r^8
    terms = [fma(const(c["taylor"][i + 1]), r, const(c["taylor"][i])) for i in range(0, len(c["taylor"]), 2)]
    power = builder.fmul(r, r)
    while len(terms) > 1:
        terms = [
            fma(terms[i + 1], power, terms[i]) if i + 1 < len(terms) else terms[i] for i in range(0, len(terms), 2)
        ]
        if len(terms) > 1:
            power = builder.fmul(power, power)
    scale = builder.shl(
        builder.add(builder.fptosi(k, ity), const(c["bias"], integer, ity)), const(c["shift"], integer, ity)
    )
    e = builder.fmul(terms[0], builder.bitcast(scale, ty))
    e = builder.select(builder.fcmp_ordered(">", x, const(c["over"])), const(float("inf")), e)
    return builder.fdiv(const(1.0), builder.fadd(const(1.0), e))


@intrinsic
def fast_sigmoid(typingctx, z):
    """The vectorisable sigmoid of a float32 or float64 scalar (see above)."""
    if not isinstance(z, types.Float):
        return None

    def codegen(context, builder, signature, args):
        return _sigmoid_ir(builder, args[0], z.bitwidth, 1)

    return z(z), codegen


def _sigmoid_lanes(register_bytes: int):
    """An intrinsic ``f(Z, z0)``: Z[z0 : z0 + lanes] <- sigmoid, lanes = register_bytes / itemsize."""

    @intrinsic
    def sigmoid_lanes(typingctx, Z, z0):
        if not (isinstance(Z, types.Array) and isinstance(Z.dtype, types.Float)):
            return None
        bits = Z.dtype.bitwidth
        lanes = register_bytes * 8 // bits

        def codegen(context, builder, signature, args):
            data = context.make_array(signature.args[0])(context, builder, args[0]).data
            at = builder.gep(data, [context.cast(builder, args[1], signature.args[1], types.intp)])
            vec = ir.VectorType(context.get_value_type(Z.dtype), lanes)
            ptr = builder.bitcast(at, vec.as_pointer())
            z = builder.load(ptr, align=bits // 8, typ=vec)
            builder.store(_sigmoid_ir(builder, z, bits, lanes), ptr, align=bits // 8)
            return context.get_dummy_value()

        return types.void(Z, z0), codegen

    return sigmoid_lanes


sigmoid_wide = _sigmoid_lanes(64)  # 8 float64 or 16 float32: one AVX-512 register (two AVX2 ones)
sigmoid_narrow = _sigmoid_lanes(32)  # 4 float64 or 8 float32


@inline_always
def sigmoid_inplace(Z, z0, count):
    """Z[z0 : z0 + count] <- sigmoid: whole registers, then a half register, then one at a time."""
    wide = 64 // Z.itemsize
    q = 0
    while q + wide <= count:
        sigmoid_wide(Z, z0 + q)
        q += wide
    if q + wide // 2 <= count:
        sigmoid_narrow(Z, z0 + q)
        q += wide // 2
    while q < count:
        Z[_u(z0 + q)] = fast_sigmoid(Z[_u(z0 + q)])
        q += 1


# -- the pieces ----------------------------------------------------------------------------------
#
# Each piece takes flat arrays with offsets and indexes them with unsigned integers (``_u``): numba
# then skips its negative-index check, which otherwise stops LLVM from vectorising the loops
# (measured: 4.6 ns per sigmoid instead of 0.3). Views would do the same, but each costs a call to
# numba's reshape helper and two reference-count updates: half the time of the seed's iteration.


@inline_always
def _u(i):
    return np.uint64(i)


@inline
def gemm(ptr, ta, tb, m, n, k, alpha, A, a0, lda, B, b0, ldb, beta, C, c0, ldc):
    """C (m x n at c0, row stride ldc) = alpha op(A) @ op(B) + beta C; beta is 0 or 1.

    op(A) is m x k (A stored k x m when ``ta``), op(B) k x n (B stored n x k
    when ``tb``). ``ptr`` != 0: NumPy's OpenBLAS does it; 0: loops, in the
    three forms the step uses (forward NN, deltas NT, gradients TN), each
    with its innermost loop over contiguous memory.
    """
    if ptr != 0:
        size = A.itemsize
        _gemm_call(
            ptr,
            np.int32(ROW_MAJOR),
            np.int32(TRANS if ta else NO_TRANS),
            np.int32(TRANS if tb else NO_TRANS),
            np.int64(m),
            np.int64(n),
            np.int64(k),
            alpha,
            A.ctypes.data + a0 * size,
            np.int64(lda),
            B.ctypes.data + b0 * size,
            np.int64(ldb),
            beta,
            C.ctypes.data + c0 * size,
            np.int64(ldc),
            C[c0],
        )
        return
    if beta == 0:
        for i in range(m):
            for j in range(n):
                C[_u(c0 + i * ldc + j)] = 0
    if not ta and not tb:  # C[i, j] += A[i, p] B[p, j]
        for i in range(m):
            for p in range(k):
                xa = alpha * A[_u(a0 + i * lda + p)]
                for j in range(n):
                    C[_u(c0 + i * ldc + j)] += xa * B[_u(b0 + p * ldb + j)]
    elif tb:  # C[i, p] += sum_j A[i, j] B[p, j]
        for i in range(m):
            for p in range(n):
                acc = A.dtype.type(0)
                for j in range(k):
                    acc += A[_u(a0 + i * lda + j)] * B[_u(b0 + p * ldb + j)]
                C[_u(c0 + i * ldc + p)] += alpha * acc
    else:  # C[p, j] += sum_i A[i, p] B[i, j]
        for i in range(k):
            for p in range(m):
                xt = alpha * A[_u(a0 + i * lda + p)]
                for j in range(n):
                    C[_u(c0 + p * ldc + j)] += xt * B[_u(b0 + i * ldb + j)]


@inline
def csr_forward(Xp, Xi, Xd, order, gathered, q0, m, P, w0, n0, nout, C, c0):
    """C (m x nout) = X[rows] @ W[0] for a CSR X: each stored value adds its weight row."""
    for i in range(m):
        for j in range(nout):
            C[_u(c0 + i * nout + j)] = 0
        crow = order[_u(q0 + i)] if gathered else q0 + i
        for q in range(Xp[_u(crow)], Xp[_u(crow + 1)]):
            xv = Xd[_u(q)]
            wrow = w0 + Xi[_u(q)] * nout
            for j in range(nout):
                C[_u(c0 + i * nout + j)] += xv * P[_u(wrow + j)]


@inline
def csr_gradient(Xp, Xi, Xd, order, gathered, q0, m, D, d0, nout, G, g0, first, n0):
    """G[0] (n0 x nout at g0) (+)= X[rows].T @ d[1] for a CSR X."""
    if first:
        for e in range(n0 * nout):
            G[_u(g0 + e)] = 0
    for i in range(m):
        grow_ = order[_u(q0 + i)] if gathered else q0 + i
        for q in range(Xp[_u(grow_)], Xp[_u(grow_ + 1)]):
            xg = Xd[_u(q)]
            grow = g0 + Xi[_u(q)] * nout
            for j in range(nout):
                G[_u(grow + j)] += xg * D[_u(d0 + i * nout + j)]


@inline
def activate(Z, z0, m, n, P, b0, use_bias, kind):
    """Z (m x n at z0) <- act(Z + b): kind 0 sigmoid, 1 softmax (over each row), 2 identity."""
    if use_bias:
        for i in range(m):
            for j in range(n):
                Z[_u(z0 + i * n + j)] += P[_u(b0 + j)]
    if kind == 0:
        sigmoid_inplace(Z, z0, m * n)
    elif kind == 1:
        for i in range(m):
            r = z0 + i * n
            top = Z[_u(r)]
            for j in range(1, n):
                top = max(top, Z[_u(r + j)])
            total = Z.dtype.type(0)
            for j in range(n):
                ex = math.exp(Z[_u(r + j)] - top)
                Z[_u(r + j)] = ex
                total += ex
            for j in range(n):
                Z[_u(r + j)] /= total


@inline_always
def row_loss(y, a, loss, eps):
    """One output's share of its row's loss: half the squared error, or the cross-entropy's term."""
    if loss == 0:
        e = y - a
        return 0.5 * e * e
    prob = min(max(a, eps), 1.0 - eps)
    if loss == 1:
        return -(y * math.log(prob) + (1.0 - y) * math.log(1.0 - prob))
    return -y * math.log(prob)


@inline
def output_delta(
    A, a0, D, d0, Y, SW, order, gathered, q0, m, n, derivative, weighted, want_error, want_loss, loss, eps, part
):
    """D (m x n at d0) <- sw * (y - a) (* a (1 - a) for the seed's squared error); adds to ``part`` the
    chunk's sum sw |y - a| (with ``want_error``), sum sw l (with ``want_loss``) and sum sw."""
    one = A.dtype.type(1)
    for i in range(m):
        src = order[_u(q0 + i)] if gathered else q0 + i
        wt = SW[_u(src)] if weighted else one
        ar, yr = a0 + i * n, src * n
        if want_error or want_loss:
            err = 0.0
            rl = 0.0
            for j in range(n):
                diff = Y[_u(yr + j)] - A[_u(ar + j)]
                err += abs(diff)
                if want_loss:
                    rl += row_loss(float(Y[_u(yr + j)]), float(A[_u(ar + j)]), loss, eps)
            part[0] += err * wt
            part[2] += rl * wt
        part[1] += wt
        dr = d0 + i * n
        if derivative:
            for j in range(n):
                av = A[_u(ar + j)]
                D[_u(dr + j)] = (Y[_u(yr + j)] - av) * (av * (one - av))
        else:
            for j in range(n):
                D[_u(dr + j)] = Y[_u(yr + j)] - A[_u(ar + j)]
        if weighted:
            for j in range(n):
                D[_u(dr + j)] *= wt


@inline
def hidden_delta(D, d0, A, a0, count):
    """D <- D * A (1 - A) over ``count`` elements: D holds d[k+1] @ W[k].T."""
    one = A.dtype.type(1)
    for q in range(count):
        av = A[_u(a0 + q)]
        D[_u(d0 + q)] *= av * (one - av)


@inline
def bias_gradient(G, g0, D, d0, m, n, first):
    """G (n at g0) (+)= the column sums of D (m x n at d0), row by row (contiguous)."""
    if first:
        for j in range(n):
            G[_u(g0 + j)] = 0
    for i in range(m):
        for j in range(n):
            G[_u(g0 + j)] += D[_u(d0 + i * n + j)]


@inline_always
def update_one(par, gsum, decay, S, idx, optimizer, lr_r, r, lr_corr, mu, b1, b2, c1, c2, guard):
    """Parameter ``par``'s new value from its ascent sum ``gsum``, by the rule ``optimizer``
    (0 sgd, 1 momentum, 2 nesterov, 3 adam; scikit-learn's rules, as :func:`sigmanet.optimizers.update`).
    Every number is in the parameters' dtype (no float64 detour for float32 nets); ``c1`` and ``c2``
    are ``1 - b1`` and ``1 - b2`` computed in float64 and rounded once, as NumPy's ``(1 - beta_1) * g``
    on a float32 array does.

    Local names here are unique in the module: numba's parallel lowering types variables by name
    across inlined pieces.
    """
    if decay != 0:
        gsum = gsum - decay * par
    if optimizer == 3:
        grad = -r * gsum
        mom = b1 * S[0, _u(idx)] + c1 * grad
        sq = b2 * S[1, _u(idx)] + c2 * (grad * grad)
        S[0, _u(idx)] = mom
        S[1, _u(idx)] = sq
        return par - lr_corr * mom / (math.sqrt(sq) + guard)
    stp = lr_r * gsum
    if optimizer == 0:
        return par + stp
    vel = mu * S[0, _u(idx)] + stp
    S[0, _u(idx)] = vel
    if optimizer == 1:
        return par + vel
    return par + (mu * vel + stp)


@inline
def update_span(P, G, S, lo, hi, nW, nP, T, optimizer, decay_w, lr_r, r_, lr_corr, mu, b1, b2, c1, c2, eps_):
    """P[lo:hi] <- each parameter's rule on its ascent sum (the T threads' sums of G added first, in
    thread order); the L2 decay on the weights (P[:nW]) only. ``optimizer`` is a constant at each call
    site, so every rule's loop is branch-free and vectorised."""
    for t_u in range(1, T):
        for q in range(lo, hi):
            G[_u(q)] += G[_u(t_u * nP + q)]
    zero_u = P.dtype.type(0)
    for q in range(lo, min(hi, nW)):
        P[_u(q)] = update_one(P[_u(q)], G[_u(q)], decay_w, S, q, optimizer, lr_r, r_, lr_corr, mu, b1, b2, c1, c2,
                               eps_)  # fmt: skip
    for q in range(max(lo, nW), hi):
        P[_u(q)] = update_one(P[_u(q)], G[_u(q)], zero_u, S, q, optimizer, lr_r, r_, lr_corr, mu, b1, b2, c1, c2,
                               eps_)  # fmt: skip


# -- the interval loop -----------------------------------------------------------------------------


def thread_chunks(t, data, state, layout, r0, m, flags):
    """Thread ``t``'s share of one batch (rows ``r0`` .. ``r0 + m``): its chunks t, t + T, ... of ``cr``
    rows each, forward, output delta (its error and loss into ``part[t]``), deltas, and the gradient
    sums into ``G[t]``, single-threaded BLAS or loops (``ptr``)."""
    X, Y, SW, order, Xp, Xi, Xd = data
    P, G, S, stats, totals, part, A, D = state
    sizes, woff, boff, aoff, nW, cr, T, ptr = layout
    output, loss, derivative, use_bias, weighted, want_error, want_loss, gathered, sparse, eps = flags
    L = len(sizes) - 1
    n0, nL = sizes[0], sizes[L]
    nP = P.shape[0]
    per = A.shape[0] // T
    n_chunks = (m + cr - 1) // cr
    zero = P.dtype.type(0)
    one = P.dtype.type(1)
    for q in range(4):
        part[t, q] = 0.0
    base = t * per
    g0 = t * nP
    first = True
    c = t
    while c < n_chunks:
        q0 = r0 + c * cr
        mc = min(cr, r0 + m - q0)
        # layer 0: X's rows where they are (contiguous), else gathered into the chunk's buffer
        x_in = X
        x0 = q0 * n0
        if gathered and not sparse:
            x_in = A
            x0 = base
            for ii in range(mc):  # unsigned indices: a vectorised copy per row
                xrow = order[_u(q0 + ii)] * n0
                arow = base + ii * n0
                for pp in range(n0):
                    A[_u(arow + pp)] = X[_u(xrow + pp)]
        # forward: a[k+1] = act(a[k] @ W[k] + b[k])
        for k in range(L):
            nin, nout = sizes[k], sizes[k + 1]
            out0 = base + cr * aoff[k + 1]
            if k == 0 and sparse:
                csr_forward(Xp, Xi, Xd, order, gathered, q0, mc, P, woff[0], n0, nout, A, out0)
            elif k == 0:
                gemm(ptr, False, False, mc, nout, nin, one, x_in, x0, nin, P, woff[0], nout,
                     zero, A, out0, nout)  # fmt: skip
            else:
                gemm(ptr, False, False, mc, nout, nin, one, A, base + cr * aoff[k], nin, P, woff[k],
                     nout, zero, A, out0, nout)  # fmt: skip
            activate(A, out0, mc, nout, P, nW + boff[k], use_bias, output if k == L - 1 else 0)
        # the output delta, the error and the loss
        output_delta(A, base + cr * aoff[L], D, base + cr * aoff[L], Y, SW, order, gathered, q0, mc, nL,
                     derivative, weighted, want_error, want_loss, loss, eps, part[t])  # fmt: skip
        # deltas from the output down, all before any update
        for k in range(L - 1, 0, -1):
            nin, nout = sizes[k], sizes[k + 1]
            gemm(ptr, False, True, mc, nin, nout, one, D, base + cr * aoff[k + 1], nout, P, woff[k],
                 nout, zero, D, base + cr * aoff[k], nin)  # fmt: skip
            hidden_delta(D, base + cr * aoff[k], A, base + cr * aoff[k], mc * nin)
        # gradient sums: G[k] (+)= a[k].T @ d[k+1], Gb[k] (+)= column sums of d[k+1]
        beta = zero if first else one
        for k in range(L):
            nin, nout = sizes[k], sizes[k + 1]
            d_out = base + cr * aoff[k + 1]
            if k == 0 and sparse:
                csr_gradient(Xp, Xi, Xd, order, gathered, q0, mc, D, d_out, nout, G, g0 + woff[0], first, n0)
            elif k == 0:
                gemm(ptr, True, False, nin, nout, mc, one, x_in, x0, nin, D, d_out, nout, beta, G,
                     g0 + woff[0], nout)  # fmt: skip
            else:
                gemm(ptr, True, False, nin, nout, mc, one, A, base + cr * aoff[k], nin, D, d_out,
                     nout, beta, G, g0 + woff[k], nout)  # fmt: skip
            if use_bias:
                bias_gradient(G, g0 + nW + boff[k], D, d_out, mc, nout, first)
        first = False
        c += T
    if first:  # no chunk for this thread in this batch: its sums are zero
        for e in range(nP):
            G[g0 + e] = 0


# The interval loop's options, in the order its ``options`` tuple holds them (the numbers of
# ``sigmanet._plan.kernel_options`` and the engine's own; a test checks the loop unpacks these).
OPTIONS = (
    "batch_size",
    "learning_rate",
    "invscaling",
    "power_t",
    "mean",
    "output",
    "loss",
    "derivative",
    "use_bias",
    "weighted",
    "optimizer",
    "momentum",
    "beta_1",
    "beta_2",
    "epsilon",
    "alpha",
    "step",
    "track_all",
    "gathered",
    "sparse",
    "update",
    "eps",
)


def interval_loop(data, state, layout, start, iterations, options):
    """Run ``iterations`` iterations from global iteration ``start``; returns the optimizer's step count.

    ``data`` = (X, Y, SW, order, Xp, Xi, Xd): the rows (flat; sample weights, the epoch's row order,
    a CSR X's parts, each a dummy where unused); ``state`` = (P, G, S, stats, totals, part, A, D);
    ``layout`` = (sizes, woff, boff, aoff, nW, cr, T, ptr); ``options``: the values :data:`OPTIONS` names.
    ``stats`` (5,) receives the interval's report (see ``sigmanet._plan.Stats``); ``totals`` (4,)
    the last iteration's batch sums (sum sw |e|, sum sw, sum sw l, rows): with ``update`` False
    (one iteration, no step) they and ``G[:P.size]`` are the batch's gradient sums. ``part`` (T, 4)
    is scratch. (Tuples, because numba cannot inline a function of more than about 32 arguments.)
    """
    X, Y, SW, order, Xp, Xi, Xd = data
    P, G, S, stats, totals, part, A, D = state
    sizes, woff, boff, aoff, nW, cr, T, ptr = layout
    (batch_size, learning_rate, invscaling, power_t, mean, output, loss, derivative, use_bias, weighted, optimizer,
     momentum, beta_1, beta_2, epsilon, alpha, step, track_all, gathered, sparse, update,
     eps) = options  # fmt: skip
    L = len(sizes) - 1
    n_rows = Y.shape[0] // sizes[L]
    nL = sizes[L]
    nP = P.shape[0]
    for t in range(5):
        stats[t] = 0.0
    for it in range(iterations):
        j = start + it
        nb = 1
        r0 = 0
        m = n_rows
        if 0 < batch_size < n_rows:
            nb = (n_rows + batch_size - 1) // batch_size
            r0 = (j % nb) * batch_size
            m = min(r0 + batch_size, n_rows) - r0
        want_error = it == 0
        want_loss = it == 0 or track_all
        flags = (output, loss, derivative, use_bias, weighted, want_error, want_loss, gathered, sparse, eps)
        for t in prange(T):  # each thread its chunks t, t + T, ...: forward, deltas, gradient sums
            _thread(np.int64(t), data, state, layout, np.int64(r0), np.int64(m), flags)
        # the batch's sums, in a fixed order
        abs_e = 0.0
        weight = 0.0
        lsum = 0.0
        for t in range(T):
            abs_e += part[t, 0]
            weight += part[t, 1]
            lsum += part[t, 2]
        totals[0] = abs_e
        totals[1] = weight
        totals[2] = lsum
        totals[3] = m
        if want_error:
            stats[0] += abs_e
            stats[1] += weight * nL
        if want_loss:
            per_row = m / weight if weight > 0 else 0.0
            stats[2] += lsum * per_row
            stats[3] += m
            if alpha > 0:
                sq = 0.0
                for e in range(nW):
                    sq += float(P[e]) * float(P[e])
                stats[4] += 0.5 * alpha * sq * per_row
        if not update:
            for t in range(1, T):  # the gradient sums, in G[:nP]
                for e in range(nP):
                    G[e] += G[t * nP + e]
            continue
        # the step: the threads' sums added in a fixed order, each parameter by the optimizer's rule
        lr = learning_rate
        if invscaling:
            lr = lr / (float(j // nb) * n_rows + 1.0) ** power_t
        r = (1.0 / weight if weight > 0 else 0.0) if mean else 1.0
        step += 1
        corr = math.sqrt(1.0 - beta_2**step) / (1.0 - beta_1**step) if optimizer == 3 else 1.0
        real = P.dtype.type
        lr_r = real(lr * r)
        r_ = real(r)
        lr_corr = real(lr * corr)
        mu = real(momentum)
        b1 = real(beta_1)
        b2 = real(beta_2)
        c1 = real(1.0 - beta_1)
        c2 = real(1.0 - beta_2)
        eps_ = real(epsilon)
        decay_w = real(alpha)
        for share in prange(T):
            lo = share * nP // T
            hi = (share + 1) * nP // T
            if optimizer == 0:  # each rule its own call: a constant there
                update_span(P, G, S, lo, hi, nW, nP, T, 0, decay_w, lr_r, r_, lr_corr, mu, b1, b2, c1, c2, eps_)
            elif optimizer == 1:
                update_span(P, G, S, lo, hi, nW, nP, T, 1, decay_w, lr_r, r_, lr_corr, mu, b1, b2, c1, c2, eps_)
            elif optimizer == 2:
                update_span(P, G, S, lo, hi, nW, nP, T, 2, decay_w, lr_r, r_, lr_corr, mu, b1, b2, c1, c2, eps_)
            else:
                update_span(P, G, S, lo, hi, nW, nP, T, 3, decay_w, lr_r, r_, lr_corr, mu, b1, b2, c1, c2, eps_)
    return step


# The thread's work is one call per thread and batch, compiled once for both variants (numba's
# parallel lowering types the variables of a prange body by name, and a large inlined body defeats
# it; inlined in the serial variant it only doubled the compile time). The specialised engine inlines
# it, and everything else, at the source level (._specialise).
_thread = _jit()(thread_chunks)


def _variant(fn, name, **globals_):
    """``fn`` under another name (and with some globals replaced): numba's disk cache is keyed by the
    function's name and line, not by its compile options, so each variant needs a name of its own
    (else the parallel variant loads the serial one's machine code)."""
    copy = types_.FunctionType(fn.__code__, dict(fn.__globals__, **globals_), name, fn.__defaults__, fn.__closure__)
    copy.__qualname__ = name
    copy.__doc__ = fn.__doc__
    return copy


serial = _jit()(_variant(interval_loop, "interval_loop_serial"))
parallel = _jit(parallel=True)(_variant(interval_loop, "interval_loop_parallel"))
