"""One call of the compiled predict inside a compiled loop, against ``net.predict`` per row.

    python benchmarks/embedding_predict.py [--calls 2000000] [--rows 20000] [--repeats 7] [--json out.json]

The seed's 3->4->1 network (float64, no bias; ``--bias`` and ``--layers``
change it). Three ways to evaluate one row, each timed ``--repeats`` times,
the fastest kept:

* ``compiled loop``: ``net.compiled_predict()`` called from an ``@njit``
  loop, one row per call, the row changing every call (so nothing can be
  hoisted out of the loop) and every output summed (so nothing is dead);
  the same loop without the call is timed too and reported beside it.
  Target: at most 0.2 us per call.
* ``compiled from Python``: the same function called from a Python loop
  (numba's dispatch from Python, per row).
* ``net.predict per row``: ``net.predict(X[i:i+1])`` in a Python loop, with
  its validation, as a caller without compiled code pays it. Expected:
  about 10 us or more per row.

First-call compile times are measured apart and reported, never mixed in.
The CPU's name, the core count and the library versions head the output.
Run it on a quiet machine: nothing else should be running.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numba
import numpy as np

import sigmanet as sn
from sigmanet._arrays import cpu_name


@numba.njit
def call_loop(f, x, out, calls):
    """``calls`` calls of f, each on a slightly different row; returns the sum of the outputs."""
    total = 0.0
    base = x[0]
    for i in range(calls):
        x[0] = base + i * 1e-9
        f(x, out)
        total += out[0]
    x[0] = base
    return total


@numba.njit
def empty_loop(x, out, calls):
    """The same loop without the call: what the loop itself costs."""
    total = 0.0
    base = x[0]
    for i in range(calls):
        x[0] = base + i * 1e-9
        out[0] = x[0] * 0.5
        total += out[0]
    x[0] = base
    return total


def best_of(repeats: int, run) -> float:
    """The fastest of ``repeats`` timed runs, in seconds."""
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - t)
    return best


def measure(layers: list[int], bias: bool, calls: int, rows: int, repeats: int) -> dict:
    net = sn.Network(layers, backend="numpy", seed=1, init="legacy", bias=bias)
    rng = np.random.default_rng(0)
    X = rng.random((rows, layers[0]))
    x, out = X[0].copy(), np.empty(layers[-1])

    t = time.perf_counter()
    f = net.compiled_predict()
    call_loop(f, x, out, 1)
    empty_loop(x, out, 1)
    compile_s = time.perf_counter() - t

    loop_s = best_of(repeats, lambda: call_loop(f, x, out, calls))
    empty_s = best_of(repeats, lambda: empty_loop(x, out, calls))

    def from_python():
        for i in range(rows):
            f(X[i], out)

    def predict_rows():
        for i in range(rows):
            net.predict(X[i : i + 1])

    python_s = best_of(repeats, from_python)
    predict_s = best_of(repeats, predict_rows)
    check = np.empty((rows, layers[-1]))
    f(X, check)
    return {
        "cpu": cpu_name(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "numba": numba.__version__,
        "sigmanet": sn.__version__,
        "layers": layers,
        "bias": bias,
        "calls": calls,
        "rows": rows,
        "repeats": repeats,
        "compile_s": compile_s,
        "compiled_loop_us_per_call": loop_s / calls * 1e6,
        "empty_loop_us_per_iteration": empty_s / calls * 1e6,
        "compiled_from_python_us_per_row": python_s / rows * 1e6,
        "predict_us_per_row": predict_s / rows * 1e6,
        "max_abs_difference_from_predict": float(np.abs(check - net.predict(X)).max()),
    }


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--calls", type=int, default=2_000_000, help="calls of the compiled predict per timed loop")
    p.add_argument("--rows", type=int, default=20_000, help="rows per timed Python loop")
    p.add_argument("--repeats", type=int, default=7, help="timed runs of each; the fastest is kept")
    p.add_argument("--layers", default="3,4,1", help="layer sizes, comma-separated")
    p.add_argument("--bias", action="store_true", help="a network with bias units")
    p.add_argument("--json", help="also write the figures to this file")
    args = p.parse_args(argv)
    layers = [int(n) for n in args.layers.split(",")]
    r = measure(layers, args.bias, args.calls, args.rows, args.repeats)
    print(f"CPU: {r['cpu']}; Python {r['python']}, NumPy {r['numpy']}, numba {r['numba']}, sigmanet {r['sigmanet']}")
    print(f"network {layers}{' with bias' if args.bias else ''}, float64; compile {r['compile_s']:.2f} s (apart)")
    print(
        f"compiled loop:          {r['compiled_loop_us_per_call']:.4f} us per call "
        f"(the loop alone {r['empty_loop_us_per_iteration']:.4f} us; target <= 0.2 us)"
    )
    print(f"compiled from Python:   {r['compiled_from_python_us_per_row']:.3f} us per row")
    print(f"net.predict per row:    {r['predict_us_per_row']:.2f} us per row (expected ~10 us or more)")
    print(f"largest difference from net.predict: {r['max_abs_difference_from_predict']:.2e}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(r, fh, indent=2)
    return r


if __name__ == "__main__":
    main()
