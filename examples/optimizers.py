"""Plain gradient descent, momentum, Nesterov and Adam on a real table: the loss per epoch.

    pip install 'sigmanet[examples]'
    python examples/optimizers.py [--backend numba] [--plot docs/optimizers.png]

scikit-learn's handwritten digits (1797 images of 8 x 8 pixels, ten classes),
one hidden layer of 32 sigmoid units, a softmax output with cross-entropy,
mini-batches of 64 rows, shuffled every epoch: the same network and the same
starting weights for every optimizer, each at a learning rate that suits it.
Prints each optimizer's held-out accuracy and, with ``--plot``, draws the
training loss of every epoch (the mean batch loss, as scikit-learn's
``loss_curve_`` counts it, measured by the training pass itself).
"""

import argparse

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import sigmanet as sn

OPTIMIZERS = {  # name: (fit options, label)
    "sgd": (dict(optimizer="sgd", learning_rate=0.05), "gradient descent, rate 0.05"),
    "momentum": (dict(optimizer="momentum", momentum=0.9, learning_rate=0.05), "momentum 0.9, rate 0.05"),
    "nesterov": (dict(optimizer="nesterov", momentum=0.9, learning_rate=0.05), "Nesterov 0.9, rate 0.05"),
    "adam": (dict(optimizer="adam", learning_rate=0.01), "Adam, rate 0.01"),
}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backend", default="auto")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--plot", help="write the loss curves to this PNG (needs matplotlib)")
    args = p.parse_args(argv)

    X, labels = load_digits(return_X_y=True)
    X = X / 16.0  # pixels to [0, 1]
    X_train, X_test, l_train, l_test = train_test_split(X, labels, test_size=0.25, random_state=0, stratify=labels)
    Y_train = np.eye(10)[l_train]
    batch = 64
    n_batches = -(-len(X_train) // batch)
    curves, accuracy = {}, {}
    for name, (options, _) in OPTIMIZERS.items():
        net = sn.Network([64, 32, 10], backend=args.backend, seed=0, bias=True, output="softmax")
        hist = net.fit(
            X_train,
            Y_train,
            iterations=args.epochs * n_batches,
            report_every=n_batches,  # one report per epoch
            batch_size=batch,
            shuffle=True,
            reduction="mean",
            average_loss=True,
            **options,
        )
        curves[name] = hist.losses
        accuracy[name] = float(np.mean(net.predict(X_test).argmax(axis=1) == l_test))
        print(f"{name:9s} final loss {hist.losses[-1]:.4f}  held-out accuracy {accuracy[name]:.3f}")
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6.5, 4))
        for name, losses in curves.items():
            ax.plot(range(1, len(losses) + 1), losses, marker=".", label=OPTIMIZERS[name][1])
        ax.set_xlabel("epoch")
        ax.set_ylabel("training loss (cross-entropy, mean over batches)")
        ax.set_yscale("log")
        ax.set_title("digits, 64-32-10, batches of 64, the same start", fontsize=10)
        ax.grid(True, alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(args.plot, dpi=110)
        plt.close(fig)
    return curves, accuracy


if __name__ == "__main__":
    main()
