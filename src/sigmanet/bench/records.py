"""What a benchmark cell measures and how: the record, the data, the bare-GEMM floor, the timers.

Every backend and peer cell is timed the same way: whole report intervals (a
median of repeats lasting at least a budget), interleaved with the iteration's
bare GEMMs in the same library, so ``gemm_ratio`` is a ratio of two things
measured side by side.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import numpy as np

from ..datasets import make_table, tutorial_table

TUTORIAL_LAYERS = [3, 4, 1]
WIDE_LAYERS = [64, 256, 16]
DEFAULT_SIZES = [4, 1024, 16384, 65536, 262144, 1048576]
QUICK_SIZES = [4, 1024, 16384]


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
    optimizer: str = "sgd"
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


# OpenBLAS's worker threads spin for about 0.1 s after their last GEMM before they sleep (its
# THREAD_TIMEOUT); a numba cell timed right after a multithreaded GEMM shared its second core with
# them (measured: 1,024 x 64-256-16 at 977 us per iteration against 465 alone, ranking numba below
# NumPy in `sigmanet bench --quick`). Every timed block waits that long first (no longer than the
# cell's own budget: the tests' tiny cells measure nothing and need not wait).
BLAS_SPIN_SECONDS = 0.2


def _side_by_side(run_n, sync, floor, floor_sync, min_seconds):
    """Time ``run_n(n)`` (an interval of n iterations) and ``floor()`` (its bare GEMMs) in alternating
    blocks, each after BLAS_SPIN_SECONDS of quiet (at most ``min_seconds``), so both see the same
    machine and neither shares it with the other's spinning threads.

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
    quiet = min(BLAS_SPIN_SECONDS, min_seconds)
    for _ in range(3):
        time.sleep(quiet)
        t_iter.append(_median_time(lambda: run_n(n), min_seconds / 3, sync) / n)
        time.sleep(quiet)
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
