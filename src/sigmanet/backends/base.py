"""The backend protocol: what the Network asks of an array library, and of a trainer.

A backend owns the arrays and the training loop. ``Network.fit`` hands it a
whole report interval at a time (``Trainer.run(start, iterations)``), never a
single iteration, so a compiled backend can run the interval as one call. The
seed's loop itself is written once against an array module, in
:mod:`sigmanet.backends.reference`; fast backends override its hot paths or
replace the loop by a compiled one.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from .._arrays import Caller, array_namespace, available_host_memory, cpu_name, is_sparse
from .._plan import TrainConfig

# Below this many bytes a fit's buffers are not checked against the free memory.
SMALL_ALLOCATION = 1 << 22


@dataclass
class Gradients:
    """The gradient of one batch summed over its rows, with no step taken (what a Dask worker returns).

    ``weights[k]``, ``biases[k]``: the ascent sums ``a[k].T @ d[k+1]`` and
    ``d[k+1]``'s column sums (``d`` the sample-weighted output delta ``y - out``
    propagated down), host arrays; ``biases`` None without bias.
    ``abs_error``: ``sum sw_i |y_ij - out_ij|``; ``weight``: ``sum sw_i``
    (the rows when unweighted); ``loss``: ``sum sw_i l_i``, the data part of
    the loss (no penalty).
    """

    weights: list[np.ndarray]
    biases: list[np.ndarray] | None
    abs_error: float
    weight: float
    loss: float

    def __add__(self, other: Gradients) -> Gradients:
        return Gradients(
            [g + h for g, h in zip(self.weights, other.weights)],
            None if self.biases is None or other.biases is None else [g + h for g, h in zip(self.biases, other.biases)],
            self.abs_error + other.abs_error,
            self.weight + other.weight,
            self.loss + other.loss,
        )


class Trainer:
    """Holds one fit's arrays on the backend and runs report intervals.

    Every trainer keeps its rows in ``self.X``, ``self.y`` and (when weighted)
    ``self.sw`` on ``self.backend``, and reads them at each run, so one
    :meth:`set_row_order` serves them all.
    """

    backend: Backend
    X: Any
    y: Any
    sw: Any = None
    step: int = 0  # optimizer steps taken, across fits (Adam's t)

    def run(self, start: int, iterations: int) -> Any:
        """Run ``iterations`` iterations, the first being global iteration ``start``.

        Returns a :class:`sigmanet._plan.Stats`: the first iteration's error
        (computed by its forward pass, before its update) and the loss.
        """
        raise NotImplementedError

    def weights(self) -> tuple[list[np.ndarray], list[np.ndarray] | None]:
        """Host NumPy copies of the current weights and biases (None without bias)."""
        raise NotImplementedError

    def optimizer_arrays(self) -> dict[str, list[np.ndarray]]:
        """Host copies of the optimizer's arrays, by slot, one per parameter (W..., then b...)."""
        raise NotImplementedError

    def set_row_order(self, order: np.ndarray) -> None:
        """Train on the rows of X, y (and the sample weights) in this order from now on (once per epoch).

        The first call gives the trainer its own copies, so the caller's
        arrays are never written; later calls gather into them in place.
        ``order``: a host permutation of the row indices.
        """
        xp = self.backend.xp
        if getattr(self, "_rows_source", None) is None:
            self._rows_source = (self.X, self.y, self.sw)
            self.X = self.X if is_sparse(self.X) else xp.empty_like(self.X)
            self.y = xp.empty_like(self.y)
            self.sw = None if self.sw is None else xp.empty_like(self.sw)
        X0, y0, sw0 = self._rows_source
        index = xp.asarray(order)
        if is_sparse(X0):
            self.X = X0[index]  # a sparse matrix's rows are gathered into a new one
        else:
            xp.take(X0, index, axis=0, out=self.X)
        xp.take(y0, index, axis=0, out=self.y)
        if sw0 is not None:
            xp.take(sw0, index, axis=0, out=self.sw)


class Backend:
    """A named array library that can train and evaluate the network.

    The backend owns every array: it converts the user's arrays in
    (:meth:`to_device`) and results out (:meth:`to_user`), builds the trainer
    that runs the loop, and measures what a run allocates
    (:meth:`memory_peak`). The Network never names an array library.

    Subclasses set ``name``, implement ``probe`` (import the optional library,
    say why it cannot run here) and :meth:`trainer`, and override the array
    methods where their library is not NumPy. ``strategies`` names the
    engines a backend can run a fit through; ``"numba:compiled"`` asks for one,
    and plain ``"numba"`` lets the backend choose.
    """

    name: ClassVar[str]
    shuffles_rows: ClassVar[bool] = True  # its trainers take Trainer.set_row_order (fit(shuffle=...))
    strategies: ClassVar[tuple[str, ...]] = ()

    def __init__(self, threads: int | None = None, strategy: str | None = None):
        self.threads = threads
        self.strategy = strategy

    @classmethod
    def probe(cls) -> str | None:
        """None when usable here, else the reason it is not. Imports lazily."""
        return None

    @property
    def xp(self) -> Any:
        return np

    @property
    def spec(self) -> str:
        """The name that builds this backend again: ``"numba"``, or ``"numba:fused"`` with a strategy pinned."""
        return self.name if self.strategy is None else f"{self.name}:{self.strategy}"

    def device(self) -> str:
        return cpu_name()

    def synchronize(self) -> None:
        """Wait for queued device work (a no-op on the CPU); timings call it."""

    def on_stream(self, stream: Any) -> Any:
        """A context that puts this backend's work on ``stream`` (a GPU backend's); on the CPU, refused."""
        raise ValueError(
            f"stream= is for the CuPy backend; this network runs on {self.spec!r} "
            "(move it with net.to('cupy'), or leave stream out)"
        )

    # -- arrays in and out --

    def to_device(self, a: Any, dtype: Any) -> Any:
        """The user's array as a C-contiguous array of this backend (a no-op when it already is one);
        a sparse matrix as CSR of ``dtype`` (its stored values only)."""
        if is_sparse(a):
            if array_namespace(a) is not np:
                a = a.get()
            return a.tocsr().astype(dtype, copy=False)
        if array_namespace(a) is not np:
            a = a.get()  # a CuPy array on a CPU backend: one copy to the host
        return np.ascontiguousarray(a, dtype=dtype)

    def to_host(self, a: Any) -> np.ndarray:
        """A backend array as a host NumPy array."""
        return np.asarray(a)

    def to_user(self, out: Any, caller: Caller) -> Any:
        """``out`` as the kind of array the caller passed (NumPy in, NumPy out; CuPy, PyTorch, JAX likewise)."""
        if caller.library == "numpy":
            return self.to_host(out)
        if caller.library == "cupy":
            import cupy

            return cupy.asarray(out)
        return caller.give_back(out)

    def memory_peak(self, run: Any) -> int:
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
        """Bytes this backend can still allocate for a fit (host RAM, within any cgroup limit), or None."""
        return available_host_memory()

    def check_memory(self, needed: int, detail: str) -> None:
        """Raise MemoryError, before anything is allocated, when a fit's buffers cannot fit.

        ``needed``: the bytes the fit will allocate; ``detail``: what they are.
        """
        if needed < SMALL_ALLOCATION:  # reading /proc and the cgroup costs more than a small fit
            return
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

    def limits(self) -> Any:
        """Context bounding the threads of this backend's libraries."""
        if self.threads is None:
            return contextlib.nullcontext()
        from ._blas import blas_threads

        return blas_threads(self.threads)

    # -- what the Network asks of the user's arrays (a Dask backend answers lazily) --

    def check_inputs(self, X: Any, n_inputs: int, dtype: Any = None) -> Any:
        """X checked (2-D, numeric, finite, also cast to the model's ``dtype``, ``n_inputs`` columns), as an
        array of its own library."""
        from .._validation import check_inputs

        return check_inputs(X, n_inputs, dtype)

    def check_targets(self, y: Any, n_outputs: int, n_rows: int, output: str = "sigmoid", dtype: Any = None) -> Any:
        """y checked like X, with ``n_rows`` rows and values the output layer can reach."""
        from .._validation import check_targets

        return check_targets(y, n_outputs, n_rows, output, dtype)

    def check_sample_weight(self, sample_weight: Any, n_rows: int, dtype: Any = None) -> Any:
        """Per-row weights checked (1-D, ``n_rows`` long, finite, also cast to ``dtype``, non-negative, not
        all zero)."""
        from .._validation import check_sample_weight

        return check_sample_weight(sample_weight, n_rows, dtype)

    def class_weights(self, class_weight: Any, y: Any, output: str) -> Any:
        """Per-row weights from ``class_weight`` ({class: weight} or "balanced") and y's classes."""
        from .._validation import class_sample_weights

        return class_sample_weights(class_weight, y, output)

    def column_range(self, X: Any) -> tuple[np.ndarray, np.ndarray]:
        """Each column's (min, max) as float64 host arrays."""
        xp = array_namespace(X)
        lo, hi = (self.to_host(self.to_device(f(X, axis=0), np.float64)) for f in (xp.min, xp.max))
        return lo, hi

    def scale(self, X: Any, input_range: tuple[np.ndarray, np.ndarray], dtype: Any) -> Any:
        """X mapped by ``(X - lo) / (hi - lo)`` per column, in ``dtype``, block by block (no full temporaries)."""
        xp = array_namespace(X)
        lo, hi = (xp.asarray(a) for a in input_range)
        span = xp.where(hi > lo, hi - lo, 1.0)
        out = xp.empty(X.shape, dtype)
        step = max(1, (1 << 22) // (8 * X.shape[1]))
        for r0 in range(0, X.shape[0], step):
            out[r0 : r0 + step] = (X[r0 : r0 + step] - lo) / span
        return out

    def mean_abs_error(self, y: Any, out: Any) -> Any:
        """``mean |y - out|`` (``out``: a prediction on this backend)."""
        xp = array_namespace(out)
        return float(xp.mean(xp.abs(xp.asarray(y, dtype=out.dtype) - out)))

    # -- training and inference --

    def trainer(
        self,
        weights: list[np.ndarray],
        biases: list[np.ndarray] | None,
        X: Any,
        y: Any,
        config: TrainConfig,
        sample_weight: Any = None,
        optimizer: Any = None,
    ) -> Trainer:
        """A trainer holding this fit's arrays; ``X``, ``y`` as the user gave them (validated).

        ``optimizer``: the network's :class:`sigmanet.optimizers.OptimizerState`
        (None: fresh). Raises MemoryError first when its buffers cannot fit
        (:meth:`check_memory`).
        """
        raise NotImplementedError

    def gradients(
        self,
        weights: list[np.ndarray],
        biases: list[np.ndarray] | None,
        X: Any,
        y: Any,
        config: TrainConfig,
        sample_weight: Any = None,
    ) -> Gradients:
        """The gradient over every row of (X, y), no step taken (see :class:`Gradients`)."""
        raise NotImplementedError

    def predict(self, weights: list[Any], biases: list[Any] | None, X: Any, output: str = "sigmoid") -> Any:
        """Output layer for X (a contiguous backend array of the model's dtype), in row blocks."""
        raise NotImplementedError
