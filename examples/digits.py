"""Handwritten digits (scikit-learn's 8x8 images): ten outputs, one per digit.

    pip install 'sigmanet[examples]'
    python examples/digits.py [--backend numba]

Each label becomes a one-hot row of ten 0/1 targets; the predicted digit is
the output with the largest activation.
"""

import argparse

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import sigmanet as sn


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backend", default="auto")
    p.add_argument("--iterations", type=int, default=3000)
    args = p.parse_args(argv)

    X, labels = load_digits(return_X_y=True)
    Y = np.eye(10)[labels]  # one-hot: row i has a 1 in column labels[i]
    X_train, X_test, Y_train, Y_test = train_test_split(X, Y, test_size=0.25, random_state=0, stratify=labels)
    net = sn.Network([64, 32, 10], backend=args.backend, seed=0)
    net.set_input_range(np.zeros(64), np.full(64, 16.0))  # pixel intensities are 0..16
    hist = net.fit(
        X_train,
        Y_train,
        iterations=args.iterations,
        learning_rate=2.0,
        loss="bce",
        reduction="mean",
        report_every=args.iterations // 5,
    )
    for it, err in zip(hist.iterations, hist.errors):
        print(f"iteration {it:5d}  training error {err:.4f}")
    test_acc = np.mean(net.predict(X_test).argmax(axis=1) == Y_test.argmax(axis=1))
    print(f"backend {net.backend}: held-out accuracy {test_acc:.3f} on {len(Y_test)} digits")
    return test_acc


if __name__ == "__main__":
    main()
