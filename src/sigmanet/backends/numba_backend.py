"""The numba backend: the seed's loop compiled for the CPU.

Three strategies, picked by size at the ends and by a short measurement in between
(see ``SMALL_LIMIT``, ``BLOCKED_LIMIT`` and :meth:`NumbaBackend.strategy`):

* small networks: :class:`FusedTrainer` runs a whole report interval in one
  compiled call: no Python and no allocation between iterations. Nets at
  most 16 wide get a kernel generated for their layer sizes
  (``_numba_codegen``); wider ones the generic ``_numba_kernels.train_small``.
* large data: :class:`BlockedTrainer` cuts each batch into row chunks that
  stay in the L2 cache and hands them to worker threads. Per chunk the matrix
  products go to BLAS (the one NumPy uses), exp to NumPy's SIMD ufunc, and
  every other elementwise step to one fused numba kernel (nogil).
* middle sizes and mini-batches: :class:`CompiledTrainer` runs a whole report
  interval in one compiled call whose GEMMs go to NumPy's own OpenBLAS
  (``_numba_blas``), with a vectorised sigmoid.

Threads: the large-data path runs ``threads`` workers (default
``NUMBA_NUM_THREADS``, i.e. the cores), each calling BLAS limited to one
thread (threadpoolctl), so workers x BLAS threads never exceed the count.
The small-network path is one thread: its iteration is too short to share.
"""

from __future__ import annotations

import os
import time
import weakref
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from .base import Backend, Trainer, batch_bounds, copy_bytes, kernel_options, step_scale

# Multiply-adds per iteration (rows x sum of n_k * n_{k+1}): up to SMALL_LIMIT
# the single fused call always wins, from BLOCKED_LIMIT BLAS on row chunks
# always does (on both CPUs measured, docs/perf-notes.md); in between the
# crossover moved with the CPU (a Xeon: near 16K; an EPYC: fused still won 5x
# at 164K), so it is measured, the first time a shape is seen, and cached for
# the process. SIGMANET_NUMBA_STRATEGY=fused|blocked pins the choice.
SMALL_LIMIT = 1 << 14
BLOCKED_LIMIT = 1 << 28
# Above this the fused call (scalar loops, one thread) is not even timed: it lost
# by 3x or more on both CPUs, and one of its iterations there takes 0.1 s or more.
FUSED_MEASURE_LIMIT = 1 << 25
# Pins one strategy for every fit (tests force each through it); None: choose as above.
FORCE_STRATEGY: str | None = None
STRATEGY_ENV = "SIGMANET_NUMBA_STRATEGY"
_CHOICES: dict[tuple, str] = {}  # shape -> the strategy measured fastest for it, in this process
# Bytes of one row chunk's activations and deltas in the large-data path:
# fits the L2 cache (2 MiB per core here; 1, 2 and 4 MiB measured within noise).
CHUNK_BYTES = 1 << 21
# Small nets whose widest layer is at most this get a kernel generated for
# their layer sizes (``_numba_codegen``); wider ones the generic kernel.
SPECIALISE_MAX_WIDTH = 16


def _kernels():
    from . import _numba_kernels

    return _numba_kernels


def _codegen():
    from . import _numba_codegen

    return _numba_codegen


class FusedTrainer(Trainer):
    """A whole report interval per compiled call, every layer padded to the widest."""

    def __init__(self, backend, weights, biases, X, y, config):
        self.backend, self.config = backend, config
        dt = np.dtype(weights[0].dtype)
        self.sizes = np.array([w.shape[0] for w in weights] + [weights[-1].shape[1]], dtype=np.int64)
        L, w = len(weights), int(self.sizes.max())
        self.W = np.zeros((L, w, w), dt)
        for k, wk in enumerate(weights):
            self.W[k, : wk.shape[0], : wk.shape[1]] = wk
        self.B = np.zeros((L, w), dt)
        self.use_bias = biases is not None
        if self.use_bias:
            for k, bk in enumerate(biases):
                self.B[k, : len(bk)] = bk
        self.X = backend.to_device(X, dt)
        self.y = backend.to_device(y, dt)
        m = self.X.shape[0] if config.batch_size is None else min(config.batch_size, self.X.shape[0])
        self.specialised = None
        if w <= SPECIALISE_MAX_WIDTH:  # narrow: loop bounds as constants (see _numba_codegen)
            self.specialised = _codegen().specialised(tuple(int(n) for n in self.sizes))
        if self.specialised is None:  # the generic kernel's transposed weights and gradient scratch
            self.WT = np.zeros_like(self.W)
            self.G = np.zeros((w, w), dt)
        self.A = np.zeros((L + 1, m, w), dt)
        self.D = np.zeros((L + 1, m, w), dt)

    def run(self, start, iterations):
        common = kernel_options(self.config, start, iterations, self.use_bias)
        if self.specialised is not None:
            return float(self.specialised(X=self.X, Y=self.y, W=self.W, B=self.B, A=self.A, D=self.D, **common))
        return float(
            _kernels().train_small(
                X=self.X,
                Y=self.y,
                W=self.W,
                B=self.B,
                A=self.A,
                D=self.D,
                WT=self.WT,
                G=self.G,
                sizes=self.sizes,
                **common,
            )
        )

    def weights(self):
        n = self.sizes
        ws = [self.W[k, : n[k], : n[k + 1]].copy() for k in range(len(n) - 1)]
        return ws, ([self.B[k, : n[k + 1]].copy() for k in range(len(ws))] if self.use_bias else None)


class CompiledTrainer(Trainer):
    """A whole interval in one compiled call that runs the GEMMs through NumPy's OpenBLAS (``_numba_blas``)."""

    def __init__(self, backend, weights, biases, X, y, config):
        self.backend, self.config = backend, config
        dt = np.dtype(weights[0].dtype)
        self.W = tuple(np.array(w, dt, order="C") for w in weights)
        self.use_bias = biases is not None
        self.B = tuple(np.array(b, dt) for b in biases) if self.use_bias else tuple(np.zeros(1, dt) for _ in weights)
        self.X = backend.to_device(X, dt)
        self.y = backend.to_device(y, dt)
        m = self.X.shape[0] if config.batch_size is None else min(config.batch_size, self.X.shape[0])
        self.A = tuple(np.empty((m, w.shape[1]), dt) for w in weights)
        self.D = tuple(np.empty((m, w.shape[1]), dt) for w in weights)
        self.kernel = _compiled().kernel(dt.name)

    def run(self, start, iterations):
        cfg = self.config
        return float(
            self.kernel(
                self.X,
                self.y,
                self.W,
                self.B,
                self.A,
                self.D,
                start,
                iterations,
                cfg.batch_size or 0,
                cfg.learning_rate,
                cfg.loss == "bce",
                cfg.reduction == "mean",
                self.use_bias,
            )
        )

    def weights(self):
        return [w.copy() for w in self.W], ([b.copy() for b in self.B] if self.use_bias else None)


def _compiled():
    from . import _numba_blas

    return _numba_blas


STRATEGIES = ("fused", "blocked", "compiled")


def chunk_rows(sizes, itemsize: int, rows: int, workers: int) -> int:
    """Rows per chunk: small enough that a chunk's activations and deltas stay
    in L2 (``CHUNK_BYTES``), and even, so every worker gets the same number of
    equal chunks (1024 rows cut 832 + 192 left one of two workers idle)."""
    per_row = itemsize * (sizes[0] + 2 * int(sum(sizes[1:])))
    cap = max(16, CHUNK_BYTES // per_row)
    n_chunks = -(-rows // cap)
    n_chunks = -(-n_chunks // workers) * workers
    return max(1, -(-rows // n_chunks))


class _Worker:
    """One thread's buffers: activations, deltas and gradient sums for a chunk of rows."""

    def __init__(self, sizes, rows, dt, bias):
        self.a: list[Any] = [None] + [np.empty((rows, n), dt) for n in sizes[1:]]
        self.d: list[Any] = [None] + [np.empty((rows, n), dt) for n in sizes[1:]]
        self.g = [np.empty((p, q), dt) for p, q in zip(sizes[:-1], sizes[1:])]
        self.tmp = [np.empty_like(g) for g in self.g]
        self.gb = [np.empty(n, dt) for n in sizes[1:]] if bias else None

    def process(self, chunks, W, b, X, y, bce, want_error):
        """Forward and backward over ``chunks``, summing the gradients; returns sum |error|."""
        k_ = _kernels()
        L = len(W)
        nobias = self.g[0][0]  # any array of the dtype: unused when there is no bias
        for g in self.g:
            g.fill(0)
        if self.gb is not None:
            for g in self.gb:
                g.fill(0)
        err = 0.0
        # thread-local; as in GemmTrainer.run: overflow is the sigmoid's exact 0, and
        # NaN only comes from non-finite weights, reported as DivergenceError
        with np.errstate(over="ignore", invalid="ignore"):
            for r0, r1 in chunks:
                m = r1 - r0
                a: list[Any] = [X[r0:r1]] + [buf[:m] for buf in self.a[1:]]
                d: list[Any] = [None] + [buf[:m] for buf in self.d[1:]]
                for k in range(L):  # a[k+1] = 1 / (1 + exp(-(a[k] @ W[k] + b[k])))
                    z = np.matmul(a[k], W[k], out=a[k + 1])
                    k_.negate_bias(z, nobias if b is None else b[k], b is not None)
                    np.exp(z, out=z)
                    k_.reciprocal_one_plus(z)
                err += k_.output_delta(y[r0:r1], a[L], d[L], bce, want_error)
                for k in range(L - 1, 0, -1):
                    np.matmul(d[k + 1], W[k].T, out=d[k])
                    k_.hidden_delta(d[k], a[k])
                for k in range(L):
                    self.g[k] += np.matmul(a[k].T, d[k + 1], out=self.tmp[k])
                    if self.gb is not None:
                        k_.add_column_sums(self.gb[k], d[k + 1])
        return err


class BlockedTrainer(Trainer):
    """Large data: each batch in row chunks that stay in cache, shared among worker threads.

    Worker t takes chunks t, t+T, t+2T, ... and sums its own gradients; the
    main thread adds the T sums in a fixed order and takes the step, so results
    are deterministic for a given thread count. BLAS runs single-threaded
    inside each worker, so T threads never oversubscribe T cores.
    """

    backend: NumbaBackend

    def __init__(self, backend, weights, biases, X, y, config):
        self.backend, self.config = backend, config
        dt = np.dtype(weights[0].dtype)
        self.W = [np.array(w, dt, order="C") for w in weights]
        self.b = None if biases is None else [np.array(b_, dt) for b_ in biases]
        self.X = backend.to_device(X, dt)
        self.y = backend.to_device(y, dt)
        sizes = [w.shape[0] for w in weights] + [weights[-1].shape[1]]
        rows = self.X.shape[0] if config.batch_size is None else min(config.batch_size, self.X.shape[0])
        n = max(1, min(backend.worker_count(), rows // 16))  # below 16 rows a chunk is all overhead
        self.chunk = chunk_rows(sizes, dt.itemsize, rows, n)
        self.workers = [_Worker(sizes, self.chunk, dt, biases is not None) for _ in range(n)]
        self.pool = ThreadPoolExecutor(n, thread_name_prefix="sigmanet") if n > 1 else None
        if self.pool is not None:
            weakref.finalize(self, self.pool.shutdown, wait=False)

    def run(self, start, iterations):
        cfg, T = self.config, len(self.workers)
        err0 = float("nan")
        with self.backend.blas_limit(1):
            rows = None
            for i in range(iterations):
                r0, r1 = batch_bounds(start + i, self.X.shape[0], cfg.batch_size)
                if (r0, r1) != rows:  # full batch: cut once per interval
                    rows = (r0, r1)
                    chunks = [(c, min(c + self.chunk, r1)) for c in range(r0, r1, self.chunk)]
                    shares = [chunks[t::T] for t in range(T)]
                args = (self.W, self.b, self.X, self.y, cfg.loss == "bce", i == 0)
                if self.pool is None:
                    errs = [self.workers[0].process(shares[0], *args)]
                else:
                    futures = [self.pool.submit(w.process, shares[t], *args) for t, w in enumerate(self.workers)]
                    errs = [f.result() for f in futures]
                if i == 0:
                    err0 = sum(errs) / ((r1 - r0) * self.y.shape[1])
                scale = step_scale(cfg, r1 - r0)
                for k in range(len(self.W)):
                    self._step(self.W[k], [w.g[k] for w in self.workers], scale)
                    if self.b is not None:
                        self._step(self.b[k], [w.gb[k] for w in self.workers if w.gb is not None], scale)
        return err0

    @staticmethod
    def _step(param, grads, scale):
        g = grads[0]
        for other in grads[1:]:
            g += other
        if scale != 1.0:
            g *= scale
        param += g

    def weights(self):
        return [w.copy() for w in self.W], (None if self.b is None else [b_.copy() for b_ in self.b])


class NumbaBackend(Backend):
    name = "numba"
    strategies = {
        "fused": {"SMALL_LIMIT": 1 << 62},
        # the fused kernel for any width, never one generated for the sizes
        "generic": {"SMALL_LIMIT": 1 << 62, "SPECIALISE_MAX_WIDTH": 0},
        # the smallest chunks (16 rows), so test tables span several workers
        "blocked": {"SMALL_LIMIT": -1, "BLOCKED_LIMIT": -1, "CHUNK_BYTES": 1},
        # one compiled call per interval with NumPy's OpenBLAS GEMMs (the middle sizes, mini-batches)
        "compiled": {"FORCE_STRATEGY": "compiled"},
    }

    @classmethod
    def probe(cls):
        try:
            import numba  # noqa: F401
        except ImportError as e:
            return f"numba is not installed ({e}); pip install numba"
        return None

    def worker_count(self) -> int:
        """Threads for the large-data path: ``threads``, else ``NUMBA_NUM_THREADS`` (the cores)."""
        import numba

        return self.threads or getattr(numba.config, "NUMBA_NUM_THREADS", None) or os.cpu_count() or 1

    def blas_limit(self, n: int):
        """Context limiting BLAS to ``n`` threads; concurrent fits restore the counts they found (``_blas``)."""
        from ._blas import blas_threads

        return blas_threads(n)

    def gradient_sums(self, weights, biases, X, y, loss: str):
        """The gradient summed over (X, y) by the large-data path's worker: row chunks that stay in cache."""
        dt = np.dtype(weights[0].dtype)
        sizes = [w.shape[0] for w in weights] + [weights[-1].shape[1]]
        X, y = self.to_device(X, dt), self.to_device(y, dt)
        step = chunk_rows(sizes, dt.itemsize, X.shape[0], 1)
        worker = _Worker(sizes, step, dt, biases is not None)
        W = [np.ascontiguousarray(w, dt) for w in weights]
        b = None if biases is None else [np.ascontiguousarray(v, dt) for v in biases]
        chunks = [(r0, min(r0 + step, X.shape[0])) for r0 in range(0, X.shape[0], step)]
        err = worker.process(chunks, W, b, X, y, loss == "bce", True)
        return [g.copy() for g in worker.g], None if worker.gb is None else [g.copy() for g in worker.gb], err

    def strategy(self, weights, biases, X, y, config) -> str:
        """ "fused" or "blocked" for this fit: by size at the ends, by a short measurement in between."""
        pinned = FORCE_STRATEGY or os.environ.get(STRATEGY_ENV, "").strip().lower()
        if pinned in STRATEGIES:
            return pinned
        rows = X.shape[0] if config.batch_size is None else min(config.batch_size, X.shape[0])
        macs = rows * sum(w.shape[0] * w.shape[1] for w in weights)
        if macs <= SMALL_LIMIT:
            return "fused"
        if macs >= BLOCKED_LIMIT:
            return "blocked"
        sizes = tuple(w.shape[0] for w in weights) + (weights[-1].shape[1],)
        key = (
            sizes,
            rows,
            X.shape[0],
            np.dtype(weights[0].dtype).str,
            biases is not None,
            config.loss,
            self.worker_count(),
        )
        if key not in _CHOICES:
            _CHOICES[key] = self._measure(weights, biases, X, y, config)
        return _CHOICES[key]

    def _measure(self, weights, biases, X, y, config) -> str:
        """Time every strategy on copies of the weights: after a warm-up, the best of two runs of
        at least 20 ms each (a few iterations alone were within the machine's noise)."""
        times = {}
        rows = X.shape[0] if config.batch_size is None else min(config.batch_size, X.shape[0])
        macs = rows * sum(w.shape[0] * w.shape[1] for w in weights)
        for name in STRATEGIES:
            if name == "compiled" and _compiled().available(weights[0].dtype) is not None:
                continue
            if name == "fused" and macs > FUSED_MEASURE_LIMIT:
                continue
            try:
                trainer = self._build(name, weights, biases, X, y, config)
            except MemoryError:
                continue
            trainer.run(0, 1)  # compiles, or loads the cache
            n, best = 2, float("inf")
            for _ in range(2):
                while True:
                    t0 = time.perf_counter()
                    trainer.run(1, n)
                    elapsed = time.perf_counter() - t0
                    if elapsed >= 0.02 or n >= 256:
                        break
                    n *= 2
                best = min(best, elapsed / n)
            times[name] = best
        return min(times, key=times.__getitem__) if times else "blocked"

    def _build(self, name, weights, biases, X, y, config):
        dt = np.dtype(weights[0].dtype)
        rows = X.shape[0] if config.batch_size is None else min(config.batch_size, X.shape[0])
        copies = copy_bytes(X, dt) + copy_bytes(y, dt)
        sizes = [w.shape[0] for w in weights] + [weights[-1].shape[1]]
        if name == "compiled":
            self.check_memory(
                2 * rows * sum(sizes[1:]) * dt.itemsize + copies,
                f"activations and deltas of {rows} rows, plus X and y in the network's dtype",
            )
            return CompiledTrainer(self, weights, biases, X, y, config)
        if name == "fused":
            buffers = 2 * len(sizes) * rows * max(sizes) * dt.itemsize
            self.check_memory(
                buffers + copies,
                f"activations and deltas of {rows} rows padded to {max(sizes)} "
                "units, plus X and y in the network's dtype",
            )
            return FusedTrainer(self, weights, biases, X, y, config)
        self.check_memory(
            copies + self.worker_count() * 2 * CHUNK_BYTES,
            "X and y in the network's dtype, plus one row chunk per worker",
        )
        return BlockedTrainer(self, weights, biases, X, y, config)

    def trainer(self, weights, biases, X, y, config):
        """The fit's trainer, of the strategy :meth:`strategy` picks (MemoryError first if it cannot fit)."""
        return self._build(self.strategy(weights, biases, X, y, config), weights, biases, X, y, config)
