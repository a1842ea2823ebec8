"""The benchmark harness shared by ``sigmanet bench`` and ``benchmarks/``: backends, peers, Dask.

For each backend x size x dtype: warm up (compile time reported apart), time
whole report intervals through the backend's trainer (what ``Network.fit``
calls), and time the iteration's bare GEMMs with the same array library in
the same run, interleaved (:mod:`.records`). Peers run the same network on
the same data (:mod:`.peers`). Memory: ``peak_bytes`` is the most memory a
timed interval allocated on top of what the trainer holds (tracemalloc on the
host, the memory pool on a GPU); ``alloc_per_iteration`` compares two
interval lengths, so a loop that allocates per iteration shows a positive
figure and a fused one shows 0. ``peak_rss_bytes`` is the process's resident
peak over the whole cell and ``rss_growth_bytes`` that peak above the
resident size before the cell.
"""

from __future__ import annotations

import gc
import statistics
import time

import numpy as np

from .._plan import TrainConfig
from ..backends import get_backend
from ..datasets import tutorial_table
from ..network import init_weights
from .peers import PEERS, PeerUnavailable, bench_peer
from .records import (
    TUTORIAL_LAYERS,
    GemmFloor,
    Record,
    _side_by_side,
    _timed_record,
    dataset,
    layers_for,
    reset_resident_peak,
    resident_bytes,
)
from .report import format_table


def bench_backend(
    name,
    rows,
    dtype="float32",
    layers=None,
    min_seconds=0.5,
    threads=None,
    batch_size=None,
    loss="mse",
    optimizer="sgd",
) -> Record:
    """One backend on one table: an iteration (a mini-batch's step with ``batch_size``) beside its GEMMs."""
    reset = reset_resident_peak()
    before = resident_bytes()
    rec = _bench_backend(name, rows, dtype, layers, min_seconds, threads, batch_size, loss, optimizer)
    after = resident_bytes()
    if reset and before and after:
        rec.peak_rss_bytes, rec.rss_growth_bytes = after[1], max(0, after[1] - before[0])
    gc.collect()
    get_backend(name, threads=threads).release_memory()  # a GPU pool's cached blocks, for the next record
    return rec


def _bench_backend(name, rows, dtype, layers, min_seconds, threads, batch_size=None, loss="mse", optimizer="sgd"):
    layers = layers or layers_for(rows)
    backend = get_backend(name, threads=threads)
    X, y = dataset(rows, layers, dtype)
    weights = init_weights(layers, np.dtype(dtype), 0, "glorot")
    batch = rows if batch_size is None else min(batch_size, rows)
    config = TrainConfig(
        learning_rate=1.0, reduction="mean", loss=loss, batch_size=None if batch == rows else batch, optimizer=optimizer
    )
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
        optimizer=optimizer,
        compile_seconds=compile_s,
        peak_bytes=peak,
        alloc_per_iteration=per_it,
        strategy=getattr(trainer, "engine", type(trainer).__name__),
    )


def _memory(backend, trainer, n):
    """(peak bytes allocated by an interval, bytes allocated per extra iteration), on the backend's device."""
    n = max(2, min(n, 50))
    small = backend.memory_peak(lambda: trainer.run(0, n))
    large = backend.memory_peak(lambda: trainer.run(0, 2 * n))
    return large, max(0.0, (large - small) / n)


def bench_dask(rows, dtype="float32", layers=None, n_workers=2, min_seconds=0.5, backend="numba") -> Record:
    """An iteration on a local Dask cluster (``n_workers`` processes, one thread each) over a table built
    on the workers, beside the in-memory iteration on the same rows (run first, in this process).

    ``dask_overhead_seconds`` is the iteration's wall time minus the slowest worker's compute: the
    scheduling, the weights sent out and the gradients gathered.
    """
    from distributed import Client, LocalCluster

    from ..backends.dask import DaskTrainer
    from ..datasets import make_dask_table

    layers = layers or layers_for(rows)
    weights = init_weights(layers, np.dtype(dtype), 0, "glorot")
    config = TrainConfig(learning_rate=1.0, reduction="mean")
    with (
        LocalCluster(n_workers=n_workers, threads_per_worker=1, dashboard_address=":0") as cluster,
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
    from ..network import Network

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


def run(
    backends,
    sizes,
    dtypes,
    peers=PEERS,
    min_seconds=0.5,
    progress=print,
    layers=None,
    batch_size=None,
    loss="mse",
    optimizer="sgd",
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
                        name,
                        rows,
                        dtype,
                        layers=layers,
                        min_seconds=min_seconds,
                        batch_size=batch_size,
                        loss=loss,
                        optimizer=optimizer,
                    )
                )
                progress(format_table(records[-1:]).splitlines()[-1])
        if peers and (loss != "mse" or optimizer != "sgd"):
            progress("skipping the peers: they run the seed's loss and plain gradient descent only")
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
