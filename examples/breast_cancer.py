"""Breast cancer (scikit-learn's copy of the Wisconsin data): one 0/1 output.

    pip install 'sigmanet[examples]'
    python examples/breast_cancer.py [--backend numba]

Inputs are scaled to [0, 1] with the training split's min and max (the same
scaling `sigmanet train` stores in the model); the held-out accuracy is
printed at the end.
"""

import argparse

import numpy as np
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split

import sigmanet as sn


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backend", default="auto")
    p.add_argument("--iterations", type=int, default=2000)
    args = p.parse_args(argv)

    X, y = load_breast_cancer(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=0, stratify=y)
    net = sn.Network([X.shape[1], 16, 1], backend=args.backend, seed=0)
    net.set_input_range(X_train.min(axis=0), X_train.max(axis=0))
    hist = net.fit(
        X_train,
        y_train,
        iterations=args.iterations,
        learning_rate=2.0,
        loss="bce",
        reduction="mean",
        report_every=args.iterations // 5,
    )
    for it, err in zip(hist.iterations, hist.errors):
        print(f"iteration {it:5d}  training error {err:.4f}")
    test_acc = np.mean((net.predict(X_test).ravel() > 0.5) == y_test)
    train_acc = np.mean((net.predict(X_train).ravel() > 0.5) == y_train)
    print(
        f"backend {net.backend}: training accuracy {train_acc:.3f}, held-out accuracy {test_acc:.3f} "
        f"on {len(y_test)} tumours"
    )
    return test_acc


if __name__ == "__main__":
    main()
