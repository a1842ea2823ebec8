"""The CuPy backend: the seed's loop on a CUDA GPU.

Data stays on the device for the whole fit: NumPy inputs are copied once,
CuPy inputs are used as they are, on the device they live on. Three
strategies, by size (``"cupy:fused"``, ``"cupy:graph"``, ``"cupy:eager"`` pin
one):

* small networks (``SMALL_LIMIT`` multiply-adds, a full batch of at most
  ``SMALL_ROWS`` rows or any mini-batch, and the whole state fits in shared
  memory): :class:`FusedGpuTrainer` runs a report interval in one kernel
  launch. Nets of one hidden layer whose batch fits one warp (the seed's
  3-4-1 on 4 rows) run ``train_warp`` (weights in registers, warp shuffles,
  no block barrier); others ``train_small``, one thread block iterating with
  block barriers, compiled for their shape up to 4 layers and 64 units.
* medium (``GRAPH_LIMIT``, full batch): one iteration of our own
  register-tiled GEMMs, each with its epilogue fused in, the output layer's
  kernel and the optimizer's steps, is captured as a CUDA graph and replayed;
  CuPy refuses cuBLAS during stream capture, hence GEMMs of our own. The
  step's scalars (the scheduled rate, Adam's correction) come from device
  memory: a counter the graph itself advances. A capture that fails falls
  back, once and for good, to the eager path.
* large, and mini-batches of medium nets: :class:`CupyGemmTrainer` runs the
  xp reference loop (:mod:`sigmanet.backends.reference`) on CuPy arrays:
  GEMMs through cuBLAS into preallocated buffers, with fused epilogue
  kernels where they apply.

Every option of the fit (the optimizers, L2, schedules, sample weights,
softmax and identity outputs, average losses) runs on every engine; the
single launch and the graph report the loss from their own training pass
(the kernels accumulate it), never from a second pass over the data. A sparse
X is made dense on the device first (no sparse GEMM yet).

Streams and devices: the work runs on the caller's current CuPy stream, or on
the ``stream`` the backend was built with, and on the device that holds the
CuPy X (so Dask chunks train on the GPU they live on).

The limits were measured on an H100 (docs/perf-notes.md and
docs/benchmarks.md have the crossovers); ``benchmarks/strategy_crossover.py``
measures them on another card.
"""

from __future__ import annotations

import contextlib
import dataclasses

import numpy as np

from ..._arrays import array_namespace, is_sparse
from ..._plan import (
    LOSS_CODE,
    OUTPUT_CODE,
    STATS_SIZE,
    Stats,
    delta_uses_derivative,
    loss_eps,
    reduction_factor,
    rows_per_step,
)
from ...optimizers import SLOTS, OptimizerState
from ..base import Trainer
from ..reference import ReferenceBackend, ReferenceTrainer
from ._cuda import ACC_INDEX, ACC_SIZE, CFG_SIZE, GEMM_KERNELS, MAX_FIXED_LAYERS, settings, warp_fits

# Limits from the crossovers measured on the device (benchmarks/strategy_crossover.py; the tables
# and their history are in docs/perf-notes.md), in multiply-adds per iteration and in rows (the
# single block's weight-gradient loop walks every row).
SMALL_LIMIT = 1 << 19  # up to which one launch runs the interval (if its state fits in shared memory)
SMALL_ROWS = 512  # ... and a full batch has at most this many rows (mini-batches have no graph to go to)
GRAPH_LIMIT = 400_000_000  # up to which one full-batch iteration is replayed as a CUDA graph
MAX_BLOCK = 1024
FIXED_SHAPE_WIDTH = 64  # nets this narrow (and at most MAX_FIXED_LAYERS deep) get a kernel compiled for their shape
MAX_LAUNCH_ITERATIONS = 1 << 30  # one launch's iterations (an int32 in the kernel)
USE_WARP = True  # train_warp where it fits; False keeps train_small (the device script compares the two)


def _cupy():
    import cupy

    return cupy


def _kernels(dtype):
    """The compiled kernels for a dtype on the current device (a module is loaded per device)."""
    from ._cuda import kernels

    return kernels(np.dtype(dtype).name, _cupy().cuda.Device().id)


def fast_path(config, weighted: bool, sparse: bool) -> bool:
    """Whether the single launch and the graph can run this fit: every option of it, for a dense X.

    (``weighted`` is kept for the callers: sample weights run there too.)
    """
    return not sparse


def _device_of(a):
    """The CuPy device that holds ``a`` (as a context to enter), or a no-op for host arrays."""
    if array_namespace(a) is np or not hasattr(a, "device"):
        return contextlib.nullcontext()
    return _cupy().cuda.Device(a.device.id)


def _slot_arrays(config, params, optimizer):
    """The optimizer's state for these parameters: the network's if it fits, else fresh (host arrays)."""
    state = optimizer
    if state is None or not state.fits(config.optimizer, params):
        state = OptimizerState.fresh(config.optimizer, params)
    return state


def _report(first, total, iterations, rows, n_out, alpha, average_loss) -> Stats:
    """The interval's Stats from the accumulators (ACC_INDEX) after its first step and after all of them.

    A full batch has the same rows and weights every step: the loss's per-row
    factor is one number.
    """
    wsum = float(first[ACC_INDEX["WEIGHT"]])
    per_row = rows / wsum if wsum > 0 else 0.0
    src, count = (total, iterations) if average_loss else (first, 1)
    values = np.zeros(STATS_SIZE)
    values[0] = first[ACC_INDEX["ERROR"]]
    values[1] = wsum * n_out
    values[2] = src[ACC_INDEX["LOSS"]] * per_row
    values[3] = rows * count
    values[4] = 0.5 * alpha * src[ACC_INDEX["SQUARES"]] * per_row
    return Stats(values)


class FusedGpuTrainer(Trainer):
    """A whole report interval in one kernel launch: ``train_warp`` (one warp) where the net fits it,
    else ``train_small`` (one block, state in shared memory). ``warp`` may be set False to compare."""

    def __init__(self, backend, weights, biases, X, y, config, shared_bytes, sample_weight=None, optimizer=None):
        cp = _cupy()
        self.backend, self.config = backend, config
        self.device_id = cp.cuda.Device().id
        self.dt = dt = np.dtype(weights[0].dtype)
        self.shapes = [w.shape for w in weights]
        self.sizes_host = [w.shape[0] for w in weights] + [weights[-1].shape[1]]
        self.use_bias = biases is not None
        params = list(weights) + list(biases or [])
        state = _slot_arrays(config, params, optimizer)
        self.step = state.step
        self.slot_names = SLOTS[config.optimizer]
        with backend.stream_scope():
            self.sizes = cp.asarray(np.array(self.sizes_host, np.int32))
            self.W = cp.asarray(np.concatenate([np.asarray(w, dt).ravel() for w in weights]))
            self.B = cp.asarray(
                np.concatenate([np.asarray(b, dt) for b in biases]) if self.use_bias else np.zeros(1, dt)
            )
            flat = [np.concatenate([np.asarray(a, dt).ravel() for a in state.slots[name]]) for name in self.slot_names]
            self.S = cp.asarray(np.concatenate(flat) if flat else np.zeros(1, dt))
            self.X = backend.to_device(X, dt)
            self.y = backend.to_device(y, dt)
            self.sw = None if sample_weight is None else backend.to_device(sample_weight, dt)
            self.cfg = cp.zeros(CFG_SIZE, np.float64)
            self.stats = cp.zeros(STATS_SIZE, np.float64)
            self.stats_later = cp.zeros(STATS_SIZE, np.float64)  # later launches' report (long intervals)
        self.shared_bytes = shared_bytes
        rows = rows_per_step(self.X.shape[0], config.batch_size)
        work = rows * max(self.sizes_host)
        # tiny nets run the kernel compiled for their shape (one compile per shape, cached on disk)
        small = len(self.sizes_host) - 1 <= MAX_FIXED_LAYERS and max(self.sizes_host) <= FIXED_SHAPE_WIDTH
        self.fixed_shape = tuple(self.sizes_host) if small else None
        self.warp = USE_WARP and warp_fits(self.sizes_host, rows)
        self.block_size = int(min(MAX_BLOCK, max(32, -(-work // 32) * 32)))

    @property
    def engine(self) -> str:
        """Which kernel runs the interval (the benchmark records it)."""
        return "fused:warp" if self.warp else "fused:shape" if self.fixed_shape else "fused:block"

    def run(self, start, iterations):
        cfg, cp = self.config, _cupy()
        if iterations <= 0:
            return Stats(np.zeros(STATS_SIZE))
        with cp.cuda.Device(self.device_id), self.backend.stream_scope():
            self.cfg.set(settings(cfg, self.X.shape[0]))
            done = 0
            while done < iterations:  # the kernel counts iterations in 32 bits
                count = min(iterations - done, MAX_LAUNCH_ITERATIONS)
                _kernels(self.dt).train_small(
                    X=self.X,
                    Y=self.y,
                    SW=self.sw,
                    W=self.W,
                    B=self.B,
                    S=self.S,
                    sizes=self.sizes,
                    cfg=self.cfg,
                    stats=self.stats if done == 0 else self.stats_later,
                    start=start + done,
                    iterations=count,
                    batch_size=cfg.batch_size or 0,
                    output=OUTPUT_CODE[cfg.output],
                    loss=LOSS_CODE[cfg.loss],
                    derivative=delta_uses_derivative(cfg),
                    mean=cfg.mean,
                    use_bias=self.use_bias,
                    weighted=self.sw is not None,
                    track_all=cfg.average_loss,
                    step=self.step + done,
                    eps=loss_eps(self.dt),
                    block_size=32 if self.warp else self.block_size,
                    shared_bytes=self.shared_bytes,
                    fixed_shape=tuple(self.sizes_host) if self.warp else self.fixed_shape,
                    warp=self.warp,
                )
                if done > 0:  # read only when an interval needed several launches
                    later = Stats(self.stats_later.get())
                    first = Stats(self.stats.get()).then(later, cfg.average_loss)
                    self.stats.set(first.values)
                done += count
            report = Stats(self.stats.get())
        self.step += iterations
        return report

    def optimizer_arrays(self):
        if not self.slot_names:
            return {}
        with _cupy().cuda.Device(self.device_id), self.backend.stream_scope():
            flat = self.S.get()
        shapes = self.shapes + ([(n,) for n in self.sizes_host[1:]] if self.use_bias else [])
        n_params = sum(int(np.prod(s)) for s in shapes)
        out = {}
        for k, name in enumerate(self.slot_names):
            arrays, at = [], k * n_params
            for s in shapes:
                size = int(np.prod(s))
                arrays.append(flat[at : at + size].reshape(s).copy())
                at += size
            out[name] = arrays
        return out

    def weights(self):
        with _cupy().cuda.Device(self.device_id), self.backend.stream_scope():
            flat = self.W.get()
            bflat = self.B.get() if self.use_bias else None
        ws, at = [], 0
        for s in self.shapes:
            ws.append(flat[at : at + s[0] * s[1]].reshape(s).copy())
            at += s[0] * s[1]
        if bflat is None:
            return ws, None
        bounds = np.concatenate([[0], np.cumsum(self.sizes_host[1:])])
        return ws, [bflat[bounds[k] : bounds[k + 1]].copy() for k in range(len(ws))]


class CupyGemmTrainer(ReferenceTrainer):
    """The xp reference loop on CuPy arrays (cuBLAS GEMMs) with fused epilogue kernels; medium full
    batches replay an iteration of our own kernels as a CUDA graph (``use_graph``).

    No host synchronisation inside a report interval: the statistics are summed
    on the device and read once, after the interval's last launch is queued.
    """

    uses_scratch = True  # the xp hooks (other outputs, weights, optimizers) use the reference's scratch

    def __init__(self, backend, weights, biases, X, y, config, sample_weight=None, optimizer=None, use_graph=False):
        cp = _cupy()
        self.device_id = cp.cuda.Device().id
        with backend.stream_scope():
            super().__init__(backend, weights, biases, X, y, config, sample_weight, optimizer)
            xp, dt = self.xp, self.W[0].dtype
            self.kernels = _kernels(dt)
            m = self.a[1].shape[0]
            # bias gradients are ones.T @ d: a GEMM (cuBLAS, or ours in the graph), no reduction kernel
            self.ones = None if self.b is None else xp.ones((m, 1), dt)
            self.use_graph = use_graph and config.batch_size is None and fast_path(config, self.sw is not None, False)
            self.graph = None
            self.graph_error = None  # why capture failed, if it did
            self.capture_stream = None
            if self.use_graph:
                self._graph_buffers(m)
            self._ready = cp.cuda.get_current_stream().record()  # the uploads, for a replay on another stream

    def _graph_buffers(self, m):
        """Device buffers the graph reads and writes: partial sums where a weight-gradient GEMM splits its
        rows (Kernels.gemm_splits) or where the L2 penalty is summed (optimizer_step), the settings,
        the step counters and the accumulators."""
        xp, dt, K = self.xp, self.W[0].dtype, self.kernels
        decay = self.config.alpha > 0

        def parts(n_in, n_out, weight):
            splits = K.gemm_splits(n_in, n_out, m, kernel=self.backend.gemm)
            return xp.empty((splits, n_in, n_out), dt) if splits > 1 or (weight and decay) else None

        self.g_parts = [parts(*w.shape, True) for w in self.W]
        self.gb_parts = None if self.b is None else [parts(1, w.shape[1], False) for w in self.W]
        self.cfg = xp.zeros(CFG_SIZE, np.float64)
        self.counters = xp.zeros(2, np.int64)
        self.acc = xp.zeros(ACC_SIZE, np.float64)
        self.acc_first = xp.zeros(ACC_SIZE, np.float64)
        names = SLOTS[self.config.optimizer]
        n = len(self.params)
        self.param_slots = [
            tuple(self.slots[names[s]][i] if s < len(names) else None for s in range(2)) for i in range(n)
        ]

    @property
    def engine(self) -> str:
        """ "graph" while the iteration replays as a CUDA graph, else "eager" (the benchmark records it)."""
        return "graph" if self.use_graph else "eager"

    # -- fused epilogues where the options allow (the reference loop calls these around xp.matmul) --

    def forward_activation(self, z, k):
        if k < len(self.W) - 1 or self.config.output == "sigmoid":
            self.kernels.forward_sigmoid(z, None if self.b is None else self.b[k])
        else:
            super().forward_activation(z, k)

    def output_delta(self, y, a, d, tmp, sw):
        cfg = self.config
        if sw is None and cfg.output == "sigmoid":  # elementwise: the most parallel form
            self.kernels.output_delta(y, a, d, cfg.loss == "bce", None)
        else:  # a row per thread: sample weights (the softmax is already applied by forward_activation)
            self.kernels.output_step(
                y, a, d, sw, output=OUTPUT_CODE["sigmoid"], loss=0, derivative=self.derivative, eps=self.eps
            )

    def hidden_delta(self, d, a, tmp):
        self.kernels.hidden_delta(d, a)

    def weight_gradient(self, k, a_in, d_out):
        self.xp.matmul(a_in.T, d_out, out=self.g[k])
        if self.b is not None:  # the bias's gradient as ones.T @ d: a GEMM, no reduction kernel
            m = d_out.shape[0]
            self.xp.matmul(self.ones[:m].T, d_out, out=self.gb[k].reshape(1, -1))

    def step_parameters(self, lr, r):
        if self.config.optimizer == "sgd" and self.config.alpha == 0:
            self.step += 1
            for p, g in zip(self.params, self.grads):
                self.kernels.sgd_update(p, g, lr * r)
        else:
            super().step_parameters(lr, r)

    # -- one iteration of our own kernels, for graph capture --

    def _iteration_own_kernels(self, compile_only=False):
        """One full-batch iteration in our own kernels, each GEMM with its epilogue fused in.

        ``compile_only``: compile the GEMM instances it needs and launch nothing.
        """
        K, L, cfg = self.kernels, len(self.W), self.config
        launch = not compile_only
        a = [self.X] + self.a[1:]
        for k in range(L):
            bias = None if self.b is None else self.b[k]
            epi = "sigmoid" if k < L - 1 or cfg.output == "sigmoid" else "bias"
            K.gemm(a[k], self.W[k], a[k + 1], epilogue=epi, E=bias, compile_only=compile_only, kernel=self.backend.gemm)
        if launch:  # softmax, the loss, the error, the delta; opens the step (advances the counters)
            K.output_step(
                self.y, a[L], self.d[L], self.sw, output=OUTPUT_CODE[cfg.output], loss=LOSS_CODE[cfg.loss],
                derivative=self.derivative, eps=self.eps, acc=self.acc, counters=self.counters,
            )  # fmt: skip
        for k in range(L - 1, 0, -1):
            K.gemm(self.d[k + 1], self.W[k], self.d[k], tb=True, epilogue="dsigmoid", E=a[k],
                   compile_only=compile_only, kernel=self.backend.gemm)  # fmt: skip
        for k in range(L):  # every delta is computed: the steps may go in place
            self._step(k, self.W[k], a[k], self.d[k + 1], self.g_parts[k], True, compile_only)
            if self.b is not None:
                b = self.b[k].reshape(1, -1)
                self._step(L + k, b, self.ones, self.d[k + 1], self.gb_parts[k], False, compile_only)

    def _step(self, i, p, a_in, d_out, parts, decayed, compile_only):
        """Parameter i (p) steps by the optimizer from a_in.T @ d_out: in the GEMM's epilogue, or through
        partial sums (split rows, or a weight whose squares the L2 penalty's report needs)."""
        K = self.kernels
        s0, s1 = self.param_slots[i]
        slots = (None if s0 is None else s0.reshape(p.shape), None if s1 is None else s1.reshape(p.shape))
        if parts is None:
            K.gemm(a_in, d_out, p, ta=True, epilogue="step", slots=slots, decayed=decayed, cfg=self.cfg,
                   counters=self.counters, compile_only=compile_only, kernel=self.backend.gemm)  # fmt: skip
            return
        K.gemm(a_in, d_out, parts, ta=True, compile_only=compile_only, kernel=self.backend.gemm)
        if not compile_only:
            sumsq = self.acc[ACC_INDEX["SQUARES"] :] if decayed and self.config.alpha > 0 else None
            K.optimizer_step(p, parts.reshape(parts.shape[0], *p.shape), slots, decayed=decayed, cfg=self.cfg,
                             counters=self.counters, sumsq=sumsq)  # fmt: skip

    def _capture(self):
        cp = self.xp
        self.capture_stream = cp.cuda.Stream(non_blocking=True)
        try:
            self._iteration_own_kernels(compile_only=True)  # module loads stay out of the capture
            with self.capture_stream:
                self.capture_stream.begin_capture()
                try:
                    self._iteration_own_kernels()
                finally:
                    graph = self.capture_stream.end_capture()
            self.graph = graph
            self._graph_inputs = (self.X, self.y, self.sw)
        except Exception as e:
            self.use_graph, self.graph_error = False, f"{type(e).__name__}: {e}"

    def run(self, start, iterations):
        cp = self.xp
        with cp.cuda.Device(self.device_id), self.backend.stream_scope():
            if self.graph is not None and any(
                a is not b for a, b in zip(self._graph_inputs, (self.X, self.y, self.sw))
            ):
                self.graph = None  # the rows moved to new buffers (a first set_row_order): capture again
            if self.use_graph and self.graph is None:
                self._capture()
            if not self.use_graph:
                return super().run(start, iterations)
            return self._replay(start, iterations)

    def _replay(self, start, iterations):
        cp, cfg = self.xp, self.config
        if iterations <= 0:
            return Stats(np.zeros(STATS_SIZE))
        stream = cp.cuda.get_current_stream()  # the caller's (or the backend's) stream
        stream.wait_event(self._ready)  # the uploads, wherever they were queued
        weight = float(self.n_rows if self._batch_weights is None else self._batch_weights[0])
        self.cfg.set(settings(cfg, self.n_rows, reduction_factor(cfg, weight)))
        self.counters.set(np.array([self.step, start - 1], np.int64))
        self.acc.fill(0)
        try:
            self.graph.launch(stream)
            self.acc_first[...] = self.acc  # the first step's sums, copied on the stream
            for _ in range(iterations - 1):
                self.graph.launch(stream)
        finally:  # also on Ctrl-C: no replay may outlive the buffers it writes
            stream.synchronize()
        first, total = self.acc_first.get(), self.acc.get()
        self.step += iterations
        return _report(first, total, iterations, self.n_rows, self.a[-1].shape[1], cfg.alpha, cfg.average_loss)

    def weights(self):
        with _cupy().cuda.Device(self.device_id), self.backend.stream_scope():
            return super().weights()

    def optimizer_arrays(self):
        with _cupy().cuda.Device(self.device_id), self.backend.stream_scope():
            return super().optimizer_arrays()

    def set_row_order(self, order):
        with _cupy().cuda.Device(self.device_id), self.backend.stream_scope():
            super().set_row_order(order)


class CupyBackend(ReferenceBackend):
    """CuPy on the current device; ``stream``: a CuPy stream to run on (None: the caller's current one).

    ``gemm``: which of our GEMM kernels the graph engine's iteration runs: "tiled" (gemm_tiled) or
    "warp" (gemm_warp, warp-tiled with vector loads; benchmarks/gpu_check.sh times both against
    cuBLAS, and the faster becomes the default once a device has said which).
    """

    name = "cupy"
    strategies = ("fused", "graph", "eager")

    def __init__(self, threads: int | None = None, strategy: str | None = None, stream=None, gemm: str = "tiled"):
        super().__init__(threads, strategy)
        if gemm not in GEMM_KERNELS:
            raise ValueError(f"gemm must be one of {GEMM_KERNELS}, got {gemm!r}")
        self.stream = stream
        self.gemm = gemm

    def stream_scope(self):
        """The stream the backend's work goes to, entered: the given one, else the caller's current one."""
        return self.stream if self.stream is not None else contextlib.nullcontext()

    def on_stream(self, stream):
        """``stream`` as a CuPy stream to enter (``fit(stream=)``): a CuPy stream as it is; another
        library's (PyTorch's ``torch.cuda.Stream``, anything with ``__cuda_stream__``) wrapped, not copied,
        as ``cupy.cuda.ExternalStream`` on its handle."""
        cp = _cupy()
        if isinstance(stream, (cp.cuda.Stream, cp.cuda.ExternalStream)):
            return stream
        handle = None
        protocol = getattr(stream, "__cuda_stream__", None)
        if callable(protocol):  # the CUDA stream protocol: (version, handle)
            handle = protocol()[1]
        elif isinstance(getattr(stream, "cuda_stream", None), int):  # torch.cuda.Stream
            handle = stream.cuda_stream
        if handle is None:
            raise TypeError(
                "stream must be a CuPy stream, a torch.cuda.Stream or an object with __cuda_stream__; "
                f"got {type(stream).__name__}"
            )
        return cp.cuda.ExternalStream(int(handle))

    @classmethod
    def probe(cls):
        try:
            import cupy
        except ImportError as e:
            return f"CuPy is not installed ({e}); pip install 'sigmanet[cuda12]' or 'sigmanet[cuda13]'"
        try:
            count = cupy.cuda.runtime.getDeviceCount()
        except Exception as e:
            return f"CuPy is installed but no CUDA device is usable: {e}"
        if count < 1:
            return "CuPy is installed but no CUDA device is usable: CUDA reports 0 devices"
        return None

    @property
    def xp(self):
        return _cupy()

    def device(self) -> str:
        cp = _cupy()
        props = cp.cuda.runtime.getDeviceProperties(cp.cuda.Device().id)
        name = props["name"]
        return name.decode() if isinstance(name, bytes) else str(name)

    def to_device(self, a, dtype):
        cp = _cupy()
        with self.stream_scope():
            return cp.ascontiguousarray(cp.asarray(a, dtype=dtype))

    def to_host(self, a):
        with self.stream_scope():
            return _cupy().asnumpy(a)

    def synchronize(self):
        if self.stream is not None:
            self.stream.synchronize()
        else:
            _cupy().cuda.Device().synchronize()

    def limits(self):
        return contextlib.nullcontext()

    def release_memory(self):
        """Hand the blocks CuPy's pool keeps cached back to the driver (between benchmark records)."""
        self.synchronize()
        _cupy().get_default_memory_pool().free_all_blocks()

    def memory_peak(self, run) -> int:
        """Bytes allocated on the device while ``run()`` executes (through CuPy's allocator)."""
        cp = _cupy()
        pool = cp.get_default_memory_pool()
        total = [0]

        def counting(size):
            total[0] += size
            return pool.malloc(size)

        with cp.cuda.using_allocator(counting):
            run()
            self.synchronize()
        return total[0]

    def available_memory(self) -> int | None:
        """Device bytes free: the driver's free memory plus what CuPy's pool holds unused."""
        cp = _cupy()
        free, _ = cp.cuda.runtime.memGetInfo()
        pool = cp.get_default_memory_pool()
        return int(free) + int(pool.free_bytes())

    def gradients(self, weights, biases, X, y, config, sample_weight=None):
        """The gradient over every row (a Dask worker's call), on the device that holds X: the reference
        loop's pass with the fused epilogue kernels (:class:`CupyGemmTrainer`), no step taken."""
        with _device_of(X), self.stream_scope():
            dt = np.dtype(weights[0].dtype)
            whole = dataclasses.replace(config, batch_size=None)
            sw = None if sample_weight is None else self.to_device(sample_weight, dt)
            trainer = CupyGemmTrainer(self, weights, biases, self.to_device(X, dt), self.to_device(y, dt), whole, sw)
            return trainer.gradient_sums()

    def predict(self, weights, biases, X, output="sigmoid"):
        with _device_of(X), self.stream_scope():
            return super().predict(weights, biases, X, output)

    def trainer(self, weights, biases, X, y, config, sample_weight=None, optimizer=None):
        with _device_of(X), self.stream_scope():
            return self._trainer(weights, biases, X, y, config, sample_weight, optimizer)

    def _trainer(self, weights, biases, X, y, config, sample_weight, optimizer):
        rows = rows_per_step(X.shape[0], config.batch_size)
        dt = np.dtype(weights[0].dtype)
        units = sum(w.shape[1] for w in weights)
        uploads = sum(0 if array_namespace(a) is not np else int(np.prod(a.shape)) * dt.itemsize for a in (X, y))
        self.check_memory(
            3 * rows * units * dt.itemsize + uploads,
            f"device buffers: 3 x {rows} rows x {units} units x {dt.itemsize} bytes, plus X and y "
            "uploaded from the host",
        )
        if is_sparse(X):
            X = _cupy().asarray(X.toarray()) if array_namespace(X) is np else X.toarray()  # (no sparse GEMM yet)
        macs = rows * sum(w.shape[0] * w.shape[1] for w in weights)
        sizes = [w.shape[0] for w in weights] + [weights[-1].shape[1]]
        n_params = sum(w.size for w in weights) + (sum(sizes[1:]) if biases is not None else 0)
        slots = len(SLOTS[config.optimizer])
        state = sum(w.size for w in weights) + sum(sizes[1:]) + slots * n_params  # weights, biases, slots
        shared = dt.itemsize * (state + 2 * rows * sum(sizes))
        cp = _cupy()
        optin = cp.cuda.runtime.getDeviceProperties(cp.cuda.Device().id).get("sharedMemPerBlockOptin", 48 * 1024)
        from ._cuda import MAX_LAYERS

        fast = fast_path(config, sample_weight is not None, False)
        pinned = self.strategy
        few_rows = rows <= SMALL_ROWS or config.batch_size is not None
        fits = len(sizes) - 1 <= MAX_LAYERS and shared <= optin - _kernels(dt).static_shared_bytes()
        if fast and fits and (pinned == "fused" or (pinned is None and macs <= SMALL_LIMIT and few_rows)):
            return FusedGpuTrainer(self, weights, biases, X, y, config, shared, sample_weight, optimizer)
        use_graph = pinned == "graph" or (pinned is None and macs <= GRAPH_LIMIT)
        return CupyGemmTrainer(self, weights, biases, X, y, config, sample_weight, optimizer, use_graph=use_graph)
