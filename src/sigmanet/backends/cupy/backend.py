"""The CuPy backend: the seed's loop on a CUDA GPU.

Data stays on the device for the whole fit: NumPy inputs are copied once,
CuPy inputs are used as they are. Three strategies, by size:

* small networks (``SMALL_LIMIT`` multiply-adds, a full batch of at most
  ``SMALL_ROWS`` rows or any mini-batch, and the whole state fits in shared
  memory): :class:`FusedGpuTrainer` runs a report interval in one kernel
  launch (``train_small`` in kernels/sigmanet.cu), one thread block iterating
  with block barriers; nets of up to 4 layers and 64 units run an instance
  compiled for their shape.
* medium (``GRAPH_LIMIT``, full batch): one iteration of our own
  register-tiled GEMMs, each with its epilogue fused in, is captured as a
  CUDA graph and replayed; CuPy refuses cuBLAS during stream capture, hence
  GEMMs of our own. A capture that fails falls back, once and for good, to
  the eager path.
* large, and mini-batches of medium nets: :class:`CupyGemmTrainer` runs GEMMs
  through cuBLAS (CuPy's matmul, into preallocated buffers) and each
  elementwise epilogue as one fused kernel.

The limits were measured on an H100 (docs/perf-notes.md and
docs/benchmarks.md have the crossovers); ``benchmarks/strategy_crossover.py``
measures them on another card.

The single launch and the graph run plain gradient descent on sigmoid
outputs (the seed's step, and the options their kernels take: bias,
cross-entropy, mini-batches, shuffled epochs); every other option (the other
optimizers, L2, sample weights, softmax and identity outputs, sparse X) runs
on the eager engine, which is the xp reference loop
(:mod:`sigmanet.backends.reference`) on CuPy arrays with the fused kernels
where they apply. Those two engines report the first iteration's loss from
one more forward pass of that batch; fusing it into their kernels is the GPU
issue's work, for a session with a device.
"""

from __future__ import annotations

import contextlib

import numpy as np

from ..._arrays import array_namespace, is_sparse
from ..._plan import STATS_SIZE, Stats, batch_bounds, kernel_options, rows_per_step, step_scale
from ..base import Backend, Trainer
from ..reference import ReferenceTrainer, activate, row_losses
from ._cuda import MAX_FIXED_LAYERS

# Limits from crossovers measured on an H100 (benchmarks/strategy_crossover.py;
# docs/perf-notes.md has the tables). In multiply-adds per iteration: one
# launch beat the graph up to 256 x 16-32-4 (164K MACs); the graph beat eager
# cuBLAS up to 16384 x 64-256-16 (336M) and lost at 32768 (671M). In rows:
# the single block's weight-gradient loop walks every row, and at 1024 rows of
# 3-4-1 the graph won (18.4 us against 21.7).
SMALL_LIMIT = 1 << 19  # up to which one launch runs the interval (if its state fits in shared memory)
SMALL_ROWS = 512  # ... and a full batch has at most this many rows (mini-batches have no graph to go to)
GRAPH_LIMIT = 400_000_000  # up to which one full-batch iteration is replayed as a CUDA graph
MAX_BLOCK = 1024
FIXED_SHAPE_WIDTH = 64  # nets this narrow (and at most MAX_FIXED_LAYERS deep) get a kernel compiled for their shape
MAX_LAUNCH_ITERATIONS = 1 << 30  # one launch's iterations (an int32 in the kernel)


def _cupy():
    import cupy

    return cupy


def _kernels(dtype):
    from ._cuda import kernels

    return kernels(np.dtype(dtype).name)


def fast_path(config, weighted: bool, sparse: bool) -> bool:
    """Whether the single launch and the graph can run this fit: the options their kernels take."""
    return (
        config.optimizer == "sgd"
        and config.alpha == 0
        and config.output == "sigmoid"
        and config.schedule == "constant"
        and config.lr_scale == 1.0
        and not config.average_loss
        and not weighted
        and not sparse
    )


def first_loss(trainer, start: int) -> np.ndarray:
    """The stats' loss entries of global iteration ``start``'s batch, from a forward pass of it (xp)."""
    xp = trainer.backend.xp
    r0, r1 = batch_bounds(start, trainer.X.shape[0], trainer.config.batch_size)
    weights, biases = trainer.weights()
    a = trainer.X[r0:r1]
    with np.errstate(over="ignore"):
        for k, w in enumerate(weights):
            z = a @ xp.asarray(w)
            a = activate(xp, z, None if biases is None else xp.asarray(biases[k]), "sigmoid")
    data = row_losses(xp, trainer.y[r0:r1], a, trainer.config.loss, float(np.finfo(trainer.X.dtype).eps))
    out = np.zeros(STATS_SIZE)
    out[2], out[3] = float(data.sum()), r1 - r0
    return out


class FusedGpuTrainer(Trainer):
    """A whole report interval in one kernel launch (one block, state in shared memory)."""

    def __init__(self, backend, weights, biases, X, y, config, shared_bytes, optimizer=None):
        cp = _cupy()
        self.backend, self.config = backend, config
        self.step = 0 if optimizer is None else optimizer.step
        self.dt = np.dtype(weights[0].dtype)
        self.shapes = [w.shape for w in weights]
        self.sizes_host = [w.shape[0] for w in weights] + [weights[-1].shape[1]]
        self.sizes = cp.asarray(np.array(self.sizes_host, np.int32))
        self.W = cp.asarray(np.concatenate([np.asarray(w, self.dt).ravel() for w in weights]))
        self.use_bias = biases is not None
        self.B = cp.asarray(
            np.concatenate([np.asarray(b, self.dt) for b in biases]) if self.use_bias else np.zeros(1, self.dt)
        )
        self.X = backend.to_device(X, self.dt)
        self.y = backend.to_device(y, self.dt)
        self.err = cp.zeros(1, np.float64)
        self.err_later = cp.zeros(1, np.float64)  # later launches' first-iteration errors, not reported
        self.shared_bytes = shared_bytes
        rows = self.X.shape[0] if config.batch_size is None else min(config.batch_size, self.X.shape[0])
        work = rows * max(self.sizes_host)
        # tiny nets run the kernel compiled for their shape (one compile per shape, cached on disk)
        small = len(self.sizes_host) - 1 <= MAX_FIXED_LAYERS and max(self.sizes_host) <= FIXED_SHAPE_WIDTH
        self.fixed_shape = tuple(self.sizes_host) if small else None
        self.block_size = int(min(MAX_BLOCK, max(32, -(-work // 32) * 32)))

    def run(self, start, iterations):
        cfg = self.config
        r0, r1 = batch_bounds(start, self.X.shape[0], cfg.batch_size)
        loss = first_loss(self, start)
        done = 0
        while done < iterations:  # the kernel counts iterations in 32 bits
            count = min(iterations - done, MAX_LAUNCH_ITERATIONS)
            _kernels(self.dt).train_small(
                X=self.X,
                Y=self.y,
                W=self.W,
                B=self.B,
                sizes=self.sizes,
                **_launch_options(cfg, start + done, count, self.use_bias),
                err=self.err if done == 0 else self.err_later,
                block_size=self.block_size,
                shared_bytes=self.shared_bytes,
                fixed_shape=self.fixed_shape,
            )
            done += count
        self.step += iterations
        loss[0], loss[1] = float(self.err.get()[0]), (r1 - r0) * self.sizes_host[-1]
        return Stats(loss)

    def optimizer_arrays(self):
        return {}

    def weights(self):
        flat = self.W.get()
        ws, at = [], 0
        for s in self.shapes:
            ws.append(flat[at : at + s[0] * s[1]].reshape(s).copy())
            at += s[0] * s[1]
        if not self.use_bias:
            return ws, None
        bflat = self.B.get()
        bounds = np.concatenate([[0], np.cumsum(self.sizes_host[1:])])
        return ws, [bflat[bounds[k] : bounds[k + 1]].copy() for k in range(len(ws))]


def _launch_options(config, start, iterations, use_bias):
    """The single launch's arguments (the options its kernel takes; see :func:`fast_path`)."""
    full = kernel_options(config, start, iterations, use_bias, False, 0)
    return {k: full[k] for k in ("start", "iterations", "batch_size", "learning_rate", "mean", "use_bias")} | {
        "bce": config.loss == "bce"
    }


class CupyGemmTrainer(ReferenceTrainer):
    """The xp reference loop on CuPy arrays (cuBLAS GEMMs) with fused epilogue kernels; for the options
    of :func:`fast_path`, medium sizes replay an iteration as a CUDA graph.

    No host synchronisation inside a report interval: the statistics are summed
    on the device and read once, after the interval's last launch is queued.
    """

    uses_scratch = True  # the xp hooks (other outputs, weights, optimizers) use the reference's scratch

    def __init__(self, backend, weights, biases, X, y, config, sample_weight=None, optimizer=None, use_graph=False):
        super().__init__(backend, weights, biases, X, y, config, sample_weight, optimizer)
        xp, dt = self.xp, self.W[0].dtype
        self.kernels = _kernels(dt)
        self.fast = fast_path(config, self.sw is not None, False)
        self.err = xp.zeros(1, np.float64)
        self.err_first = xp.zeros(1, np.float64)
        m = self.a[1].shape[0]
        # bias gradients are ones.T @ d: a GEMM (cuBLAS, or ours in the graph), no reduction kernel
        self.ones = None if self.b is None else xp.ones((m, 1), dt)
        self.use_graph = use_graph and config.batch_size is None and self.fast
        self.graph = None
        self.graph_error = None  # why capture failed, if it did
        self.stream = None
        if self.use_graph:  # partial sums where a weight-gradient GEMM splits its rows (Kernels.gemm_splits)
            K = self.kernels

            def parts(n_in, n_out):
                splits = K.gemm_splits(n_in, n_out, m)
                return xp.empty((splits, n_in, n_out), dt) if splits > 1 else None

            self.g_parts = [parts(*w.shape) for w in self.W]
            self.gb_parts = None if self.b is None else [parts(1, w.shape[1]) for w in self.W]

    # -- fused epilogues where the options allow (the reference loop calls these around xp.matmul) --

    def forward_activation(self, z, k):
        if k < len(self.W) - 1 or self.config.output == "sigmoid":
            self.kernels.forward_sigmoid(z, None if self.b is None else self.b[k])
        else:
            super().forward_activation(z, k)

    def output_delta(self, y, a, d, tmp, sw):
        if self.config.output == "sigmoid" and sw is None:
            self.kernels.output_delta(y, a, d, self.config.loss == "bce", None)
        else:
            super().output_delta(y, a, d, tmp, sw)

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
            K.gemm(a[k], self.W[k], a[k + 1], epilogue="sigmoid", E=bias, compile_only=compile_only)
        if launch:
            K.output_delta(self.y, a[L], self.d[L], cfg.loss == "bce", self.err)
        for k in range(L - 1, 0, -1):
            K.gemm(self.d[k + 1], self.W[k], self.d[k], tb=True, epilogue="dsigmoid", E=a[k], compile_only=compile_only)
        scale = step_scale(cfg, 0, self.n_rows, self.n_rows)
        for k in range(L):  # every delta is computed: the steps may go in place
            self._step(self.W[k], a[k], self.d[k + 1], self.g_parts[k], scale, compile_only)
            if self.b is not None:
                self._step(self.b[k].reshape(1, -1), self.ones, self.d[k + 1], self.gb_parts[k], scale, compile_only)

    def _step(self, w, a_in, d_out, parts, scale, compile_only):
        """w += scale * a_in.T @ d_out: in the GEMM's epilogue, or through split partials."""
        if parts is None:
            self.kernels.gemm(a_in, d_out, w, ta=True, epilogue="sgd", scale=scale, compile_only=compile_only)
        else:
            self.kernels.gemm(a_in, d_out, parts, ta=True, compile_only=compile_only)
            if not compile_only:
                self.kernels.sgd_update(w, parts.reshape(parts.shape[0], *w.shape), scale)

    def _capture(self):
        cp = self.xp
        self.stream = cp.cuda.Stream(non_blocking=True)
        try:
            self._iteration_own_kernels(compile_only=True)  # module loads stay out of the capture
            with self.stream:
                self.stream.begin_capture()
                try:
                    self._iteration_own_kernels()
                finally:
                    graph = self.stream.end_capture()
            self.graph = graph
        except Exception as e:
            self.use_graph, self.graph_error = False, f"{type(e).__name__}: {e}"

    def run(self, start, iterations):
        if self.use_graph and self.graph is None:
            self._capture()
        if not self.use_graph:
            return super().run(start, iterations)
        cp = self.xp
        stats = first_loss(self, start)
        # The stream does not wait on the null stream by itself (non_blocking):
        # uploads and earlier work queued there must land before the first replay.
        self.stream.wait_event(cp.cuda.Stream.null.record())
        try:
            with self.stream:
                self.err.fill(0)
                self.graph.launch(self.stream)
                self.err_first[...] = self.err  # the first iteration's sum |e|, copied on the stream
                for _ in range(iterations - 1):
                    self.graph.launch(self.stream)
        finally:  # also on Ctrl-C: no replay may outlive the buffers it writes
            self.stream.synchronize()
        self.step += iterations
        stats[0], stats[1] = float(self.err_first.get()[0]), self.a[-1].size
        return Stats(stats)


class CupyBackend(Backend):
    name = "cupy"
    strategies = ("fused", "graph", "eager")

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
        return cp.ascontiguousarray(cp.asarray(a, dtype=dtype))

    def to_host(self, a):
        return _cupy().asnumpy(a)

    def synchronize(self):
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

    def trainer(self, weights, biases, X, y, config, sample_weight=None, optimizer=None):
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
        shared = dt.itemsize * (sum(w.size for w in weights) + sum(sizes[1:]) + 2 * rows * sum(sizes))
        cp = _cupy()
        optin = cp.cuda.runtime.getDeviceProperties(cp.cuda.Device().id).get("sharedMemPerBlockOptin", 48 * 1024)
        from ._cuda import MAX_LAYERS

        fast = fast_path(config, sample_weight is not None, False)
        pinned = self.strategy
        few_rows = rows <= SMALL_ROWS or config.batch_size is not None
        fits = len(sizes) - 1 <= MAX_LAYERS and shared <= optin - _kernels(dt).static_shared_bytes()
        if fast and fits and (pinned == "fused" or (pinned is None and macs <= SMALL_LIMIT and few_rows)):
            return FusedGpuTrainer(self, weights, biases, X, y, config, shared, optimizer)
        use_graph = pinned == "graph" or (pinned is None and macs <= GRAPH_LIMIT)
        return CupyGemmTrainer(self, weights, biases, X, y, config, sample_weight, optimizer, use_graph=use_graph)
