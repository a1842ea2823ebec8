"""Embedding a network in other numerical code: a compiled predict, and loss and gradients for given weights.

``compiled_predict`` turns a trained network into a numba function with a
snapshot of its weights bound in as constants, which the caller's own
``@njit`` code (or CUDA kernels: ``target="cuda"``) calls with no Python in
between, no allocation and no shared state: one source, :func:`_row_source`,
compiled for both targets.

``loss_and_gradients`` returns what a fit minimises and its gradient, for
weights the caller holds, without training: to drive ``scipy.optimize`` or an
update of the caller's own. It runs on any backend, through the backend's own
gradient function (the one Dask workers call), so it is the same arithmetic
as a training step. The scikit-learn estimators' ``solver="lbfgs"`` is built
on it.

The objective, for a batch of rows with weights ``sw`` (1 when not given)::

    r * (sum_i sw_i l_i + alpha/2 * sum_k ||W[k]||^2)

with ``l_i`` the row's loss (half its squared error summed over the outputs,
or its cross-entropy) and ``r = 1 / sum_i sw_i`` for ``reduction="mean"``, 1
for ``"sum"``. Its gradient is exact: the checks compare it with central
finite differences.
"""

from __future__ import annotations

import builtins
import functools
import math
import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import _validation as v
from ._arrays import array_namespace, from_user
from ._plan import OUTPUT_CODE, TrainConfig, reduction_factor
from .backends import for_input, get_backend, on_stream
from .errors import BackendUnavailableError


def loss_and_gradients(
    weights: Sequence[Any],
    biases: Sequence[Any] | None,
    X: Any,
    y: Any,
    *,
    backend: str = "auto",
    output: str = "sigmoid",
    loss: str | None = None,
    reduction: str = "sum",
    alpha: float = 0.0,
    sample_weight: Any = None,
    class_weight: dict | str | None = None,
    input_range: tuple[Any, Any] | None = None,
    threads: int | None = None,
    stream: Any = None,
) -> tuple[float, list[Any], list[Any] | None]:
    """The objective a fit minimises, and its gradient, at ``weights`` (and ``biases``), on (X, y).

    Parameters
    ----------
    weights : sequence of arrays (n_k, n_{k+1})
    biases : sequence of arrays (n_{k+1},), or None for a network without bias
    X, y : arrays
        As :meth:`sigmanet.Network.fit` takes them (NumPy, CuPy, Dask, SciPy sparse X, DLPack).
    backend, output, loss, reduction, alpha, sample_weight, class_weight
        As :class:`sigmanet.Network` and :meth:`~sigmanet.Network.fit` take them.
    input_range : (lo, hi), optional
        Scale X by ``(X - lo) / (hi - lo)`` per column first, as a network
        with an input range does (:meth:`sigmanet.Network.set_input_range`);
        the gradient is the one with respect to the weights, the scaling fixed.
    threads : int, optional
        As :class:`sigmanet.Network` takes it.
    stream : CUDA stream, optional
        As :meth:`sigmanet.Network.fit` takes it (CuPy only).

    Returns
    -------
    (loss, weight_gradients, bias_gradients)
        A float, and arrays shaped like ``weights`` and ``biases`` (None
        without biases) in the weights' dtype, of X's kind: NumPy for NumPy,
        SciPy sparse and Dask inputs (gradients are small: Dask's are
        computed), CuPy for CuPy, and for a DLPack producer (PyTorch, JAX) its
        own arrays, made from the host result without a copy where the library
        allows (JAX without ``jax_enable_x64`` keeps float32 only).

    Raises
    ------
    ValueError, TypeError
        For inconsistent shapes, bad data or options, before any work.
    """
    weights = _sequence("weights", weights, "2-D arrays (n_k, n_{k+1})")
    ws = [_host(f"weights[{k}]", w) for k, w in enumerate(weights)]
    if not ws or any(w.ndim != 2 for w in ws):
        raise ValueError("weights must be a non-empty sequence of 2-D arrays (n_k, n_{k+1})")
    layers = v.check_layers([ws[0].shape[0]] + [w.shape[1] for w in ws])
    for k in range(1, len(ws)):
        if ws[k].shape[0] != ws[k - 1].shape[1]:
            raise ValueError(f"weights[{k}] has {ws[k].shape[0]} rows, but weights[{k - 1}] gives {ws[k - 1].shape[1]}")
    first = ws[0].dtype
    if first.kind == "f" and first.name not in v.DTYPES:
        raise ValueError(
            f"weights[0] has dtype {first}: the gradients are computed in one of {v.DTYPES}; cast the weights"
        )
    dtype = np.dtype(first if first.kind == "f" else np.float64)
    ws = [v.check_parameter(f"weights[{k}]", w, dtype) for k, w in enumerate(ws)]
    bs = None
    if biases is not None:
        biases = _sequence("biases", biases, "1-D arrays, or None")
        bs = [_host(f"biases[{k}]", b) for k, b in enumerate(biases)]
        if len(bs) != len(ws) or any(b.shape != (n,) for b, n in zip(bs, layers[1:])):
            raise ValueError(f"biases must hold {len(ws)} vectors of sizes {list(layers[1:])}")
        bs = [v.check_parameter(f"biases[{k}]", b, dtype) for k, b in enumerate(bs)]
    output = v.check_output(output, layers[-1])
    loss = v.check_loss(loss, output)
    v.check_choice("reduction", reduction, v.REDUCTIONS)
    alpha = v.check_real("alpha", alpha, 0.0, np.inf, high_open=True)
    scaling = None if input_range is None else _checked_range(input_range, layers[0])
    plain = get_backend(backend, threads=threads)
    with on_stream(plain, stream, X):  # the gradients of the caller's kind are made there too
        X, caller = from_user("X", X)
        y, _ = from_user("y", y)
        be = for_input(plain, X)
        X = be.check_inputs(X, layers[0], dtype=dtype)
        y = be.check_targets(y, layers[-1], X.shape[0], output, dtype=dtype)
        if scaling is not None:
            X = be.scale(X, scaling, dtype)
        sw = None
        if sample_weight is not None:
            sample_weight, _ = from_user("sample_weight", sample_weight)
            sw = be.check_sample_weight(sample_weight, X.shape[0], dtype=dtype)
        if class_weight is not None:
            per_class = be.class_weights(class_weight, y, output)
            sw = per_class if sw is None else sw * per_class
        config = TrainConfig(loss=loss, reduction=reduction, output=output, alpha=alpha)
        if hasattr(be, "inner"):  # Dask: each chunk's sums where it lives, added here
            g = _dask_gradients(be, ws, bs, X, y, config, sw)
        else:
            g = be.gradients(ws, bs, X, y, config, None if sw is None else be.to_device(sw, dtype))
        r = reduction_factor(config, g.weight)
        penalty = 0.5 * alpha * sum(float(np.vdot(w, w)) for w in ws)
        value = r * (g.loss + penalty)
        weight_grads = [(r * (alpha * w - gw)).astype(dtype) for w, gw in zip(ws, g.weights)]
        bias_grads = None if g.biases is None else [(-r * gb).astype(dtype) for gb in g.biases]
        if caller.library != "numpy":  # the caller's kind: CuPy, or a DLPack producer's (views of these arrays)
            weight_grads = [plain.to_user(a, caller) for a in weight_grads]
            bias_grads = None if bias_grads is None else [plain.to_user(a, caller) for a in bias_grads]
        return float(value), weight_grads, bias_grads


def _sequence(name: str, items: Any, of: str) -> list:
    """``items`` (a list, tuple, generator, or other iterable of parameters) as a list; not a string."""
    if items is None or isinstance(items, (str, bytes)):
        raise TypeError(f"{name} must be a sequence of {of}; got {type(items).__name__}")
    try:
        return list(items)
    except TypeError:
        raise TypeError(f"{name} must be a sequence of {of}; got {type(items).__name__}") from None


def _host(name: str, a: Any) -> np.ndarray:
    """A parameter the caller holds (NumPy, CuPy, PyTorch, JAX, nested lists) as a host NumPy array."""
    a, _ = from_user(name, a)
    if array_namespace(a) is not np:
        a = a.get()
    return np.asarray(a)


def _checked_range(input_range: Any, n_inputs: int) -> tuple[np.ndarray, np.ndarray]:
    """``(lo, hi)``: ``n_inputs`` finite float64 minima and maxima with ``hi >= lo``."""
    try:
        lo, hi = input_range
    except (TypeError, ValueError):
        raise TypeError("input_range must be a pair (lo, hi) of per-column minima and maxima") from None
    return v.check_input_range(lo, hi, n_inputs, "input_range")


def _dask_gradients(be: Any, ws: list, bs: list | None, X: Any, y: Any, config: TrainConfig, sw: Any) -> Any:
    from .backends.dask import DaskTrainer

    trainer = DaskTrainer(be.inner, ws, bs, X, y, config, sw, None, output=config.output)
    return trainer._gradient(0, trainer.n_rows)


# -- a trained network inside the caller's own compiled code --------------------------------------

# Bytes of one call's activations kept on the stack (two layers' worth, ping-pong): 64 KiB, far
# inside any thread's stack (numba's and OpenMP's workers included). Wider networks take
# ``scratch=True`` and the caller's buffer.
STACK_BYTES = 1 << 16
# CUDA constant memory, where the device function's weights live (64 KiB on every NVIDIA GPU).
CUDA_CONSTANT_BYTES = 1 << 16
TARGETS = ("cpu", "cuda")


def scratch_size(net: Any) -> int:
    """Elements of the buffer ``compiled_predict(net, scratch=True)`` needs per call (per thread):
    twice the widest layer after the inputs."""
    return 2 * max(net.layers[1:])


@dataclass(frozen=True)
class _Snapshot:
    """What a compiled predict binds in: the network's parameters flat, as step.py lays them out.

    ``P`` holds every layer's weights row-major at ``woff[k]`` (W[k] is (n_k, n_{k+1})), then
    every bias at ``boff[k]`` (zeros without bias), in the network's dtype; ``lo``/``span`` the
    input scaling ``(x - lo) / span`` in float64, as :meth:`Backend.scale` computes it.
    """

    P: np.ndarray
    sizes: np.ndarray
    woff: np.ndarray
    boff: np.ndarray
    lo: np.ndarray
    span: np.ndarray
    scaled: bool
    bias: bool
    output: int  # OUTPUT_CODE: 0 sigmoid, 1 softmax, 2 identity
    dtype: np.dtype
    width: int  # the widest layer after the inputs

    @classmethod
    def of(cls, net: Any) -> _Snapshot:
        layers = [int(n) for n in net.layers]
        dt = np.dtype(net.dtype)
        weights, biases = net.weights, net.biases  # host copies: later training never reaches them
        woff, boff, at = [], [], 0
        for w in weights:
            woff.append(at)
            at += w.size
        for n in layers[1:]:
            boff.append(at)
            at += n
        P = np.zeros(at, dt)
        for w, o in zip(weights, woff):
            P[o : o + w.size] = w.ravel()
        if biases is not None:
            for b, o in zip(biases, boff):
                P[o : o + b.size] = b
        r = net.input_range
        if r is None:
            lo, span = np.zeros(layers[0]), np.ones(layers[0])
        else:
            lo, hi = (np.asarray(a, np.float64) for a in r)
            span = np.where(hi > lo, hi - lo, 1.0)
        return cls(
            P,
            np.array(layers, np.int64),
            np.array(woff, np.int64),
            np.array(boff, np.int64),
            lo,
            span,
            r is not None,
            biases is not None,
            OUTPUT_CODE[net.output],
            dt,
            max(layers[1:]),
        )


def _row_source(s: _Snapshot) -> Callable[..., None]:
    """``row(x, out, buf)``: one row through the network, activations in ``buf`` (2 * width elements).

    Plain Python over the snapshot's constants, compiled by numba for the CPU (:func:`compiled_predict`)
    and for CUDA devices alike; the arithmetic of :meth:`Backend.predict`, row by row: ``z = a @ W[k]``
    summed in the order of j, then ``+ b[k]``, then the activation (sigmoid ``1 / (1 + exp(-z))``;
    softmax with the row's maximum subtracted; identity).
    """
    P, SIZES, WOFF, BOFF, LO, SPAN = s.P, s.sizes, s.woff, s.boff, s.lo, s.span
    SCALED, BIAS, OUT, H = s.scaled, s.bias, s.output, s.width
    L, N0, NL = len(s.sizes) - 1, int(s.sizes[0]), int(s.sizes[-1])
    DT = s.dtype.type
    ZERO, ONE = DT(0), DT(1)

    def row(x, out, buf):  # pragma: no cover - compiled (the CUDA simulator runs it as Python)
        n = SIZES[1]
        for o in range(n):
            buf[o] = ZERO
        for j in range(N0):  # the first product reads x itself, scaled as predict scales it
            if SCALED:
                xj = DT((x[j] - LO[j]) / SPAN[j])
            else:
                xj = DT(x[j])
            w = WOFF[0] + j * n
            for o in range(n):
                buf[o] += xj * P[w + o]
        src = 0
        for k in range(L):
            n = SIZES[k + 1]
            if BIAS:
                for o in range(n):
                    buf[src + o] += P[BOFF[k] + o]
            if k < L - 1 or OUT == 0:
                for o in range(n):
                    buf[src + o] = ONE / (ONE + math.exp(-buf[src + o]))
            elif OUT == 1:
                top = buf[src]
                for o in range(1, n):
                    if buf[src + o] > top:  # not max(): CUDA's max() overload wants a device to compile
                        top = buf[src + o]
                total = ZERO
                for o in range(n):
                    buf[src + o] = math.exp(buf[src + o] - top)
                    total += buf[src + o]
                for o in range(n):
                    buf[src + o] /= total
            if k == L - 1:
                break
            dst = H - src
            m = SIZES[k + 2]
            for o in range(m):
                buf[dst + o] = ZERO
            for j in range(n):
                aj = buf[src + j]
                w = WOFF[k + 1] + j * m
                for o in range(m):
                    buf[dst + o] += aj * P[w + o]
            src = dst
        for o in range(NL):
            out[o] = buf[src + o]

    return row


@functools.cache
def _argument_types() -> Any:
    """An intrinsic ``check(x, out)`` that compiles to nothing and, while numba types a call, refuses what
    ``f`` cannot take (a list, an integer or read-only ``out``) with a message saying so: without it an
    integer ``out`` was filled with truncated probabilities, and the rest failed deep in numba's typing."""
    from numba import types
    from numba.core.errors import TypingError
    from numba.extending import intrinsic

    @intrinsic
    def check(typingctx, x, out):
        if not isinstance(x, types.Array) or not isinstance(x.dtype, (types.Float, types.Integer, types.Boolean)):
            raise TypingError(f"compiled_predict's f: x must be a NumPy array of numbers, got {x}")
        if not isinstance(out, types.Array) or not isinstance(out.dtype, types.Float):
            raise TypingError(f"compiled_predict's f: out must be a NumPy array of floats, got {out}")
        if not out.mutable:
            raise TypingError(f"compiled_predict's f: out must be writable, got {out}")

        def codegen(context, builder, signature, args):
            return context.get_dummy_value()

        return types.none(x, out), codegen

    return check


def _stack_buffer(n: int, dtype: np.dtype) -> Any:
    """An intrinsic returning a pointer to ``n`` elements of ``dtype`` on the calling function's stack.

    The space is reserved in the function's entry block (a fixed-size ``alloca``): no allocation, no
    state shared between threads, gone when the call returns.
    """
    from numba import types
    from numba.core import cgutils
    from numba.extending import intrinsic
    from numba.np.numpy_support import from_dtype

    element = from_dtype(dtype)

    @intrinsic
    def stack(typingctx):
        def codegen(context, builder, signature, args):
            return cgutils.alloca_once(builder, context.get_value_type(element), size=n)

        return types.CPointer(element)(), codegen

    return stack


def compiled_predict(net: Any, *, scratch: bool = False, target: str = "cpu") -> Any:
    """A numba-compiled ``f(x, out)`` with ``net``'s weights bound in, for the caller's own ``@njit`` code.

    ``f`` computes what ``net.predict`` computes (the input range's scaling, the biases, the hidden
    sigmoids and the output layer: sigmoid, softmax or identity), in the network's dtype (float32 or
    float64), one row at a time:

    * ``f(x, out)`` with ``x`` one row ``(n0,)`` fills ``out`` ``(nL,)``;
    * with ``x`` a block ``(m, n0)`` it fills ``out`` ``(m, nL)``, row by row.

    ``x`` and ``out`` may be any float arrays (strided views too); ``out`` is written in its own dtype.
    Call it from ``@njit`` code (pass ``f`` in as an argument, or close over it) or from Python; the
    first call of each signature compiles it (about a second; not cached on disk).

    Snapshot: the weights, biases and input range are copied into ``f`` when it is made, as
    compile-time constants. Training the network further, or :meth:`~sigmanet.Network.set_weights`,
    does not change ``f``; call ``compiled_predict`` again for the new weights.

    Calls allocate nothing and share nothing: the activations live on the calling thread's stack
    (``2 * max(layers[1:])`` elements, at most :data:`STACK_BYTES`), so ``f`` is safe to call from
    any number of threads at once, ``numba.prange`` bodies included. It starts no threads, takes no
    lock and holds no GIL (``nogil``): the caller decides the parallelism. Wrong shapes raise
    ValueError; arguments ``f`` cannot take (a list, an integer or read-only ``out``) are refused when
    numba types the call, with a ``TypingError`` whose message names the argument.

    Parameters
    ----------
    net : sigmanet.Network
    scratch : bool, default False
        True: ``f(x, out, scratch)`` takes the activations' buffer from the caller instead of the
        stack, for networks wider than the stack allows: a 1-D array of the network's dtype with at
        least :func:`scratch_size` elements, one per thread (under ``prange``, e.g. a row of a
        ``(numba.get_num_threads(), scratch_size(net))`` array picked by ``numba.get_thread_id()``).
    target : {"cpu", "cuda"}, default "cpu"
        "cuda": a numba CUDA *device function* ``g(x, out)`` for one row (1-D ``x`` and ``out``,
        device arrays or views of them, e.g. ``g(X[i], out[i])`` in the thread of row i), to call
        from the caller's own ``@cuda.jit`` kernels; CuPy arrays pass straight into such kernels.
        Its activations live in the thread's local memory, its weights in constant memory (the
        parameters must fit :data:`CUDA_CONSTANT_BYTES`). No shape checks run on the device: the
        caller's kernel gives rows of ``n0`` and ``nL`` elements.

    Returns
    -------
    numba dispatcher (``target="cpu"``) or CUDA device function (``target="cuda"``)

    Raises
    ------
    TypeError
        If ``net`` is not a Network, or an option is of the wrong type.
    ValueError
        If ``target`` is unknown, or the network is too wide for the stack (use ``scratch=True``) or
        for CUDA constant memory.
    sigmanet.BackendUnavailableError
        If numba is not installed.

    Examples
    --------
    >>> import numba, numpy as np, sigmanet as sn
    >>> net = sn.Network([3, 4, 1], backend="numpy", seed=1)
    >>> f = net.compiled_predict()
    >>> @numba.njit
    ... def total(f, X):
    ...     out, s = np.empty(1), 0.0
    ...     for i in range(X.shape[0]):
    ...         f(X[i], out)
    ...         s += out[0]
    ...     return s
    >>> X = np.random.default_rng(0).random((100, 3))
    >>> bool(np.isclose(total(f, X), net.predict(X).sum()))
    True
    """
    if not all(hasattr(net, name) for name in ("get_state", "layers", "output")):  # a Network (no import of it:
        raise TypeError(f"compiled_predict needs a sigmanet.Network, got {type(net).__name__}")  # network imports us)
    scratch = v.check_bool("scratch", scratch)
    v.check_choice("target", target, TARGETS)
    try:
        import numba
    except ImportError as e:
        raise BackendUnavailableError(f"compiled_predict needs numba ({e}); pip install numba") from None
    s = _Snapshot.of(net)
    if target == "cuda":
        return _cuda_device_function(s)
    itemsize = s.dtype.itemsize
    if not scratch and 2 * s.width * itemsize > STACK_BYTES:
        raise ValueError(
            f"a layer of {s.width} units needs {2 * s.width * itemsize} bytes of activations per call, more "
            f"than the {STACK_BYTES} bytes compiled_predict keeps on the stack; use scratch=True and pass a "
            f"buffer of sigmanet.embedding.scratch_size(net) = {2 * s.width} elements"
        )
    row = numba.njit(nogil=True, error_model="numpy")(_row_source(s))
    check = _argument_types()
    N0, NL, NBUF, ITEMSIZE = int(s.sizes[0]), int(s.sizes[-1]), 2 * s.width, itemsize
    ndim_msg = "x and out must both be 1-D (one row) or both 2-D (a block of rows)"
    row_msg = f"x must hold {N0} inputs and out {NL} outputs per row"
    rows_msg = "out must have as many rows as x"
    buf_msg = f"scratch must be a 1-D {s.dtype.name} array of at least {NBUF} elements"
    about = (
        f"Network {list(net.layers)} ({s.dtype.name}, output {net.output!r}"
        f"{', bias' if s.bias else ''}{', input range' if s.scaled else ''}) at iteration {net.iteration}, "
        "compiled by sigmanet.embedding.compiled_predict: a snapshot of its weights."
    )

    if scratch:

        def predict_into(x, out, scratch):  # pragma: no cover - compiled
            check(x, out)
            if x.ndim != out.ndim:
                raise ValueError(ndim_msg)
            if scratch.ndim != 1:
                raise ValueError(buf_msg)
            if scratch.shape[0] < NBUF or scratch.itemsize != ITEMSIZE:
                raise ValueError(buf_msg)
            if x.ndim == 1:
                if x.shape[0] != N0 or out.shape[0] != NL:
                    raise ValueError(row_msg)
                row(x, out, scratch)
            else:
                if x.shape[1] != N0 or out.shape[1] != NL:
                    raise ValueError(row_msg)
                if out.shape[0] != x.shape[0]:
                    raise ValueError(rows_msg)
                for i in range(x.shape[0]):
                    row(x[i], out[i], scratch)

        predict_into.__doc__ = f"f(x, out, scratch): {about}"
        return numba.njit(nogil=True, error_model="numpy")(predict_into)

    stack = _stack_buffer(NBUF, s.dtype)

    def predict(x, out):  # pragma: no cover - compiled
        check(x, out)
        if x.ndim != out.ndim:
            raise ValueError(ndim_msg)
        buf = numba.carray(stack(), NBUF)
        if x.ndim == 1:
            if x.shape[0] != N0 or out.shape[0] != NL:
                raise ValueError(row_msg)
            row(x, out, buf)
        else:
            if x.shape[1] != N0 or out.shape[1] != NL:
                raise ValueError(row_msg)
            if out.shape[0] != x.shape[0]:
                raise ValueError(rows_msg)
            for i in range(x.shape[0]):
                row(x[i], out[i], buf)

    predict.__doc__ = f"f(x, out): {about}"
    return numba.njit(nogil=True, error_model="numpy")(predict)


def _cuda_device_function(s: _Snapshot) -> Any:
    """The row kernel as a numba CUDA device function ``g(x, out)``: activations in local memory."""
    if s.P.nbytes + s.lo.nbytes + s.span.nbytes > CUDA_CONSTANT_BYTES:
        raise ValueError(
            f"the network's {s.P.size} parameters take {s.P.nbytes} bytes, more than the {CUDA_CONSTANT_BYTES} "
            "bytes of CUDA constant memory the device function keeps them in; call net.predict on CuPy "
            "arrays for networks this size"
        )
    from numba import cuda
    from numba.np.numpy_support import from_dtype

    # The wrapper's globals are its own dict holding the cuda module itself, where the CUDA simulator
    # (NUMBA_ENABLE_CUDASIM=1) swaps in its stand-in.
    names = {
        "__builtins__": builtins,
        "cuda": cuda,
        "row": cuda.jit(device=True)(_row_source(s)),
        "NBUF": 2 * s.width,
        "ELEMENT": from_dtype(s.dtype),
    }
    predict_row = types.FunctionType(_cuda_predict_row.__code__, names, "predict_row")
    return cuda.jit(device=True)(predict_row)


def _cuda_predict_row(x, out):  # pragma: no cover - a template: its globals are bound per network
    buf = cuda.local.array(NBUF, ELEMENT)  # type: ignore[name-defined]  # noqa: F821
    row(x, out, buf)  # type: ignore[name-defined]  # noqa: F821
