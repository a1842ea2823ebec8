"""A drop-in: the same Pipeline with MLPClassifier(activation="logistic"), then with SigmaNetClassifier.

    pip install 'sigmanet[examples]'
    python examples/sklearn_drop_in.py [--backend numba] [--epochs 100]

An existing scikit-learn pipeline on the handwritten digits (a StandardScaler,
then an MLP with logistic hidden units and Adam) is fitted as it is, then with
one change: the MLPClassifier swapped for SigmaNetClassifier with the same
parameters. Both draw the same starting weights from random_state and, with
shuffle=False, take the same steps, so they print the same held-out accuracy
and loss curve; what differs is the time the fit took.
"""

import argparse
import time
import warnings

import numpy as np
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sigmanet.sklearn import SigmaNetClassifier


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backend", default="auto")
    p.add_argument("--epochs", type=int, default=100)
    args = p.parse_args(argv)

    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=0, stratify=y)
    params = dict(hidden_layer_sizes=(32,), activation="logistic", max_iter=args.epochs, shuffle=False, random_state=0)
    results = {}
    for name, mlp in [
        ("MLPClassifier", MLPClassifier(**params)),
        ("SigmaNetClassifier", SigmaNetClassifier(backend=args.backend, **params)),  # the one line that changed
    ]:
        pipe = make_pipeline(StandardScaler(), mlp)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)  # a fixed budget of epochs, for the comparison
            pipe.fit(X_train[:50], y_train[:50])  # a first fit: numba compiles, caches load (not timed)
            start = time.perf_counter()
            pipe.fit(X_train, y_train)
            seconds = time.perf_counter() - start
        est = pipe[-1]
        results[name] = (pipe.score(X_test, y_test), est.loss_curve_, seconds)
        print(f"{name:19s} held-out accuracy {results[name][0]:.4f}, final loss {est.loss_:.6f}, fit {seconds:.3f} s")
    (a, curve_a, t_a), (b, curve_b, t_b) = results.values()
    gap = float(np.max(np.abs(np.array(curve_a) - curve_b)))
    print(f"same accuracy: {a == b}; largest loss-curve difference {gap:.1e}; time ratio {t_a / t_b:.1f}x")
    return a, b, gap


if __name__ == "__main__":
    main()
