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
"""

from __future__ import annotations

import contextlib

import numpy as np

from ._cuda import MAX_FIXED_LAYERS
from .base import Backend, GemmTrainer, Trainer, array_namespace, batch_bounds, kernel_options, step_scale

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


class FusedGpuTrainer(Trainer):
    """A whole report interval in one kernel launch (one block, state in shared memory)."""

    def __init__(self, backend, weights, biases, X, y, config, shared_bytes):
        cp = _cupy()
        self.backend, self.config = backend, config
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
        done = 0
        while done < iterations:  # the kernel counts iterations in 32 bits
            count = min(iterations - done, MAX_LAUNCH_ITERATIONS)
            _kernels(self.dt).train_small(
                X=self.X,
                Y=self.y,
                W=self.W,
                B=self.B,
                sizes=self.sizes,
                **kernel_options(cfg, start + done, count, self.use_bias),
                err=self.err if done == 0 else self.err_later,
                block_size=self.block_size,
                shared_bytes=self.shared_bytes,
                fixed_shape=self.fixed_shape,
            )
            done += count
        return float(self.err.get()[0]) / ((r1 - r0) * self.sizes_host[-1])

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


class CupyGemmTrainer(GemmTrainer):
    """cuBLAS GEMMs with fused epilogue kernels; medium sizes replay an iteration as a CUDA graph.

    No host synchronisation inside a report interval: the first iteration's
    error is summed on the device and read once, after the interval's last
    launch is queued.
    """

    uses_scratch = False  # the epilogues are fused kernels

    def __init__(self, backend, weights, biases, X, y, config, use_graph=False):
        super().__init__(backend, weights, biases, X, y, config)
        xp, dt = self.xp, self.W[0].dtype
        self.kernels = _kernels(dt)
        self.err = xp.zeros(1, np.float64)
        self.err_first = xp.zeros(1, np.float64)
        self.err_count = 0  # elements the device error sums over (0: none asked this interval)
        self.err_wanted = False  # the next output_delta adds sum |y - a| to err
        m = self.a[1].shape[0]
        # bias gradients are ones.T @ d: a GEMM (cuBLAS, or ours in the graph), no reduction kernel
        self.ones = None if self.b is None else xp.ones((m, 1), dt)
        self.use_graph = use_graph and config.batch_size is None
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

    # -- fused epilogues (GemmTrainer.run calls these around xp.matmul) --

    def forward_sigmoid(self, z, k):
        self.kernels.forward_sigmoid(z, None if self.b is None else self.b[k])

    def error(self, y, a, tmp):
        # summed on the device by the output_delta launch that follows; read at the interval's end
        self.err.fill(0)
        self.err_count, self.err_wanted = a.size, True
        return float("nan")

    def output_delta(self, y, a, d, tmp):
        err = self.err if self.err_wanted else None
        self.err_wanted = False
        self.kernels.output_delta(y, a, d, self.config.loss == "bce", err)

    def hidden_delta(self, d, a, tmp):
        self.kernels.hidden_delta(d, a)

    def update(self, k, a_in, d_out, scale):
        self.xp.matmul(a_in.T, d_out, out=self.g[k])
        self.kernels.sgd_update(self.W[k], self.g[k], scale)
        if self.b is not None:
            m = d_out.shape[0]
            self.xp.matmul(self.ones[:m].T, d_out, out=self.gb[k].reshape(1, -1))
            self.kernels.sgd_update(self.b[k], self.gb[k], scale)

    def _take_error(self):
        """The device-summed error of this interval's first iteration, as mean |y - out| (one read)."""
        count, self.err_count = self.err_count, 0
        return float(self.err.get()[0]) / count if count else float("nan")

    def gradient_sums(self):
        grads, bias_grads, _ = super().gradient_sums()
        count = self.err_count
        return grads, bias_grads, self._take_error() * count

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
        scale = step_scale(cfg, self.n_rows)
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
            super().run(start, iterations)
            return self._take_error()
        cp = self.xp
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
        return float(self.err_first.get()[0]) / self.a[-1].size


class CupyBackend(Backend):
    name = "cupy"
    strategies = {
        "fused": {"SMALL_LIMIT": 1 << 62, "SMALL_ROWS": 1 << 62},
        "graph": {"SMALL_LIMIT": -1, "GRAPH_LIMIT": 1 << 62},
        "eager": {"SMALL_LIMIT": -1, "GRAPH_LIMIT": -1},
    }

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

    def trainer(self, weights, biases, X, y, config):
        rows = X.shape[0] if config.batch_size is None else min(config.batch_size, X.shape[0])
        dt_ = np.dtype(weights[0].dtype)
        units = sum(w.shape[1] for w in weights)
        uploads = sum(0 if array_namespace(a) is not np else int(np.prod(a.shape)) * dt_.itemsize for a in (X, y))
        self.check_memory(
            2 * rows * units * dt_.itemsize + uploads,
            f"device buffers: 2 x {rows} rows x {units} units x {dt_.itemsize} bytes, plus X and y "
            "uploaded from the host",
        )
        macs = rows * sum(w.shape[0] * w.shape[1] for w in weights)
        dt = np.dtype(weights[0].dtype)
        sizes = [w.shape[0] for w in weights] + [weights[-1].shape[1]]
        shared = dt.itemsize * (sum(w.size for w in weights) + sum(sizes[1:]) + 2 * rows * sum(sizes))
        cp = _cupy()
        optin = cp.cuda.runtime.getDeviceProperties(cp.cuda.Device().id).get("sharedMemPerBlockOptin", 48 * 1024)
        from ._cuda import MAX_LAYERS

        few_rows = rows <= SMALL_ROWS or config.batch_size is not None
        fits = len(sizes) - 1 <= MAX_LAYERS and shared <= optin - _kernels(dt).static_shared_bytes()
        if macs <= SMALL_LIMIT and few_rows and fits:
            return FusedGpuTrainer(self, weights, biases, X, y, config, shared)
        return CupyGemmTrainer(self, weights, biases, X, y, config, use_graph=macs <= GRAPH_LIMIT)

    def _sigmoid(self, z):
        _kernels(z.dtype).forward_sigmoid(z, None)
        return z
