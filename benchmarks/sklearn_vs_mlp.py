"""SigmaNetClassifier against MLPClassifier: seconds per epoch, the same parameters, data and starting weights.

    python benchmarks/sklearn_vs_mlp.py                 # the full grid (minutes; run it on a quiet machine)
    python benchmarks/sklearn_vs_mlp.py --quick         # tiny tables: a smoke run, the figures mean nothing
    python benchmarks/sklearn_vs_mlp.py --tables digits --solvers adam --batches 200 --json out.json
    python benchmarks/sklearn_vs_mlp.py --settle 0.25 --early-stopping   # each fit from quiet threads; validation

The grid: three tables (the digits, 1797 x 64; a 50,000 x 64 table; a
60,000 x 784 table of MNIST's size, synthetic, ten classes), one hidden layer
of 32 logistic units, solver "sgd" (momentum 0.9, Nesterov's: scikit-learn's
default) and "adam", full batches and ``batch_size=200``, shuffle off, tol 0
(every epoch runs). MLPClassifier runs with ``activation="logistic"``; each
SigmaNetClassifier backend with exactly the same parameters, so both take the
same path from the same starting weights (a check prints the largest
difference between the loss curves). Each estimator is fitted once to warm
up (numba compiles, caches load), then the estimators alternate, ``--repeats``
times each; the median fit time divided by the epochs is the figure, and the
ratio is MLPClassifier's time over ours (above 1: sigmanet is faster).

``--settle S`` waits S seconds (untimed) before each fit. Back to back (the
default), each fit starts while the previous estimator's OpenBLAS threads still
spin (about 2**28 cycles, 0.1 s, after OpenBLAS's last multi-threaded call), and a
numba fit shares the cores with them; a script that fits once, or fits after
NumPy work of its own, sees either case, so docs/sklearn.md gives both.
``--early-stopping`` holds out 10% and scores it after every epoch (scikit-learn's
``early_stopping=True``; with tol 0 every epoch still runs).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import time
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier

from sigmanet._arrays import cpu_name
from sigmanet.sklearn import SigmaNetClassifier

# name: (rows, features, epochs of a timed fit) for the full run, and the --quick sizes
TABLES = {"digits": (1797, 64, 20), "table50k": (50_000, 64, 5), "mnist": (60_000, 784, 3)}
QUICK = {"digits": (300, 64, 2), "table50k": (400, 64, 2), "mnist": (200, 784, 2)}


def table(name: str, rows: int, features: int) -> tuple[np.ndarray, np.ndarray]:
    """The digits (scaled, cut to ``rows``), or a synthetic table: standard normal inputs, ten classes from a
    random linear map (learnable, balanced enough), the same numbers on every run."""
    if name == "digits":
        from sklearn.datasets import load_digits

        X, y = load_digits(return_X_y=True)
        X = (X / 16.0)[:rows]
        return np.ascontiguousarray(X), y[:rows]
    rng = np.random.default_rng(0)
    X = rng.standard_normal((rows, features))
    y = np.argmax(X @ rng.standard_normal((features, 10)), axis=1)
    return X, y


def timed_fit(est, X, y, settle: float = 0.0) -> float:
    if settle:
        time.sleep(settle)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        start = time.perf_counter()
        est.fit(X, y)
        return time.perf_counter() - start


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny tables and 2 epochs: a smoke run")
    p.add_argument("--tables", default=",".join(TABLES))
    p.add_argument("--solvers", default="sgd,adam")
    p.add_argument("--batches", default="full,200", help="'full' and/or rows per step")
    p.add_argument("--backends", default="numba,numpy")
    p.add_argument("--hidden", type=int, default=32)
    p.add_argument("--epochs", type=int, help="epochs per timed fit (default: per table)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--settle", type=float, default=0.0, help="seconds to wait (untimed) before each fit")
    p.add_argument("--early-stopping", action="store_true", help="early_stopping=True (scored every epoch)")
    p.add_argument("--json", help="also write the rows to this file")
    args = p.parse_args(argv)
    sizes = QUICK if args.quick else TABLES
    repeats = 1 if args.quick else args.repeats
    print(f"{cpu_name()}; {os.cpu_count()} CPUs visible; Python {platform.python_version()}, NumPy {np.__version__}")
    print("seconds per epoch (median of the fits); ratio = MLPClassifier's time / SigmaNetClassifier's")
    rows_out = []
    for name in args.tables.split(","):
        n, d, epochs = sizes[name]
        epochs = args.epochs or epochs
        X, y = table(name, n, d)
        for solver in args.solvers.split(","):
            for batch in args.batches.split(","):
                params = dict(
                    hidden_layer_sizes=(args.hidden,),
                    activation="logistic",
                    solver=solver,
                    batch_size=int(batch) if batch != "full" else n - math.ceil(0.1 * n) if args.early_stopping else n,
                    learning_rate_init=0.1 if solver == "sgd" else 0.001,
                    max_iter=epochs,
                    shuffle=False,
                    tol=0.0,
                    n_iter_no_change=10**9,
                    random_state=0,
                    early_stopping=args.early_stopping,
                )
                makers = {"MLPClassifier": lambda params=params: MLPClassifier(**params)}
                for b in args.backends.split(","):
                    makers[f"sigmanet {b}"] = lambda b=b, params=params: SigmaNetClassifier(backend=b, **params)
                for make in makers.values():  # warm-up
                    timed_fit(make().set_params(max_iter=1), X, y)
                times: dict[str, list[float]] = {k: [] for k in makers}
                curves = {}
                for _ in range(repeats):
                    for key, make in makers.items():
                        est = make()
                        times[key].append(timed_fit(est, X, y, args.settle) / epochs)
                        curves[key] = est.loss_curve_
                base = statistics.median(times["MLPClassifier"])
                label = f"{name} {n}x{d} -> {args.hidden} -> 10, {solver}, batch {batch}, {epochs} epochs"
                label += ", early stopping" if args.early_stopping else ""
                label += f", settle {args.settle} s" if args.settle else ""
                print(f"\n{label}")
                for key, ts in times.items():
                    med = statistics.median(ts)
                    gap = float(np.max(np.abs(np.array(curves[key]) - curves["MLPClassifier"])))
                    print(f"  {key:20s} {med:10.5f} s/epoch  ratio {base / med:6.2f}  loss-curve gap {gap:.1e}")
                    rows_out.append(
                        dict(table=name, rows=n, features=d, solver=solver, batch=batch, epochs=epochs,
                             settle=args.settle, early_stopping=args.early_stopping,
                             estimator=key, seconds_per_epoch=med, ratio=base / med, loss_curve_gap=gap)
                    )  # fmt: skip
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"cpu": cpu_name(), "rows": rows_out}, f, indent=1)
        print(f"\nwrote {args.json}")
    return rows_out


if __name__ == "__main__":
    main()
