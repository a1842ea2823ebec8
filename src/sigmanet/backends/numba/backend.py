"""The numba backend: the seed's loop compiled for the CPU, a whole report interval per call.

Every engine runs the one interval loop of :mod:`.step` (see there for the
pieces and the layout):

* ``fused``: the loop with its matrix products as loops, one thread; no call
  between iterations costs more than the arithmetic. For small networks.
* ``specialised``: the same, compiled for one network's layer sizes
  (:mod:`._specialise`), whose loops LLVM then unrolls: the seed's 3-4-1.
* ``compiled``: the same loop with the products through NumPy's own
  OpenBLAS, each batch's rows split over the threads in cache-sized chunks
  (each thread calling single-threaded BLAS), the update shared too. For
  everything but small networks: middle sizes, mini-batches, tables of
  millions of rows (memory: the table and one chunk per thread).

The choice (:mod:`.strategy`): by size at the ends, measured in between and
cached on disk; ``"numba:fused"`` (and the others) or
``$SIGMANET_NUMBA_STRATEGY`` pin one.

Threads: ``threads`` if given, else the fewer of numba's thread count
(``numba.set_num_threads``, ``NUMBA_NUM_THREADS``) and BLAS's (a caller's
``threadpoolctl`` limit); BLAS runs single-threaded inside the call. Shuffled
epochs are gathered inside the loop (no copy of X); a sparse (CSR) X enters
the first layer's products as it is.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
from typing import Any

import numpy as np

from ..._arrays import copy_bytes, cpu_name, is_sparse
from ..._plan import Stats, TrainConfig, kernel_options, loss_eps, rows_per_step
from ...optimizers import SLOTS, OptimizerState
from ..base import Gradients, Trainer
from ..reference import ReferenceBackend
from . import strategy as _strategy

# Bytes of one chunk's activations and deltas in the compiled engine: fits the L2 cache
# (2 MiB per core here; 1, 2 and 4 MiB measured within noise).
CHUNK_BYTES = 1 << 21
# Rows below which a batch is not split over threads (a thread's share would be all overhead).
MIN_ROWS_PER_THREAD = 64
# numba's "workqueue" threading layer (used where neither OpenMP nor TBB loads) aborts the
# process if two threads launch parallel work at once: parallel calls are serialised there.
_WORKQUEUE = threading.Lock()


def _step():
    from . import step

    return step


_PRELOAD = threading.Lock()


def _preload_scipy_blas() -> None:
    """Load SciPy's OpenBLAS (which numba's first compile imports) with the thread count NumPy's BLAS has
    now: OpenBLAS starts its thread pool when it loads, sized by the cores, whatever limit a caller set
    with threadpoolctl; loaded here, within the caller's limit, it starts no thread they did not allow."""
    import os
    import sys

    if "scipy.linalg.cython_blas" in sys.modules:
        return
    with _PRELOAD:
        if "scipy.linalg.cython_blas" in sys.modules:
            return
        threads = _blas_threads_now()
        saved = os.environ.get("OPENBLAS_NUM_THREADS")
        try:
            if threads is not None:
                os.environ["OPENBLAS_NUM_THREADS"] = str(threads)
            import scipy.linalg.cython_blas  # noqa: F401
        except ImportError:  # numba without SciPy: nothing to load
            pass
        finally:
            if saved is None:
                os.environ.pop("OPENBLAS_NUM_THREADS", None)
            else:
                os.environ["OPENBLAS_NUM_THREADS"] = saved


def _blas_threads_now() -> int | None:
    """The thread count NumPy's BLAS allows the caller now (their threadpoolctl limit shows here, another
    fit's BLAS limit in another thread does not: concurrent fits choose as sequential ones), or None."""
    from .._blas import callers_threads

    return callers_threads("numpy")


class NumbaTrainer(Trainer):
    """One fit's arrays in the flat layout of :mod:`.step`, and the engine that runs them."""

    backend: NumbaBackend

    def __init__(
        self,
        backend: NumbaBackend,
        weights: list[np.ndarray],
        biases: list[np.ndarray] | None,
        X: Any,
        y: Any,
        config: TrainConfig,
        sample_weight: Any,
        optimizer: OptimizerState | None,
        engine: str,
    ):
        from . import _cblas

        self.backend, self.config, self.engine = backend, config, engine
        dt = self.dtype = np.dtype(weights[0].dtype)
        self.sizes = tuple([w.shape[0] for w in weights] + [weights[-1].shape[1]])
        self.shapes = [w.shape for w in weights]
        self.use_bias = biases is not None
        params = weights + (biases or [])
        self.P = np.concatenate([np.asarray(p, dt).ravel() for p in params])
        self.nW = sum(w.size for w in weights)
        nP = self.P.size
        # the rows
        self.sparse = is_sparse(X)
        if self.sparse:
            csr = X.tocsr()
            self.Xp, self.Xi = csr.indptr.astype(np.int64), csr.indices.astype(np.int64)
            self.Xd = np.ascontiguousarray(csr.data, dt)
            self.X = csr  # what set_row_order and shapes read
            self._Xflat = np.zeros(1, dt)
        else:
            self.X = backend.to_device(X, dt)
            self._Xflat = self.X.reshape(-1)
            self.Xp = self.Xi = np.zeros(1, np.int64)
            self.Xd = np.zeros(1, dt)
        self.y = backend.to_device(y, dt)
        self.sw = None if sample_weight is None else backend.to_device(sample_weight, dt)
        self.order: np.ndarray | None = None
        n_rows = self.X.shape[0]
        m = rows_per_step(n_rows, config.batch_size)
        # threads and chunks
        self.ptr = _cblas.gemm_address(dt.name) if engine == "compiled" else 0
        T = backend.thread_count(m) if engine == "compiled" else 1
        if engine == "compiled":
            per_row = dt.itemsize * (self.sizes[0] + 2 * sum(self.sizes[1:]))
            cap = max(16, CHUNK_BYTES // per_row)
            n_chunks = -(-m // cap)
            n_chunks = -(-n_chunks // T) * T
            cr = max(1, -(-m // n_chunks))
        else:
            cr = m
        self.T, self.cr = T, cr
        per = cr * sum(self.sizes)
        self.A = np.zeros(T * per, dt)
        self.D = np.zeros(T * per, dt)
        self.G = np.zeros(T * nP, dt)
        slots = SLOTS[config.optimizer]
        state = optimizer
        if state is None or not state.fits(config.optimizer, params):
            state = OptimizerState.fresh(config.optimizer, params)
        self.step = state.step
        self.S = np.zeros((max(1, len(slots)), nP), dt)
        for i, name in enumerate(slots):
            self.S[i] = np.concatenate([np.asarray(a, dt).ravel() for a in state.slots[name]])
        self.stats = np.zeros(5)
        self.totals = np.zeros(4)
        self.part = np.zeros((T, 4))
        woff, boff, aoff, _ = _offsets(self.sizes)
        self.layout = (np.array(self.sizes, np.int64), np.array(woff, np.int64), np.array(boff, np.int64),
                       np.array(aoff, np.int64), self.nW, cr, T, self.ptr)  # fmt: skip
        self._specialised_for: tuple | None = None
        self._no_sw, self._no_order = np.zeros(1, dt), np.zeros(1, np.int64)
        self._prepared_for: tuple | None = None  # (config, gathered, update): what _prepared holds
        self._prepared: tuple = ()
        self.fn = None if engine == "specialised" else (_step().parallel if T > 1 else _step().serial)

    def _options(self, update: bool) -> tuple:
        """The interval loop's options tuple: the plan's numbers (``_plan.kernel_options``) and this
        engine's own, in the order ``step.OPTIONS`` names them."""
        named = kernel_options(self.config, 0, 0, self.use_bias, self.sw is not None, self.step)
        named.update(
            gathered=self.order is not None,
            sparse=self.sparse,
            update=update,
            eps=loss_eps(self.dtype),
        )
        return tuple(named[name] for name in _step().OPTIONS)

    def _call(self, start: int, iterations: int, update: bool) -> int:
        data = (
            self._Xflat,
            self.y.reshape(-1),
            self._no_sw if self.sw is None else self.sw,
            self._no_order if self.order is None else self.order,
            self.Xp,
            self.Xi,
            self.Xd,
        )
        state = (self.P, self.G, self.S, self.stats, self.totals, self.part, self.A, self.D)
        fn, second, options, at = self._function(update)
        options = (*options[:at], self.step, *options[at + 1 :])  # the one option that moves every call
        blas = self.backend.blas_limit(1) if self.ptr else contextlib.nullcontext()
        lock = _WORKQUEUE if self.T > 1 and _needs_lock() else contextlib.nullcontext()
        with blas, lock:
            return int(fn(data, state, second, start, iterations, options))

    @property
    def kernel(self) -> Any:
        """The compiled function (a numba dispatcher) that runs this trainer's training steps."""
        return self._function(True)[0]

    def _function(self, update: bool) -> tuple:
        """(the compiled function, its layout argument, its options, the index of ``step`` in them), worked
        out once per config (a trainer's config changes only with the adaptive schedule's rate)."""
        key = (self.config, self.order is not None, update)
        if self._prepared_for is None or any(a is not b for a, b in zip(key, self._prepared_for, strict=True)):
            options = self._options(update)
            if self.engine == "specialised" and update:
                from ._specialise import NUMBERS

                fn, numbers = self._specialised(options)
                self._prepared = (fn, self.cr, numbers, NUMBERS.index("step"))
            else:
                self._prepared = (self.fn or _step().serial, self.layout, options, _step().OPTIONS.index("step"))
            self._prepared_for = key
        return self._prepared

    def _specialised(self, options: tuple) -> tuple[Any, tuple]:
        """The specialised function for this fit's options (partially evaluated once per shape and
        options, cached on disk), and the numbers it still takes at run time."""
        from ._specialise import FLAGS, NUMBERS, ROWS_LIMIT, specialised

        named = dict(zip(_step().OPTIONS, options))
        n_rows = self.X.shape[0]
        full = rows_per_step(n_rows, self.config.batch_size) == n_rows
        rows = n_rows if full and n_rows <= ROWS_LIMIT else 0
        flags = (*((k, named[k]) for k in FLAGS), ("rows", rows))
        if self._specialised_for != flags:
            self._fn_specialised = specialised(self.sizes, dict(flags[:-1]), rows)
            self._specialised_for = flags
        return self._fn_specialised, tuple(named[k] for k in NUMBERS)

    def run(self, start: int, iterations: int) -> Stats:
        self.step = self._call(start, iterations, True)
        return Stats(self.stats.copy())

    def gradient_sums(self) -> Gradients:
        """The gradient over every row (the trainer's config must be full batch), no step taken."""
        self._call(0, 1, False)
        nP = self.P.size
        g = self.G[:nP].copy()
        ws, bs = self._split(g)
        return Gradients(ws, bs, float(self.totals[0]), float(self.totals[1]), float(self.totals[2]))

    def set_row_order(self, order: np.ndarray) -> None:
        """The epoch's order, read by the loop itself: X and y are never copied."""
        self.order = np.ascontiguousarray(order, np.int64)

    def _split(self, flat: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray] | None]:
        ws, at = [], 0
        for shape in self.shapes:
            ws.append(flat[at : at + shape[0] * shape[1]].reshape(shape).copy())
            at += shape[0] * shape[1]
        if not self.use_bias:
            return ws, None
        bs = []
        for n in self.sizes[1:]:
            bs.append(flat[at : at + n].copy())
            at += n
        return ws, bs

    def weights(self) -> tuple[list[np.ndarray], list[np.ndarray] | None]:
        return self._split(self.P)

    def optimizer_arrays(self) -> dict[str, list[np.ndarray]]:
        out = {}
        for i, name in enumerate(SLOTS[self.config.optimizer]):
            ws, bs = self._split(self.S[i])
            out[name] = ws + (bs or [])
        return out


def _offsets(sizes):
    from ._specialise import offsets

    return offsets(sizes)


def _needs_lock() -> bool:
    """Whether parallel calls must be serialised: numba's workqueue layer (or not yet known)."""
    try:
        import numba

        return numba.threading_layer() == "workqueue"
    except ValueError:  # no parallel function has run yet: the layer is not chosen
        return True


class NumbaBackend(ReferenceBackend):
    name = "numba"
    strategies = _strategy.STRATEGIES

    def __init__(self, threads: int | None = None, strategy: str | None = None):
        super().__init__(threads, strategy)
        self._pinned = strategy or _strategy.pinned()

    @classmethod
    def probe(cls):
        try:
            import numba  # noqa: F401
        except ImportError as e:
            return f"numba is not installed ({e}); pip install numba"
        return None

    def device(self) -> str:
        return cpu_name()

    def thread_count(self, rows: int) -> int:
        """Threads for a step of ``rows`` rows: ``threads`` if given; else the fewer of numba's and
        BLAS's current counts (both of which a caller may have limited), and one per 64 rows at most."""
        if self.threads is not None:
            return int(self.threads)
        import numba

        allowed = numba.get_num_threads()
        blas = _blas_threads_now()
        if blas is not None:
            allowed = min(allowed, blas)
        return max(1, min(allowed, rows // MIN_ROWS_PER_THREAD))

    def blas_limit(self, n: int):
        """Context limiting BLAS to ``n`` threads; concurrent fits restore the counts they found (``_blas``)."""
        from .._blas import blas_threads

        return blas_threads(n)

    def limits(self):
        """The compiled engine limits BLAS itself; predict runs NumPy's BLAS within ``threads``."""
        return super().limits()

    def _build(self, engine, weights, biases, X, y, config, sample_weight, optimizer) -> NumbaTrainer:
        _preload_scipy_blas()
        dt = np.dtype(weights[0].dtype)
        m = rows_per_step(X.shape[0], config.batch_size)
        sizes = [w.shape[0] for w in weights] + [weights[-1].shape[1]]
        T = self.thread_count(m) if engine == "compiled" else 1
        rows = (
            min(m, max(16, CHUNK_BYTES // (dt.itemsize * (sizes[0] + 2 * sum(sizes[1:])))))
            if engine == "compiled"
            else m
        )
        copies = 0 if is_sparse(X) else copy_bytes(X, dt)
        params = sum(w.size for w in weights) * 2
        self.check_memory(
            copies + copy_bytes(y, dt) + dt.itemsize * (2 * T * rows * sum(sizes) + (T + 3) * params),
            f"X and y in the network's dtype, activations and deltas of {T} x {rows} rows, gradients and the "
            "optimizer's arrays",
        )
        return NumbaTrainer(self, weights, biases, X, y, config, sample_weight, optimizer, engine)

    def engine_for(self, weights, biases, X, y, config, sample_weight=None) -> str:
        """The engine this fit runs: pinned, else by size, else measured (and cached on disk)."""
        from . import _cblas

        blas_ok = _cblas.available(weights[0].dtype) is None
        if self._pinned is not None:
            if self._pinned == "compiled" and not blas_ok:
                return _strategy.small_engine(tuple(w.shape[0] for w in weights) + (weights[-1].shape[1],))
            return self._pinned
        sizes = tuple(w.shape[0] for w in weights) + (weights[-1].shape[1],)
        rows = rows_per_step(X.shape[0], config.batch_size)
        decided = _strategy.by_size(sizes, rows)
        if decided is not None or not blas_ok:
            return (
                decided if decided is not None and (decided != "compiled" or blas_ok) else _strategy.small_engine(sizes)
            )
        import numba

        from ..._version import __version__

        key = _strategy.cache_key(
            dict(
                cpu=cpu_name(),
                numpy=np.__version__,
                numba=numba.__version__,
                sigmanet=__version__,
                threads=self.thread_count(rows),
                dtype=np.dtype(weights[0].dtype).name,
                sizes="-".join(map(str, sizes)),
                rows=rows,
                sparse=is_sparse(X),
            )
        )
        small = _strategy.small_engine(sizes)
        probe = dataclasses.replace(config, average_loss=False)

        def candidate(name: str) -> Any:
            """run(n) on a trainer of engine ``name``, built on its first call: a choice already made (in
            this process or the cache file) builds none (two trainers were a third of a small fit's cost)."""
            built: list[NumbaTrainer] = []

            def run(n: int) -> Stats:
                if not built:
                    copies = [w.copy() for w in weights], None if biases is None else [b.copy() for b in biases]
                    built.append(self._build(name, *copies, X, y, probe, sample_weight, None))
                return built[0].run(0, n)

            return run

        return _strategy.choose(key, {name: candidate(name) for name in (small, "compiled")})

    def trainer(self, weights, biases, X, y, config, sample_weight=None, optimizer=None):
        """The fit's trainer, of the engine :meth:`engine_for` picks (MemoryError first if it cannot fit)."""
        engine = self.engine_for(weights, biases, X, y, config, sample_weight)
        return self._build(engine, weights, biases, X, y, config, sample_weight, optimizer)

    def gradients(self, weights, biases, X, y, config, sample_weight=None) -> Gradients:
        """The gradient over every row of (X, y) by the compiled engine (row chunks that stay in cache)."""
        from . import _cblas

        whole = dataclasses.replace(config, batch_size=None)
        engine = "compiled" if _cblas.available(weights[0].dtype) is None else "fused"
        trainer = self._build(engine, weights, biases, X, y, whole, sample_weight, None)
        return trainer.gradient_sums()
