"""The backend protocol, and the seed's loop written once against an array module.

A backend owns the arrays and the training loop. ``Network.fit`` hands it a
whole report interval at a time (``Trainer.run(start, iterations)``), never a
single iteration, so a compiled backend can run the interval as one call.

:class:`GemmTrainer` is the seed's program on preallocated buffers: matrix
products through ``xp.matmul(..., out=)`` and elementwise steps in place, so an
iteration allocates nothing. It works for any NumPy-like ``xp``; a fast backend
subclasses it and overrides only the elementwise epilogues
(:meth:`forward_sigmoid`, :meth:`output_delta`, :meth:`hidden_delta`,
:meth:`update`) with fused kernels, or replaces :meth:`run` entirely.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ..numerics import sigmoid, sigmoid_derivative, sigmoid_unchecked


@dataclass(frozen=True)
class TrainConfig:
    """What a trainer needs besides the arrays. Validated by ``Network.fit``."""

    learning_rate: float = 1.0
    loss: str = "mse"  # "mse": the seed's delta; "bce": cross-entropy, no sigmoid derivative at the output
    reduction: str = "sum"  # "sum" over examples (the seed) or "mean" (divide the step by the batch's rows)
    batch_size: int | None = None  # None: full batch; else mini-batches in row order, cycling


def cpu_name() -> str:
    """The CPU's model name and core count, e.g. 'Intel(R) Xeon(R) Processor, 2 cores'."""
    import os
    import platform

    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{name}, {os.cpu_count()} cores"


def batch_bounds(iteration: int, n_rows: int, batch_size: int | None) -> tuple[int, int]:
    """Rows ``[start, stop)`` used by global iteration ``iteration``.

    Batches are consecutive slices in row order, the last one possibly short,
    visited in turn; keying on the global iteration makes a resumed fit
    continue exactly where the interrupted one stopped.
    """
    if batch_size is None or batch_size >= n_rows:
        return 0, n_rows
    n_batches = -(-n_rows // batch_size)
    start = (iteration % n_batches) * batch_size
    return start, min(start + batch_size, n_rows)


def kernel_options(config: TrainConfig, start: int, iterations: int, use_bias: bool) -> dict:
    """What every fused interval kernel (numba's and CUDA's) takes besides its arrays, by keyword, in one order."""
    return dict(
        start=start,
        iterations=iterations,
        batch_size=config.batch_size or 0,
        learning_rate=config.learning_rate,
        bce=config.loss == "bce",
        mean=config.reduction == "mean",
        use_bias=use_bias,
    )


def step_scale(config: TrainConfig, rows: int) -> float:
    return config.learning_rate / rows if config.reduction == "mean" else config.learning_rate


class Trainer:
    """Holds one fit's arrays on the backend and runs report intervals."""

    backend: Backend
    X: Any  # the rows it trains on, on the backend's device
    y: Any

    def run(self, start: int, iterations: int) -> float:
        """Run ``iterations`` iterations, the first being global iteration ``start``.

        Returns the mean absolute error of the first iteration's forward pass,
        computed before that iteration's update.
        """
        raise NotImplementedError

    def weights(self) -> tuple[list[np.ndarray], list[np.ndarray] | None]:
        """Host NumPy copies of the current weights and biases (None without bias)."""
        raise NotImplementedError

    def set_row_order(self, order: np.ndarray) -> None:
        """Train on the rows of X and y in this order from now on (``fit(shuffle=...)``, once per epoch).

        The first call gives the trainer its own copies of X and y, so the
        caller's arrays are never written; later calls gather into them in
        place. ``order``: a host permutation of the row indices. Every
        trainer keeps its data in ``self.X``/``self.y`` on ``self.backend``
        and reads them at each run, so one implementation serves them all.
        """
        xp = self.backend.xp
        if getattr(self, "_rows_source", None) is None:
            self._rows_source = (self.X, self.y)
            self.X, self.y = xp.empty_like(self.X), xp.empty_like(self.y)
        X0, y0 = self._rows_source
        index = xp.asarray(order)
        xp.take(X0, index, axis=0, out=self.X)
        xp.take(y0, index, axis=0, out=self.y)


def array_namespace(a):
    """The array library that owns ``a``: NumPy, or CuPy for a CuPy array.

    CuPy is imported only when one of its arrays is seen, so asking never
    touches a GPU on a machine that merely has CuPy installed.
    """
    if type(a).__module__.split(".")[0] == "cupy":
        import cupy

        return cupy
    return np


class Backend:
    """A named array library that can train and evaluate the network.

    The backend owns every array: it converts the user's arrays in
    (:meth:`to_device`) and results out (:meth:`to_user`), builds the trainer
    that runs the loop, and measures what a run allocates
    (:meth:`memory_peak`). The Network never names an array library.

    Subclasses set ``name``, implement ``probe`` (import the optional library,
    say why it cannot run here) and :meth:`trainer`, and override the array
    methods where their library is not NumPy.

    ``strategies`` names the ways a backend can run a fit and, for each, the
    module-level limits that force it (tests and benchmarks run every
    strategy through them; ``fit`` picks by size).
    """

    name: ClassVar[str]
    shuffles_rows: ClassVar[bool] = True  # its trainers take Trainer.set_row_order (fit(shuffle=...))
    strategies: ClassVar[dict[str, dict[str, Any]]] = {}

    def __init__(self, threads: int | None = None):
        self.threads = threads

    @classmethod
    def probe(cls) -> str | None:
        """None when usable here, else the reason it is not. Imports lazily."""
        return None

    @property
    def xp(self):
        return np

    def device(self) -> str:
        return cpu_name()

    def synchronize(self) -> None:
        """Wait for queued device work (a no-op on the CPU); timings call it."""

    # -- arrays in and out --

    def to_device(self, a, dtype):
        """The user's array as a C-contiguous array of this backend (a no-op when it already is one)."""
        if array_namespace(a) is not np:
            a = a.get()  # a CuPy array on a CPU backend: one copy to the host
        return np.ascontiguousarray(a, dtype=dtype)

    def to_host(self, a) -> np.ndarray:
        """A backend array as a host NumPy array."""
        return np.asarray(a)

    def to_user(self, out, like):
        """``out`` as the kind of array ``like`` is (NumPy in, NumPy out; CuPy in, CuPy out)."""
        xp = array_namespace(like)
        return self.to_host(out) if xp is np else xp.asarray(out)

    def memory_peak(self, run) -> int:
        """Bytes allocated at the peak while ``run()`` executes, above what was held before."""
        import tracemalloc

        tracemalloc.start()
        try:
            base = tracemalloc.get_traced_memory()[0]
            run()
            return tracemalloc.get_traced_memory()[1] - base
        finally:
            tracemalloc.stop()

    def available_memory(self) -> int | None:
        """Bytes this backend can still allocate for a fit (host RAM here), or None when unknown."""
        return available_host_memory()

    def check_memory(self, needed: int, detail: str) -> None:
        """Raise MemoryError, before anything is allocated, when a fit's buffers cannot fit.

        ``needed``: the bytes the trainer will allocate; ``detail``: what they are.
        """
        available = self.available_memory()
        if available is None or needed <= available:
            return
        raise MemoryError(
            f"the {self.name} backend needs about {needed / 2**30:.2f} GiB for this fit ({detail}), but only "
            f"{available / 2**30:.2f} GiB is available; nothing was trained. What helps: the numba backend "
            "(it trains in row chunks of bounded size), batch_size=N (buffers for N rows), float32 (half the "
            "bytes), or a smaller table."
        )

    def release_memory(self) -> None:
        """Give cached device memory back (CuPy's pool); nothing to do on the CPU."""

    def limits(self):
        """Context bounding the threads of this backend's libraries."""
        if self.threads is None:
            return contextlib.nullcontext()
        from ._blas import blas_threads

        return blas_threads(self.threads)

    # -- what the Network asks of the user's arrays (a Dask backend answers lazily) --

    def for_input(self, X) -> Backend:
        """The backend that handles ``X``: this one for in-memory arrays; for a Dask array, this one
        wrapped to run where the chunks live (``sigmanet.dask``, imported only when one is seen)."""
        if type(X).__module__.split(".")[0] == "dask":
            from ..dask import DaskBackend

            return DaskBackend(self)
        return self

    def check_inputs(self, X, n_inputs: int):
        """X checked (2-D, numeric, finite, ``n_inputs`` columns), as an array of its own library."""
        from .._validation import check_inputs

        return check_inputs(X, n_inputs)

    def check_targets(self, y, n_outputs: int, n_rows: int):
        """y checked like X, with values in [0, 1] and ``n_rows`` rows."""
        from .._validation import check_targets

        return check_targets(y, n_outputs, n_rows)

    def column_range(self, X) -> tuple[np.ndarray, np.ndarray]:
        """Each column's (min, max) as float64 host arrays."""
        xp = array_namespace(X)
        lo, hi = (self.to_host(self.to_device(f(X, axis=0), np.float64)) for f in (xp.min, xp.max))
        return lo, hi

    def scale(self, X, input_range, dtype):
        """X mapped by ``(X - lo) / (hi - lo)`` per column, in ``dtype``, block by block (no full temporaries)."""
        xp = array_namespace(X)
        lo, hi = (xp.asarray(a) for a in input_range)
        span = xp.where(hi > lo, hi - lo, 1.0)
        out = xp.empty(X.shape, dtype)
        step = max(1, (1 << 22) // (8 * X.shape[1]))
        for r0 in range(0, X.shape[0], step):
            out[r0 : r0 + step] = (X[r0 : r0 + step] - lo) / span
        return out

    def mean_abs_error(self, y, out) -> float:
        """``mean |y - out|`` (out: a prediction, as the user's kind of array)."""
        xp = array_namespace(out)
        return float(xp.mean(xp.abs(xp.asarray(y, dtype=out.dtype) - out)))

    def gradient_sums(self, weights, biases, X, y, loss: str):
        """The gradient summed over the rows of (X, y), no step taken; see :meth:`GemmTrainer.gradient_sums`."""
        dt = np.dtype(weights[0].dtype)
        return GemmTrainer(
            self, weights, biases, self.to_device(X, dt), self.to_device(y, dt), TrainConfig(loss=loss)
        ).gradient_sums()

    # -- training and inference --

    def trainer(self, weights, biases, X, y, config: TrainConfig) -> Trainer:
        """A trainer holding this fit's arrays; ``X`` and ``y`` as the user gave them (validated).

        Raises MemoryError first when its buffers cannot fit (:meth:`check_memory`).
        """
        dt = np.dtype(weights[0].dtype)
        m = X.shape[0] if config.batch_size is None else min(config.batch_size, X.shape[0])
        units = sum(w.shape[1] for w in weights)
        self.check_memory(
            3 * m * units * dt.itemsize + copy_bytes(X, dt) + copy_bytes(y, dt),
            f"activations, deltas and scratch: 3 x {m} rows x {units} units x {dt.itemsize} bytes, "
            "plus X and y in the network's dtype",
        )
        return GemmTrainer(self, weights, biases, X, y, config)

    def predict(self, weights, biases, X):
        """Output layer for X (a contiguous backend array of the model's dtype), in row blocks.

        Peak memory is X, the output and one block's activations
        (``PREDICT_BLOCK_BYTES``), whatever the row count; every row's result
        is the same as in one block (rows never mix).
        """
        xp = self.xp
        W = [xp.asarray(w) for w in weights]
        b = None if biases is None else [xp.asarray(v) for v in biases]
        out = xp.empty((X.shape[0], W[-1].shape[1]), X.dtype)
        step = predict_block_rows(W, X.dtype.itemsize)
        with self.limits():
            for r0 in range(0, X.shape[0], step):
                a = X[r0 : r0 + step]
                for k, w in enumerate(W):
                    z = a @ w
                    if b is not None:
                        z += b[k]
                    a = self._sigmoid(z)
                out[r0 : r0 + step] = a
        return out

    def _sigmoid(self, z):
        return sigmoid(z, out=z)


def copy_bytes(a, dtype) -> int:
    """Bytes ``to_device`` will allocate for ``a``: none when it is already a C-contiguous array of ``dtype``."""
    if isinstance(a, np.ndarray) and a.dtype == dtype and a.flags.c_contiguous:
        return 0
    return int(np.prod(a.shape)) * np.dtype(dtype).itemsize


def available_host_memory() -> int | None:
    """MemAvailable from /proc/meminfo (Linux), else free physical pages, else None."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        import os

        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


# Activations held at once by predict and error: about 8 MiB per block.
PREDICT_BLOCK_BYTES = 1 << 23


def predict_block_rows(weights, itemsize: int) -> int:
    """Rows per predict block: the widest layer's activations in ``PREDICT_BLOCK_BYTES``, at least 64."""
    widest = max(max(w.shape) for w in weights)
    return max(64, PREDICT_BLOCK_BYTES // (2 * widest * itemsize))


class GemmTrainer(Trainer):
    """The seed's loop on preallocated buffers, for any NumPy-like ``xp``.

    Shapes, for a batch of m rows and layers n_0 .. n_L:
    ``a[k]`` (m, n_k) activations (``a[0]`` is a view of X), ``d[k]`` (m, n_k)
    deltas for k >= 1, ``W[k]`` (n_k, n_{k+1}), ``g[k]`` its step.
    """

    uses_scratch = True  # tmp[k] (m, n_k) buffers for the epilogues

    def __init__(self, backend: Backend, weights, biases, X, y, config: TrainConfig):
        xp = self.xp = backend.xp
        self.backend = backend
        self.config = config
        dt = np.dtype(weights[0].dtype)
        self.W = [xp.array(w, dtype=dt, order="C") for w in weights]
        self.b: list[Any] | None = None if biases is None else [xp.array(b, dtype=dt) for b in biases]
        self.X = backend.to_device(X, dt)
        self.y = backend.to_device(y, dt)
        self.n_rows = self.X.shape[0]
        m = self.n_rows if config.batch_size is None else min(config.batch_size, self.n_rows)
        sizes = [w.shape[0] for w in weights] + [weights[-1].shape[1]]
        self.a = [None] + [xp.empty((m, n), dt) for n in sizes[1:]]
        self.d = [None] + [xp.empty((m, n), dt) for n in sizes[1:]]
        # scratch for the NumPy epilogues; a backend whose epilogues are fused kernels needs none
        self.tmp = [None] + [xp.empty((m, n), dt) if self.uses_scratch else None for n in sizes[1:]]
        self.g = [xp.empty_like(w) for w in self.W]
        self.gb: list[Any] | None = None if self.b is None else [xp.empty_like(b) for b in self.b]

    # -- elementwise epilogues: NumPy ufuncs in place; fast backends fuse them --

    def forward_sigmoid(self, z, k):
        """z (m, n_{k+1}) holds a[k] @ W[k]; add the bias and apply the sigmoid in place."""
        if self.b is not None:
            z += self.b[k]
        sigmoid_unchecked(z, out=z)  # run() holds the errstate

    def error(self, y, a, tmp) -> float:
        """mean |y - a| over the batch (the seed's printed figure)."""
        self.xp.subtract(y, a, out=tmp)
        self.xp.abs(tmp, out=tmp)
        return float(tmp.mean())

    def output_delta(self, y, a, d, tmp):
        """d = (y - a) * a*(1-a) for "mse" (the seed), d = y - a for "bce"."""
        self.xp.subtract(y, a, out=d)
        if self.config.loss == "mse":
            d *= sigmoid_derivative(a, out=tmp)

    def hidden_delta(self, d, a, tmp):
        """d holds d[k+1] @ W[k].T; multiply by the sigmoid derivative a*(1-a) in place."""
        d *= sigmoid_derivative(a, out=tmp)

    def update(self, k, a_in, d_out, scale):
        """W[k] += scale * a_in.T @ d_out (and the bias by the delta's column sums)."""
        g = self.xp.matmul(a_in.T, d_out, out=self.g[k])
        if scale != 1.0:
            g *= scale
        self.W[k] += g
        if self.b is not None and self.gb is not None:
            gb = d_out.sum(axis=0, out=self.gb[k])
            if scale != 1.0:
                gb *= scale
            self.b[k] += gb

    # -- the loop --

    def _views(self, r0, r1):
        """Buffers cut to the batch's rows (a[0] is a view of X's rows)."""
        m = r1 - r0
        return (
            [self.X[r0:r1]] + [buf[:m] for buf in self.a[1:]],
            [None] + [buf[:m] for buf in self.d[1:]],
            [None] + [None if buf is None else buf[:m] for buf in self.tmp[1:]],
            self.y[r0:r1],
        )

    def _forward_backward(self, a, d, tmp, y, want_error: bool) -> float:
        """Forward pass, then every delta from the output down; mean |y - out| if asked, else NaN."""
        xp, L = self.xp, len(self.W)
        # forward: a[k+1] = sigmoid(a[k] @ W[k])
        for k in range(L):
            xp.matmul(a[k], self.W[k], out=a[k + 1])
            self.forward_sigmoid(a[k + 1], k)
        err = self.error(y, a[L], tmp[L]) if want_error else float("nan")
        # backward: deltas from the output down, all before any update
        self.output_delta(y, a[L], d[L], tmp[L])
        for k in range(L - 1, 0, -1):
            xp.matmul(d[k + 1], self.W[k].T, out=d[k])
            self.hidden_delta(d[k], a[k], tmp[k])
        return err

    def run(self, start: int, iterations: int) -> float:
        L, cfg = len(self.W), self.config
        err0 = float("nan")
        rows = None
        # over: exp(-x) -> inf is the sigmoid's exact 0. invalid: only non-finite
        # weights make NaN, and Network.fit reports that as DivergenceError.
        with self.backend.limits(), np.errstate(over="ignore", invalid="ignore"):
            for i in range(iterations):
                r0, r1 = batch_bounds(start + i, self.n_rows, cfg.batch_size)
                if (r0, r1) != rows:  # full batch: cut once per interval
                    rows = (r0, r1)
                    a, d, tmp, y = self._views(r0, r1)
                    scale = step_scale(cfg, r1 - r0)
                err = self._forward_backward(a, d, tmp, y, want_error=i == 0)
                if i == 0:
                    err0 = err
                # gradient step: W[k] += lr * a[k].T @ d[k+1]
                for k in range(L - 1, -1, -1):
                    self.update(k, a[k], d[k + 1], scale)
        return err0

    def gradient_sums(self):
        """The gradient summed over every row of X, with no step taken: what a Dask worker returns.

        Returns (``a[k].T @ d[k+1]`` per layer, the deltas' column sums per
        layer or None without bias, ``sum |y - out|``), as host arrays; the
        step of a full-batch iteration is ``scale`` times these.
        """
        host = self.backend.to_host
        with self.backend.limits(), np.errstate(over="ignore", invalid="ignore"):
            a, d, tmp, y = self._views(0, self.n_rows)
            err = self._forward_backward(a, d, tmp, y, want_error=True)
            grads = [host(self.xp.matmul(a[k].T, d[k + 1], out=self.g[k])).copy() for k in range(len(self.W))]
            bias_grads = None if self.b is None else [host(d[k + 1].sum(axis=0)) for k in range(len(self.W))]
        return grads, bias_grads, err * y.size

    def weights(self):
        host = self.backend.to_host
        return [host(w).copy() for w in self.W], (None if self.b is None else [host(b).copy() for b in self.b])
