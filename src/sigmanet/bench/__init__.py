"""Benchmarks: ``sigmanet bench`` and ``benchmarks/`` time backends and peers side by side.

A small package, one job per module: :mod:`.records` (what a cell measures,
the data, the bare-GEMM floor, the timers), :mod:`.peers` (the same network
through the seed's NumPy loop, PyTorch and JAX), :mod:`.harness` (the runs),
:mod:`.report` (the table, results.json, throughput.png).
"""

from ..network import init_weights
from .harness import bench_backend, bench_dask, run, tutorial_fit_speedup
from .peers import _PEER_FACTORIES, PEERS, Peer, PeerUnavailable, _peer_seed_loop, bench_peer, usable_peers
from .records import (
    DEFAULT_SIZES,
    QUICK_SIZES,
    TUTORIAL_LAYERS,
    WIDE_LAYERS,
    GemmFloor,
    Record,
    dataset,
    iteration_flops,
    layers_for,
    reset_resident_peak,
    resident_bytes,
)
from .report import chart_unavailable, format_table, machine_info, write_results

__all__ = [
    "DEFAULT_SIZES",
    "PEERS",
    "QUICK_SIZES",
    "TUTORIAL_LAYERS",
    "WIDE_LAYERS",
    "GemmFloor",
    "Peer",
    "PeerUnavailable",
    "Record",
    "_PEER_FACTORIES",
    "_peer_seed_loop",
    "bench_backend",
    "bench_dask",
    "bench_peer",
    "chart_unavailable",
    "dataset",
    "format_table",
    "init_weights",
    "iteration_flops",
    "layers_for",
    "machine_info",
    "reset_resident_peak",
    "resident_bytes",
    "run",
    "tutorial_fit_speedup",
    "usable_peers",
    "write_results",
]
