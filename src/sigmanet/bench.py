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
"""

from __future__ import annotations

import json
import statistics
import time
import tracemalloc
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .backends import TrainConfig, get_backend
from .data import make_table, seed_table
from .network import init_weights

SEED_LAYERS = [3, 4, 1]
WIDE_LAYERS = [64, 256, 16]
DEFAULT_SIZES = [4, 1024, 16384, 65536, 262144, 1048576]
QUICK_SIZES = [4, 1024, 16384]
PEERS = ("seed-loop", "torch", "jax")


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


def layers_for(rows: int) -> list[int]:
    """The seed's network on its 4-row table; 64 -> 256 -> 16 on scaled-up tables."""
    return SEED_LAYERS if rows <= 4 else WIDE_LAYERS


def dataset(rows: int, layers, dtype):
    if rows == 4 and layers == SEED_LAYERS:
        return seed_table(dtype)
    return make_table(rows, layers[0], layers[-1], seed=0, dtype=dtype)


def iteration_flops(rows: int, layers) -> int:
    """GEMM FLOPs of one iteration: L forward, L-1 delta and L gradient products."""
    mk = [p * q for p, q in zip(layers[:-1], layers[1:])]
    return 2 * rows * (2 * sum(mk) + sum(mk[1:]))


def _median_time(fn, min_seconds, sync=lambda: None, max_repeats=15):
    """Median wall time of fn() over repeats lasting at least ``min_seconds`` in all."""
    times = []
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
        rng = np.random.default_rng(1)
        self.a = [self.X] + [xp.asarray(rng.random((rows, n)), dtype=dtype) for n in sizes[1:]]
        self.d = [None] + [xp.asarray(rng.random((rows, n)), dtype=dtype) for n in sizes[1:]]
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


def _host_alloc(run):
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    run()
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    return peak


def bench_backend(name, rows, dtype="float32", layers=None, min_seconds=0.5, threads=None) -> Record:
    layers = layers or layers_for(rows)
    backend = get_backend(name, threads=threads)
    X, y = dataset(rows, layers, dtype)
    weights = init_weights(layers, np.dtype(dtype), 0, "glorot")
    config = TrainConfig(learning_rate=1.0, reduction="mean")
    sync = backend.synchronize

    t0 = time.perf_counter()
    trainer = backend.trainer(weights, None, X, y, config)
    trainer.run(0, 2)
    sync()
    compile_s = time.perf_counter() - t0

    floor = GemmFloor(backend.xp, weights, X, dtype)
    n, sec, gemm = _side_by_side(lambda k: trainer.run(0, k), sync, floor, sync, min_seconds)
    del floor

    peak, per_it = _memory(backend, trainer, n)
    flops = iteration_flops(rows, layers)
    return Record(backend=name, rows=rows, layers=list(layers), dtype=dtype,
                  iterations_per_second=1 / sec, samples_per_second=rows / sec, gflops=flops / sec / 1e9,
                  gemm_ratio=sec / gemm, device=backend.device(), compile_seconds=compile_s,
                  seconds_per_iteration=sec, peak_bytes=peak, alloc_per_iteration=per_it,
                  strategy=type(trainer).__name__)


def _memory(backend, trainer, n):
    """(peak bytes allocated by an interval, bytes allocated per extra iteration)."""
    n = max(2, min(n, 50))
    if backend.name == "cupy":
        return backend.pool_peak(lambda: trainer.run(0, n)), (
            backend.pool_peak(lambda: trainer.run(0, 2 * n)) - backend.pool_peak(lambda: trainer.run(0, n))) / n
    small = _host_alloc(lambda: trainer.run(0, n))
    large = _host_alloc(lambda: trainer.run(0, 2 * n))
    return large, max(0.0, (large - small) / n)


# -- peers: the same network and data through other libraries --


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

    return run, lambda: None, "numpy (seed loop)"


def _peer_torch(weights, X, y, dtype):
    import torch

    dev = "cuda" if torch.cuda.is_available() else "cpu"
    tdt = torch.float32 if dtype == np.float32 else torch.float64
    W = [torch.tensor(w, dtype=tdt, device=dev) for w in weights]
    Xt = torch.tensor(X, dtype=tdt, device=dev)
    yt = torch.tensor(y, dtype=tdt, device=dev)
    scale = 1.0 / len(X)

    def run(n):
        with torch.no_grad():
            for _ in range(n):
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
    return run, sync, f"torch {torch.__version__} eager ({name})"


def _peer_jax(weights, X, y, dtype):
    import jax
    import jax.numpy as jnp

    if dtype == np.float64:
        jax.config.update("jax_enable_x64", True)
    Xj, yj = jnp.asarray(X, dtype), jnp.asarray(y, dtype)
    scale = 1.0 / len(X)

    def step(_, W):
        a = [Xj]
        for w in W:
            a.append(jax.nn.sigmoid(a[-1] @ w))
        delta = (yj - a[-1]) * (a[-1] * (1 - a[-1]))
        deltas = [delta]
        for k in range(len(W) - 1, 0, -1):
            delta = (delta @ W[k].T) * (a[k] * (1 - a[k]))
            deltas.insert(0, delta)
        return tuple(w + scale * (a[k].T @ deltas[k]) for k, w in enumerate(W))

    @jax.jit
    def interval(W, n):
        return jax.lax.fori_loop(0, n, step, W)

    state = {"W": tuple(jnp.asarray(w, dtype) for w in weights)}

    def run(n):
        state["W"] = interval(state["W"], n)
        jax.block_until_ready(state["W"])

    return run, lambda: None, f"jax {jax.__version__} jit+fori_loop ({jax.devices()[0].platform})"


_PEER_FACTORIES = {"seed-loop": _peer_seed_loop, "torch": _peer_torch, "jax": _peer_jax}


def bench_peer(peer, rows, dtype="float32", layers=None, min_seconds=0.5, gemm_backend="numpy") -> Record | None:
    """Time a peer on the same data; None where its library is not importable."""
    layers = layers or layers_for(rows)
    dt = np.dtype(dtype)
    X, y = dataset(rows, layers, dtype)
    weights = init_weights(layers, dt, 0, "glorot")
    try:
        run, sync, device = _PEER_FACTORIES[peer](weights, X, y, dt)
    except ImportError:
        return None
    t0 = time.perf_counter()
    run(2)
    sync()
    compile_s = time.perf_counter() - t0
    be = get_backend(gemm_backend)
    _, sec, gemm = _side_by_side(run, sync, GemmFloor(be.xp, weights, X, dt), be.synchronize, min_seconds)
    return Record(backend=peer, rows=rows, layers=list(layers), dtype=dtype, iterations_per_second=1 / sec,
                  samples_per_second=rows / sec, gflops=iteration_flops(rows, layers) / sec / 1e9,
                  gemm_ratio=sec / gemm, device=device, kind="peer",
                  compile_seconds=compile_s, seconds_per_iteration=sec)


def seed_fit_speedup(backend: str, baseline="numpy", repeats=3) -> dict:
    """The seed run (60000 iterations, report every 10000) through Network.fit, compile excluded."""
    from .network import Network

    X, y = seed_table()
    out = {}
    for name in (baseline, backend):
        Network(SEED_LAYERS, backend=name, seed=1, init="legacy").fit(X, y, iterations=4, report_every=2)
    times = {baseline: [], backend: []}
    for _ in range(repeats):  # alternate, so both see the same machine
        for name in (baseline, backend):
            net = Network(SEED_LAYERS, backend=name, seed=1, init="legacy")
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
    head = f"{'backend':12s} {'kind':7s} {'rows':>8s} {'layers':14s} {'dtype':7s} {'it/s':>10s} " \
           f"{'samples/s':>10s} {'GFLOP/s':>8s} {'gemm_ratio':>10s} {'compile s':>9s} {'alloc/it':>9s}"
    lines = [head, "-" * len(head)]
    for r in records:
        ratio = "" if r.gemm_ratio is None else f"{r.gemm_ratio:.2f}"
        alloc = "" if r.alloc_per_iteration is None else f"{r.alloc_per_iteration:.0f}"
        lines.append(f"{r.backend:12s} {r.kind:7s} {r.rows:8d} {'-'.join(map(str, r.layers)):14s} {r.dtype:7s} "
                     f"{r.iterations_per_second:10.4g} {r.samples_per_second:10.4g} {r.gflops:8.2f} {ratio:>10s} "
                     f"{r.compile_seconds:9.2f} {alloc:>9s}")
    return "\n".join(lines)


def write_results(records, out_dir) -> list[Path]:
    """results.json always; throughput.png where matplotlib is installed. Returns the paths written."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps([asdict(r) for r in records], indent=2))
    written = [out / "results.json"]
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return written
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for (name, kind, dtype), group in _groups(records).items():
        group.sort(key=lambda r: r.rows)
        ax.plot([r.rows for r in group], [r.samples_per_second for r in group],
                marker="o", linestyle="--" if kind == "peer" else "-",
                label=f"{name} ({dtype})" + (" [peer]" if kind == "peer" else ""))
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("rows in the table")
    ax.set_ylabel("samples / second (training)")
    ax.set_title("sigmanet training throughput")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "throughput.png", dpi=120)
    plt.close(fig)
    written.append(out / "throughput.png")
    return written


def _groups(records):
    groups: dict = {}
    for r in records:
        groups.setdefault((r.backend, r.kind, r.dtype), []).append(r)
    return groups


def run(backends, sizes, dtypes, peers=PEERS, min_seconds=0.5, progress=print):
    """Every backend at every size first, then the peers: a peer's thread pools
    (PyTorch's, XLA's) spin after its last op and would slow whatever is timed
    next (measured: numba at 65536 rows read 1.25x its GEMMs right after the
    peers, 1.02x without)."""
    records = []
    for dtype in dtypes:
        for rows in sizes:
            for name in backends:
                records.append(bench_backend(name, rows, dtype, min_seconds=min_seconds))
                progress(format_table(records[-1:]).splitlines()[-1])
        for rows in sizes:
            for peer in peers:
                rec = bench_peer(peer, rows, dtype, min_seconds=min_seconds)
                if rec is not None:
                    records.append(rec)
                    progress(format_table([rec]).splitlines()[-1])
    return records
