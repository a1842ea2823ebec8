"""Seconds per iteration through Network.fit on a few shapes, for whichever sigmanet is importable.

    PYTHONPATH=src python benchmarks/fit_cases.py numba            # this checkout
    git worktree add /tmp/r2 a4b495b                               # round 2's code, beside it
    for i in 1 2; do PYTHONPATH=/tmp/r2/src python benchmarks/fit_cases.py numba; \\
                     PYTHONPATH=src python benchmarks/fit_cases.py numba; done

Alternate the two builds in separate processes and compare case by case: one
JSON line per run, {case: seconds per iteration}. Each figure is the best of
three fits of about 0.3 s from the same starting weights (the seed: 60,000
iterations reported every 10,000, as the tutorial runs it). Only the public
API is used, so older versions run it too.
"""

import json
import sys
import time

import sigmanet as sn
from sigmanet.datasets import make_table, tutorial_table

CASES = {  # name: (layers, rows, batch, dtype)
    "seed 4 x 3-4-1 f64": ([3, 4, 1], 4, None, "float64"),
    "1024 x 64-256-16 f32": ([64, 256, 16], 1024, None, "float32"),
    "16384 x 64-256-16 f32": ([64, 256, 16], 16384, None, "float32"),
    "65536 x 64-256-16 f32": ([64, 256, 16], 65536, None, "float32"),
    "1797 x 64-32-10 f64": ([64, 32, 10], 1797, None, "float64"),
    "128-row batches 784-128-10 f32": ([784, 128, 10], 12800, 128, "float32"),
    "256 x 8-16-2 f64": ([8, 16, 2], 256, None, "float64"),
}


def seed_case(backend):
    X, y = tutorial_table("float64")
    sn.Network([3, 4, 1], backend=backend, seed=1, init="legacy").fit(X, y, iterations=100, report_every=100)
    best = float("inf")
    for _ in range(7):
        net = sn.Network([3, 4, 1], backend=backend, seed=1, init="legacy")
        t = time.perf_counter()
        net.fit(X, y, iterations=60000, report_every=10000)
        best = min(best, (time.perf_counter() - t) / 60000)
    return best


def case(backend, layers, rows, batch, dtype):
    X, y = make_table(rows, layers[0], layers[-1], seed=0, dtype=dtype)
    kw = dict(reduction="mean", learning_rate=0.5, batch_size=batch, warn_stuck=False)
    net = sn.Network(layers, backend=backend, dtype=dtype, seed=0)
    net.fit(X, y, iterations=3, report_every=3, **kw)  # compile
    t = time.perf_counter()
    net.fit(X, y, iterations=3, report_every=3, **kw)
    n = max(3, int(0.3 / ((time.perf_counter() - t) / 3)))
    best = float("inf")
    for _ in range(3):
        net = sn.Network(layers, backend=backend, dtype=dtype, seed=0)
        t = time.perf_counter()
        net.fit(X, y, iterations=n, report_every=n, **kw)
        best = min(best, (time.perf_counter() - t) / n)
    return best


def main(argv=None):
    args = sys.argv[1:] if argv is None else argv
    backend = args[0] if args else "numba"
    out = {"sigmanet": sn.__version__, "backend": backend}
    for name, (layers, rows, batch, dtype) in CASES.items():
        out[name] = seed_case(backend) if name.startswith("seed") else case(backend, layers, rows, batch, dtype)
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
