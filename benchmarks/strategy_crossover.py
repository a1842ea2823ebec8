"""Time every strategy of one backend across sizes, to set its size limits from measurement.

    PYTHONPATH=src python3 benchmarks/strategy_crossover.py --backend cupy --out limits.json
    PYTHONPATH=src python3 benchmarks/strategy_crossover.py --backend numba --quick   # a dry run on a CPU

Each strategy is pinned by name (``"cupy:fused"``, as a user pins one; the
names come from ``Backend.strategies``), then timed by the benchmark harness
on the same network and data. The report gives, per case, the multiply-adds
per iteration, each strategy's seconds per iteration, the engine that really
ran (a pinned strategy that cannot take a case says so: ``fused`` falls back
to ``eager`` where the state does not fit shared memory), and the fastest, so
SMALL_LIMIT / GRAPH_LIMIT can be placed at the crossovers.
"""

from __future__ import annotations

import argparse
import json
import sys

from sigmanet import bench
from sigmanet.backends import backend_class, get_backend, resolve

# (rows, layers): from the seed's shape up through medium tables, narrow and wide
CASES = [
    (4, [3, 4, 1]),
    (64, [8, 16, 2]),
    (256, [16, 32, 4]),
    (1024, [3, 4, 1]),
    (1024, [16, 32, 4]),
    (4096, [16, 32, 4]),
    (1024, [64, 256, 16]),
    (16384, [16, 32, 4]),
    (8192, [64, 256, 16]),
    (16384, [64, 256, 16]),
    (32768, [64, 256, 16]),
    (65536, [64, 256, 16]),
    (262144, [64, 256, 16]),
    (262144, [3, 4, 1]),
    (1048576, [3, 4, 1]),
]
QUICK = [(4, [3, 4, 1]), (256, [16, 32, 4]), (1024, [64, 256, 16])]


def macs(rows, layers):
    return rows * sum(p * q for p, q in zip(layers, layers[1:]))


def measure(backend, cases, dtype, seconds):
    strategies = backend_class(backend).strategies
    results = []
    for rows, layers in cases:
        row = {"rows": rows, "layers": layers, "macs": macs(rows, layers), "seconds_per_iteration": {}}
        for strategy in strategies:
            try:
                rec = bench.bench_backend(f"{backend}:{strategy}", rows, dtype, layers=layers, min_seconds=seconds)
                row["seconds_per_iteration"][strategy] = rec.seconds_per_iteration
                row.setdefault("engine", {})[strategy] = rec.strategy
            except Exception as e:
                row["seconds_per_iteration"][strategy] = None
                row.setdefault("errors", {})[strategy] = f"{type(e).__name__}: {e}"
        timed = {k: v for k, v in row["seconds_per_iteration"].items() if v is not None}
        row["fastest"] = min(timed, key=timed.get) if timed else None
        results.append(row)
        cells = "  ".join(
            f"{k} {v * 1e6:9.2f} us ({row['engine'][k]})" if v is not None else f"{k} failed"
            for k, v in row["seconds_per_iteration"].items()
        )
        print(
            f"{rows:>8d} x {'-'.join(map(str, layers)):12s} {row['macs']:>12d} MACs  {cells}  -> {row['fastest']}",
            flush=True,
        )
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="cupy")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--seconds", type=float, default=0.2, help="timing budget per cell")
    parser.add_argument("--quick", action="store_true", help="three small cases")
    parser.add_argument("--out", help="write the results here as JSON")
    args = parser.parse_args(argv)
    backend = resolve(args.backend)
    results = measure(backend, QUICK if args.quick else CASES, args.dtype, args.seconds)
    report = {
        "backend": backend,
        "dtype": args.dtype,
        "device": get_backend(backend).device(),
        "machine": bench.machine_info(),
        "cases": results,
    }
    if args.out:
        with open(args.out, "w") as f:
            json.dump(report, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
