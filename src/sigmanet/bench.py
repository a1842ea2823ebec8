"""Benchmark harness shared by ``sigmanet bench`` and ``benchmarks/``.

For each backend x size x dtype: warm up (compile time reported apart), time
whole report intervals through the backend's trainer (what ``Network.fit``
calls), and time the iteration's bare GEMMs with the same array library in
the same run, interleaved, so ``gemm_ratio`` (iteration / its GEMMs: the floor
that fusion approaches) is a ratio of two things measured side by side.
Peers, when importable, run the same network on the same data: the seed's
plain NumPy loop (the reference), PyTorch eager and JAX jit with the whole
interval in ``lax.fori_loop``.

Memory: ``peak_bytes`` is the most memory a timed interval allocated on top of
what the trainer holds (tracemalloc on the host, the memory pool on a GPU);
``alloc_per_iteration`` compares two interval lengths, so a loop that
allocates per iteration shows a positive figure and a fused one shows 0.
``peak_rss_bytes`` is the process's resident peak over the whole cell (the
data, the trainer's buffers, the timings: Linux's VmHWM, reset per cell) and
``rss_growth_bytes`` that peak above the resident size before the cell.
"""

from __future__ import annotations

import gc
import json
import os
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .backends import TrainConfig, get_backend
from .datasets import make_table, tutorial_table
from .network import init_weights

TUTORIAL_LAYERS = [3, 4, 1]
WIDE_LAYERS = [64, 256, 16]
DEFAULT_SIZES = [4, 1024, 16384, 65536, 262144, 1048576]
QUICK_SIZES = [4, 1024, 16384]
PEERS = ("seed-loop", "torch", "torch-graph", "jax")


@dataclass
class Record:
    backend: str
    rows: int
    layers: list
    dtype: str
    iterations_per_second: float
    samples_per_second: float
    gflops: float
    gemm_ratio: float | None
    device: str
    kind: str = "backend"  # or "peer"
    compile_seconds: float = 0.0
    seconds_per_iteration: float = 0.0
    peak_bytes: int | None = None
    alloc_per_iteration: float | None = None
    strategy: str = ""
    batch_size: int | None = None  # rows per step; None: the whole table
    loss: str = "mse"
    dask_overhead_seconds: float | None = None  # Dask cells: iteration time minus the slowest worker's compute
    peak_rss_bytes: int | None = None  # the process's resident peak during the cell (data, trainer, timings)
    rss_growth_bytes: int | None = None  # that peak above the resident size before the cell began


def _timed_record(name, rows, layers, dtype, seconds, gemm_seconds, device, batch=None, **fields) -> Record:
    """A Record from an iteration's time (over ``batch`` rows, default all) and its GEMMs' time."""
    batch = batch or rows
    return Record(
        backend=name,
        rows=rows,
        layers=list(layers),
        dtype=dtype,
        iterations_per_second=1 / seconds,
        samples_per_second=batch / seconds,
        gflops=iteration_flops(batch, layers) / seconds / 1e9,
        gemm_ratio=None if gemm_seconds is None else seconds / gemm_seconds,
        device=device,
        seconds_per_iteration=seconds,
        **fields,
    )


def layers_for(rows: int) -> list[int]:
    """The tutorial's network on its 4-row table; 64 -> 256 -> 16 on scaled-up tables."""
    return TUTORIAL_LAYERS if rows <= 4 else WIDE_LAYERS


def dataset(rows: int, layers, dtype):
    if rows == 4 and layers == TUTORIAL_LAYERS:
        return tutorial_table(dtype)
    return make_table(rows, layers[0], layers[-1], seed=0, dtype=dtype)


def iteration_flops(rows: int, layers) -> int:
    """GEMM FLOPs of one iteration: L forward, L-1 delta and L gradient products."""
    mk = [p * q for p, q in zip(layers[:-1], layers[1:])]
    return 2 * rows * (2 * sum(mk) + sum(mk[1:]))


def _median_time(fn, min_seconds, sync=lambda: None, max_repeats=15):
    """Median wall time of fn() over repeats lasting at least ``min_seconds`` in all."""
    times: list[float] = []
    total = 0.0
    while (total < min_seconds or len(times) < 3) and len(times) < max_repeats:
        sync()
        t = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t)
        total += times[-1]
    return statistics.median(times)


class GemmFloor:
    """The bare GEMMs of one iteration, on preallocated buffers of the backend's array library."""

    def __init__(self, xp, weights, X, dtype):
        rows = X.shape[0]
        self.xp = xp
        self.W = [xp.asarray(w, dtype=dtype) for w in weights]
        self.X = xp.asarray(X, dtype=dtype)
        sizes = [w.shape[0] for w in weights] + [weights[-1].shape[1]]
        rng = np.random.default_rng(1)  # drawn in the dtype: no float64 temporaries of the whole table
        self.a = [self.X] + [xp.asarray(rng.random((rows, n), dtype=dtype)) for n in sizes[1:]]
        self.d = [None] + [xp.asarray(rng.random((rows, n), dtype=dtype)) for n in sizes[1:]]
        self.g = [xp.empty_like(w) for w in self.W]

    def __call__(self):
        mm, L = self.xp.matmul, len(self.W)
        for k in range(L):
            mm(self.a[k], self.W[k], out=self.a[k + 1])
        for k in range(L - 1, 0, -1):
            mm(self.d[k + 1], self.W[k].T, out=self.d[k])
        for k in range(L):
            mm(self.a[k].T, self.d[k + 1], out=self.g[k])


def _side_by_side(run_n, sync, floor, floor_sync, min_seconds):
    """Time ``run_n(n)`` (an interval of n iterations) and ``floor()`` (its bare GEMMs), interleaved.

    n is chosen so one timed interval takes about a tenth of the budget.
    Returns (n, seconds per iteration, seconds per GEMM floor), medians.
    """
    t = time.perf_counter()
    run_n(3)
    sync()
    per = max((time.perf_counter() - t) / 3, 1e-9)
    n = int(max(1, min(1_000_000, 0.1 * min_seconds / per)))
    floor()
    floor_sync()
    t_iter, t_gemm = [], []
    for _ in range(3):  # interleaved, so both see the same machine
        t_iter.append(_median_time(lambda: run_n(n), min_seconds / 3, sync) / n)
        t_gemm.append(_median_time(floor, min_seconds / 6, floor_sync))
    return n, statistics.median(t_iter), statistics.median(t_gemm)


def resident_bytes() -> tuple[int, int] | None:
    """(resident now, resident peak) of this process from /proc/self/status (Linux), or None."""
    try:
        with open("/proc/self/status") as f:
            fields = dict(line.split(":", 1) for line in f if line.startswith(("VmRSS", "VmHWM")))
        return int(fields["VmRSS"].split()[0]) * 1024, int(fields["VmHWM"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return None


def reset_resident_peak() -> bool:
    """Start a new resident-peak measurement (Linux: writing 5 to /proc/self/clear_refs resets VmHWM)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def bench_backend(
    name, rows, dtype="float32", layers=None, min_seconds=0.5, threads=None, batch_size=None, loss="mse"
) -> Record:
    """One backend on one table: an iteration (a mini-batch's step with ``batch_size``) beside its GEMMs."""
    reset = reset_resident_peak()
    before = resident_bytes()
    rec = _bench_backend(name, rows, dtype, layers, min_seconds, threads, batch_size, loss)
    after = resident_bytes()
    if reset and before and after:
        rec.peak_rss_bytes, rec.rss_growth_bytes = after[1], max(0, after[1] - before[0])
    gc.collect()
    get_backend(name, threads=threads).release_memory()  # a GPU pool's cached blocks, for the next record
    return rec


def _bench_backend(name, rows, dtype, layers, min_seconds, threads, batch_size=None, loss="mse") -> Record:
    layers = layers or layers_for(rows)
    backend = get_backend(name, threads=threads)
    X, y = dataset(rows, layers, dtype)
    weights = init_weights(layers, np.dtype(dtype), 0, "glorot")
    batch = rows if batch_size is None else min(batch_size, rows)
    config = TrainConfig(learning_rate=1.0, reduction="mean", loss=loss, batch_size=None if batch == rows else batch)
    sync = backend.synchronize

    t0 = time.perf_counter()
    trainer = backend.trainer(weights, None, X, y, config)
    trainer.run(0, 2)
    sync()
    compile_s = time.perf_counter() - t0

    floor = GemmFloor(backend.xp, weights, X[:batch], dtype)  # the GEMMs of one step: the batch's rows
    n, sec, gemm = _side_by_side(lambda k: trainer.run(0, k), sync, floor, sync, min_seconds)
    del floor

    peak, per_it = _memory(backend, trainer, n)
    return _timed_record(
        name,
        rows,
        layers,
        dtype,
        sec,
        gemm,
        backend.device(),
        batch=batch,
        batch_size=None if batch == rows else batch,
        loss=loss,
        compile_seconds=compile_s,
        peak_bytes=peak,
        alloc_per_iteration=per_it,
        strategy=type(trainer).__name__,
    )


def _memory(backend, trainer, n):
    """(peak bytes allocated by an interval, bytes allocated per extra iteration), on the backend's device."""
    n = max(2, min(n, 50))
    small = backend.memory_peak(lambda: trainer.run(0, n))
    large = backend.memory_peak(lambda: trainer.run(0, 2 * n))
    return large, max(0.0, (large - small) / n)


# -- peers: the same network and data through other libraries --
#
# Each factory returns a Peer: ``run(n)`` runs n iterations, ``sync`` waits for
# the device, and ``floor`` runs the iteration's bare GEMMs in the peer's own
# library on the peer's own device (cuBLAS for a GPU peer), so its gemm_ratio
# compares like with like.


@dataclass
class Peer:
    run: object
    sync: object
    device: str
    floor: object


class PeerUnavailable(Exception):
    """A peer cannot run here; the message says why and what would bring it."""


def _peer_seed_loop(weights, X, y, dtype):
    W = [w.astype(dtype) for w in weights]
    X = X.astype(dtype)
    y = y.astype(dtype)
    scale = dtype.type(1.0 / len(X))

    def run(n):
        for _ in range(n):  # the seed's program, as written: a new array per step
            a = [X]
            for w in W:
                a.append(1 / (1 + np.exp(-(a[-1] @ w))))
            delta = (y - a[-1]) * (a[-1] * (1 - a[-1]))
            deltas = [delta]
            for k in range(len(W) - 1, 0, -1):
                delta = (delta @ W[k].T) * (a[k] * (1 - a[k]))
                deltas.insert(0, delta)
            for k in range(len(W)):
                W[k] += scale * (a[k].T @ deltas[k])

    return Peer(run, lambda: None, "numpy (seed loop)", GemmFloor(np, weights, X, dtype))


def _torch():
    try:
        import torch
    except ImportError:
        raise PeerUnavailable("PyTorch is not installed (pip install 'sigmanet[peers]')") from None
    return torch


def _torch_setup(weights, X, y, dtype):
    torch = _torch()
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    tdt = torch.float32 if dtype == np.float32 else torch.float64
    W = [torch.tensor(w, dtype=tdt, device=dev) for w in weights]
    Xt = torch.tensor(X, dtype=tdt, device=dev)
    yt = torch.tensor(y, dtype=tdt, device=dev)
    scale = 1.0 / len(X)

    def iteration():
        a = [Xt]
        for w in W:
            a.append(torch.sigmoid(a[-1] @ w))
        delta = (yt - a[-1]) * (a[-1] * (1 - a[-1]))
        deltas = [delta]
        for k in range(len(W) - 1, 0, -1):
            delta = (delta @ W[k].T) * (a[k] * (1 - a[k]))
            deltas.insert(0, delta)
        for k in range(len(W)):
            W[k].add_(a[k].T @ deltas[k], alpha=scale)

    sync = torch.cuda.synchronize if dev == "cuda" else (lambda: None)
    name = torch.cuda.get_device_name() if dev == "cuda" else "cpu"
    return torch, dev, iteration, sync, name, _torch_floor(torch, weights, Xt, tdt, dev)


def _torch_floor(torch, weights, Xt, tdt, dev):
    """The iteration's five-or-so bare GEMMs with torch.matmul into preallocated tensors."""
    rows = Xt.shape[0]
    W = [torch.tensor(w, dtype=tdt, device=dev) for w in weights]
    sizes = [w.shape[0] for w in weights] + [weights[-1].shape[1]]
    a = [Xt] + [torch.rand(rows, n, dtype=tdt, device=dev) for n in sizes[1:]]
    d = [None] + [torch.rand(rows, n, dtype=tdt, device=dev) for n in sizes[1:]]
    g = [torch.empty_like(w) for w in W]

    def floor():
        L = len(W)
        for k in range(L):
            torch.matmul(a[k], W[k], out=a[k + 1])
        for k in range(L - 1, 0, -1):
            torch.matmul(d[k + 1], W[k].T, out=d[k])
        for k in range(L):
            torch.matmul(a[k].T, d[k + 1], out=g[k])

    return floor


def _peer_torch(weights, X, y, dtype):
    torch, _, iteration, sync, name, floor = _torch_setup(weights, X, y, dtype)

    def run(n):
        with torch.no_grad():
            for _ in range(n):
                iteration()

    return Peer(run, sync, f"torch {torch.__version__} eager ({name})", floor)


def _peer_torch_graph(weights, X, y, dtype):
    """PyTorch as a careful GPU user runs a tiny loop: one iteration captured as a CUDA graph, replayed."""
    torch = _torch()
    if not torch.cuda.is_available():
        raise PeerUnavailable("torch-graph needs a CUDA device (PyTorch sees none)")
    torch, _, iteration, sync, name, floor = _torch_setup(weights, X, y, dtype)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.no_grad(), torch.cuda.stream(side):
        for _ in range(3):  # warm-up on a side stream, as torch.cuda.graphs asks
            iteration()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.no_grad(), torch.cuda.graph(graph):
        iteration()

    def run(n):
        for _ in range(n):
            graph.replay()

    return Peer(run, sync, f"torch {torch.__version__} CUDA graph ({name})", floor)


def _peer_jax(weights, X, y, dtype, batch_size=None):
    # XLA takes 75% of the GPU's memory at its first use unless told not to, and
    # would starve whatever runs after it (the PyTorch peers at the next size:
    # measured, an out-of-memory at 4M rows on an H100).
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    try:
        import jax
        import jax.numpy as jnp
    except ImportError:
        raise PeerUnavailable("JAX is not installed (pip install 'sigmanet[peers]')") from None

    if dtype == np.float64:
        jax.config.update("jax_enable_x64", True)
    Xj, yj = jnp.asarray(X, dtype), jnp.asarray(y, dtype)
    batch = len(X) if batch_size is None else batch_size
    if len(X) % batch:
        raise PeerUnavailable(f"the JAX peer needs the rows ({len(X)}) to be a multiple of the batch ({batch})")
    n_batches, scale = len(X) // batch, 1.0 / batch

    def step(i, W):
        start = (i % n_batches) * batch  # the batches in row order, as sigmanet's
        xb = jax.lax.dynamic_slice(Xj, (start, 0), (batch, Xj.shape[1]))
        yb = jax.lax.dynamic_slice(yj, (start, 0), (batch, yj.shape[1]))
        a = [xb]
        for w in W:
            a.append(jax.nn.sigmoid(a[-1] @ w))
        delta = (yb - a[-1]) * (a[-1] * (1 - a[-1]))
        deltas = [delta]
        for k in range(len(W) - 1, 0, -1):
            delta = (delta @ W[k].T) * (a[k] * (1 - a[k]))
            deltas.insert(0, delta)
        return tuple(w + scale * (a[k].T @ deltas[k]) for k, w in enumerate(W))

    # "highest": true float32 GEMMs, as cuBLAS through CuPy and PyTorch run them
    # (XLA's default on an H100 is TF32, a 10-bit mantissa: not the same arithmetic).
    @jax.jit
    def interval(W, n):
        with jax.default_matmul_precision("highest"):
            return jax.lax.fori_loop(0, n, step, W)

    state = {"W": tuple(jnp.asarray(w, dtype) for w in weights)}

    def run(n):
        state["W"] = interval(state["W"], n)
        jax.block_until_ready(state["W"])

    sizes = [w.shape[0] for w in weights] + [weights[-1].shape[1]]
    rng = np.random.default_rng(1)
    acts = tuple(jnp.asarray(rng.random((batch, n)), dtype) for n in sizes[1:])
    dels = tuple(jnp.asarray(rng.random((batch, n)), dtype) for n in sizes[1:])
    Xfloor = Xj[:batch]

    @jax.jit
    def gemms(W, a_out, d_out):
        with jax.default_matmul_precision("highest"):
            a = (Xfloor,) + a_out
            fwd = [a[k] @ W[k] for k in range(len(W))]
            back = [d_out[k] @ W[k].T for k in range(1, len(W))]
            grads = [a[k].T @ d_out[k] for k in range(len(W))]
            return fwd, back, grads

    def floor():
        jax.block_until_ready(gemms(state["W"], acts, dels))

    return Peer(run, lambda: None, f"jax {jax.__version__} jit+fori_loop ({jax.devices()[0].platform})", floor)


_PEER_FACTORIES = {
    "seed-loop": _peer_seed_loop,
    "torch": _peer_torch,
    "torch-graph": _peer_torch_graph,
    "jax": _peer_jax,
}


def _probe_jax():
    import importlib.util

    if importlib.util.find_spec("jax") is None:
        raise PeerUnavailable("JAX is not installed (pip install 'sigmanet[peers]')")


def _probe_torch_graph():
    if not _torch().cuda.is_available():
        raise PeerUnavailable("torch-graph needs a CUDA device (PyTorch sees none)")


# What each peer needs, checked without running it: a peer that computes starts
# thread pools (XLA's, PyTorch's) that stay and slow whatever is timed next,
# the backends and numba's strategy measurement included (measured: numba's
# choice at 512-row batches of 784-128-10 flipped to the slower strategy
# after a JAX probe that ran a 4-row step).
_PEER_PROBES = {
    "seed-loop": lambda: None,
    "torch": _torch,
    "torch-graph": _probe_torch_graph,
    "jax": _probe_jax,
}


def usable_peers(peers) -> tuple[list[str], dict[str, str]]:
    """(the peers that can run here, {peer: why not} for the others), checked without running any."""
    usable, skipped = [], {}
    for peer in peers:
        if peer not in _PEER_PROBES:
            skipped[peer] = f"unknown peer; known: {sorted(_PEER_PROBES)}"
            continue
        try:
            _PEER_PROBES[peer]()
        except PeerUnavailable as e:
            skipped[peer] = str(e)
            continue
        usable.append(peer)
    return usable, skipped


def bench_peer(peer, rows, dtype="float32", layers=None, min_seconds=0.5, batch_size=None) -> Record:
    """Time a peer on the same data; its gemm_ratio is against its own library's GEMMs on its own device.

    Raises
    ------
    PeerUnavailable
        If the peer cannot run here (see :func:`usable_peers`).
    """
    layers = layers or layers_for(rows)
    dt = np.dtype(dtype)
    X, y = dataset(rows, layers, dtype)
    weights = init_weights(layers, dt, 0, "glorot")
    if batch_size is None or batch_size >= rows:
        peer_run, batch_size = _PEER_FACTORIES[peer](weights, X, y, dt), None
    elif peer == "jax":
        peer_run = _peer_jax(weights, X, y, dt, batch_size=batch_size)
    else:
        raise PeerUnavailable(f"the {peer} peer runs full-batch steps only")
    t0 = time.perf_counter()
    peer_run.run(2)
    peer_run.sync()
    compile_s = time.perf_counter() - t0
    _, sec, gemm = _side_by_side(peer_run.run, peer_run.sync, peer_run.floor, peer_run.sync, min_seconds)
    device = peer_run.device
    del peer_run
    if peer.startswith("torch"):  # PyTorch's caching allocator keeps the peer's buffers otherwise
        gc.collect()
        _torch().cuda.empty_cache()
    return _timed_record(
        peer,
        rows,
        layers,
        dtype,
        sec,
        gemm,
        device,
        batch=batch_size,
        kind="peer",
        compile_seconds=compile_s,
        batch_size=batch_size,
    )


def bench_dask(rows, dtype="float32", layers=None, n_workers=2, min_seconds=0.5, backend="numba") -> Record:
    """An iteration on a local Dask cluster (``n_workers`` processes, one thread each) over a table built
    on the workers, beside the in-memory iteration on the same rows (run first, in this process).

    ``dask_overhead_seconds`` is the iteration's wall time minus the slowest worker's compute: the
    scheduling, the weights sent out and the gradients gathered.
    """
    from distributed import Client, LocalCluster

    from .dask import DaskTrainer, make_dask_table

    layers = layers or layers_for(rows)
    weights = init_weights(layers, np.dtype(dtype), 0, "glorot")
    config = TrainConfig(learning_rate=1.0, reduction="mean")
    with (
        LocalCluster(n_workers=n_workers, threads_per_worker=1, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        # chunks of 65536 rows at least, 4 per worker at least: every worker gets a share
        blocks = max(1, rows // (4 * n_workers * 65536))
        X, y = make_dask_table(rows, layers[0], layers[-1], dtype=dtype, blocks_per_chunk=blocks)
        t0 = time.perf_counter()
        trainer = DaskTrainer(get_backend(backend), weights, None, X, y, config)
        trainer.run(0, 2)
        compile_s = time.perf_counter() - t0
        trainer.seconds_in_tasks, n = 0.0, 3
        t = time.perf_counter()
        while True:
            trainer.run(0, n)
            if time.perf_counter() - t >= min_seconds or n >= 1000:
                break
            n *= 2
            trainer.seconds_in_tasks, t = 0.0, time.perf_counter()
        sec = (time.perf_counter() - t) / n
        overhead = sec - trainer.seconds_in_tasks / n
        device = f"{get_backend(backend).device()}; LocalCluster {n_workers} workers x 1 thread ({client.id[:8]})"
    return _timed_record(
        f"{backend}+dask",
        rows,
        layers,
        dtype,
        sec,
        None,
        device,
        compile_seconds=compile_s,
        strategy="DaskTrainer",
        dask_overhead_seconds=overhead,
    )


def tutorial_fit_speedup(backend: str, baseline="numpy", repeats=3) -> dict:
    """The tutorial's run (60000 iterations, report every 10000) through Network.fit, compile excluded."""
    from .network import Network

    X, y = tutorial_table()
    out = {}
    for name in (baseline, backend):
        Network(TUTORIAL_LAYERS, backend=name, seed=1, init="legacy").fit(X, y, iterations=4, report_every=2)
    times: dict[str, list[float]] = {baseline: [], backend: []}
    for _ in range(repeats):  # alternate, so both see the same machine
        for name in (baseline, backend):
            net = Network(TUTORIAL_LAYERS, backend=name, seed=1, init="legacy")
            t = time.perf_counter()
            net.fit(X, y, iterations=60000, report_every=10000)
            get_backend(name).synchronize()
            times[name].append(time.perf_counter() - t)
    for name, ts in times.items():
        out[name] = statistics.median(ts) / 60000
    out["speedup"] = out[baseline] / out[backend]
    return out


# -- reporting --


def format_table(records) -> str:
    head = (
        f"{'backend':12s} {'kind':7s} {'rows':>8s} {'layers':14s} {'dtype':7s} {'it/s':>10s} "
        f"{'samples/s':>10s} {'GFLOP/s':>8s} {'gemm_ratio':>10s} {'compile s':>9s} {'alloc/it':>9s} "
        f"{'peak MiB':>9s} {'+RSS MiB':>9s}"
    )
    lines = [head, "-" * len(head)]
    for r in records:
        ratio = "" if r.gemm_ratio is None else f"{r.gemm_ratio:.2f}"
        alloc = "" if r.alloc_per_iteration is None else f"{r.alloc_per_iteration:.0f}"
        peak = "" if r.peak_bytes is None else f"{r.peak_bytes / 2**20:.1f}"
        rss = "" if r.rss_growth_bytes is None else f"{r.rss_growth_bytes / 2**20:.1f}"
        lines.append(
            f"{r.backend:12s} {r.kind:7s} {r.rows:8d} {'-'.join(map(str, r.layers)):14s} {r.dtype:7s} "
            f"{r.iterations_per_second:10.4g} {r.samples_per_second:10.4g} {r.gflops:8.2f} {ratio:>10s} "
            f"{r.compile_seconds:9.2f} {alloc:>9s} {peak:>9s} {rss:>9s}"
        )
    return "\n".join(lines)


def machine_info() -> dict:
    """What the figures were measured on: CPU, BLAS (library, version, kernel), OpenBLAS overrides, date."""
    import datetime
    import os
    import platform

    from .backends.base import cpu_name

    info = {
        "cpu": cpu_name(),
        "date": datetime.date.today().isoformat(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "blas": [],
        "openblas_env": {k: os.environ[k] for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE") if k in os.environ},
    }
    try:
        from threadpoolctl import threadpool_info

        info["blas"] = [
            {k: lib.get(k) for k in ("internal_api", "version", "architecture", "num_threads")}
            | {"file": Path(lib["filepath"]).name}
            for lib in threadpool_info()
            if lib.get("user_api") == "blas"
        ]
    except ImportError:
        pass
    return info


def _blas_line(info) -> str:
    libs = ", ".join(f"{b['internal_api']} {b['version']} ({b['architecture']})" for b in info["blas"]) or "BLAS ?"
    forced = " ".join(f"{k}={v}" for k, v in info["openblas_env"].items())
    return libs + (f" [forced: {forced}]" if forced else "")


def chart_unavailable() -> str | None:
    """Why throughput.png cannot be drawn here (None when it can)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return "matplotlib is not installed (pip install 'sigmanet[bench]')"
    return None


def write_results(records, out_dir) -> list[Path]:
    """results.json (the machine, then every record) always; throughput.png where matplotlib is installed.

    The chart has one panel per network, since samples/s of different
    networks are not comparable, and names the machine, BLAS and date.
    Returns the paths written.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    info = machine_info()
    (out / "results.json").write_text(json.dumps({"machine": info, "records": [asdict(r) for r in records]}, indent=2))
    written = [out / "results.json"]
    if chart_unavailable() or not records:
        return written
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    nets = sorted({tuple(r.layers) for r in records}, key=lambda ls: sum(p * q for p, q in zip(ls, ls[1:])))
    fig, axes = plt.subplots(1, len(nets), figsize=(6.5 * len(nets), 4.8), squeeze=False)
    for ax, net in zip(axes[0], nets):
        for (name, kind, dtype), group in _groups([r for r in records if tuple(r.layers) == net]).items():
            group.sort(key=lambda r: r.rows)
            ax.plot(
                [r.rows for r in group],
                [r.samples_per_second for r in group],
                marker="o",
                linestyle="--" if kind == "peer" else "-",
                label=f"{name} ({dtype})" + (" [peer]" if kind == "peer" else ""),
            )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("rows in the table (full batch)")
        ax.set_ylabel("samples / second (training)")
        ax.set_title(f"network {'-'.join(map(str, net))}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    devices = sorted({r.device for r in records if r.kind == "backend"})
    fig.suptitle(f"sigmanet training throughput, {info['date']}", fontsize=11)
    fig.text(0.01, 0.01, f"{'; '.join(devices)} | {_blas_line(info)}", fontsize=7)
    fig.tight_layout(rect=(0, 0.04, 1, 0.95))
    fig.savefig(out / "throughput.png", dpi=120)
    plt.close(fig)
    written.append(out / "throughput.png")
    return written


def _groups(records):
    groups: dict = {}
    for r in records:
        groups.setdefault((r.backend, r.kind, r.dtype), []).append(r)
    return groups


def run(
    backends, sizes, dtypes, peers=PEERS, min_seconds=0.5, progress=print, layers=None, batch_size=None, loss="mse"
):
    """Every backend at every size first, then the peers: a peer's thread pools
    (PyTorch's, XLA's) spin after its last op and would slow whatever is timed
    next (measured: numba at 65536 rows read 1.25x its GEMMs right after the
    peers, 1.02x without). ``layers`` None: :func:`layers_for` each size.
    ``batch_size``: time mini-batch steps of that many rows (``samples/s``
    then counts the batch's rows, and gemm_ratio is against the batch's GEMMs)."""
    records = []
    for dtype in dtypes:
        for rows in sizes:
            for name in backends:
                records.append(
                    bench_backend(
                        name, rows, dtype, layers=layers, min_seconds=min_seconds, batch_size=batch_size, loss=loss
                    )
                )
                progress(format_table(records[-1:]).splitlines()[-1])
        if peers and loss != "mse":
            progress("skipping the peers: they run the seed's loss only")
            continue
        for rows in sizes:
            for peer in peers:
                try:
                    rec = bench_peer(peer, rows, dtype, layers=layers, min_seconds=min_seconds, batch_size=batch_size)
                except PeerUnavailable as e:
                    progress(f"skipping peer {peer} at {rows} rows: {e}")
                    continue
                records.append(rec)
                progress(format_table([rec]).splitlines()[-1])
    return records
