"""SigmaNetClassifier against MLPClassifier: the same net, data and number of full-batch epochs, one run.

    python benchmarks/sklearn_vs_mlp.py [--rows 5000] [--features 20] [--hidden 16] [--epochs 200]

MLPClassifier runs as the same math (logistic, sgd, momentum 0, alpha 0,
constant rate, full batches, no shuffle, tol 0); the two alternate, three
times each, and the medians are compared.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier

from sigmanet.backends.base import cpu_name
from sigmanet.datasets import make_table
from sigmanet.sklearn import SigmaNetClassifier


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=5000)
    p.add_argument("--features", type=int, default=20)
    p.add_argument("--hidden", type=int, default=16)
    p.add_argument("--epochs", type=int, default=200)
    p.add_argument("--backends", default="numba,numpy")
    args = p.parse_args(argv)
    X, y = make_table(args.rows, args.features, 1, seed=0)
    y = y[:, 0].astype(int)
    common = dict(
        hidden_layer_sizes=(args.hidden,),
        learning_rate_init=0.5,
        max_iter=args.epochs,
        batch_size=args.rows,
        shuffle=False,
        tol=0.0,
        n_iter_no_change=10**9,
        random_state=0,
    )
    makers = {
        "MLPClassifier": lambda: MLPClassifier(
            activation="logistic", solver="sgd", momentum=0.0, alpha=0.0, learning_rate="constant", **common
        )
    }
    for b in args.backends.split(","):
        makers[f"SigmaNetClassifier({b})"] = lambda b=b: SigmaNetClassifier(backend=b, **common)
    for make in makers.values():  # warm-up: compile, load caches
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            make().set_params(max_iter=2).fit(X, y)
    times = {name: [] for name in makers}
    for _ in range(3):
        for name, make in makers.items():
            est = make()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                t = time.perf_counter()
                est.fit(X, y)
                times[name].append(time.perf_counter() - t)
    base = statistics.median(times["MLPClassifier"])
    print(f"{cpu_name()}; {args.rows} x {args.features} -> {args.hidden} -> 1, {args.epochs} full-batch epochs")
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"{name:28s} {med * 1e3:9.1f} ms  {med / base:5.2f}x MLPClassifier's time")


if __name__ == "__main__":
    main()
