"""scikit-learn: a Pipeline, a grid search and the loss curve, on the handwritten digits.

    pip install 'sigmanet[examples]'
    python examples/sklearn_pipeline.py [--backend numba] [--plot loss.png]

MinMaxScaler feeds [0, 1] inputs to SigmaNetClassifier (logistic hidden units,
a softmax over the ten digits, Adam: MLPClassifier's defaults); GridSearchCV
tries hidden_layer_sizes and learning_rate_init with 3-fold cross-validation
on two processes; the best pipeline is scored on held-out digits, and its
training loss curve (from the training pass itself) is drawn.
"""

import argparse
import warnings

from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MinMaxScaler

from sigmanet.sklearn import SigmaNetClassifier


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backend", default="auto")
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--plot", help="write the best model's loss curve here (needs matplotlib)")
    args = p.parse_args(argv)

    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=0, stratify=y)
    pipe = make_pipeline(MinMaxScaler(), SigmaNetClassifier(backend=args.backend, max_iter=args.epochs, random_state=0))
    grid = GridSearchCV(
        pipe,
        {
            "sigmanetclassifier__hidden_layer_sizes": [(16,), (64,)],
            "sigmanetclassifier__learning_rate_init": [0.003, 0.01],
        },
        cv=3,
        n_jobs=2,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # a fixed, short budget of epochs
        grid.fit(X_train, y_train)
    best = grid.best_estimator_
    accuracy = best.score(X_test, y_test)
    print(f"best parameters: {grid.best_params_}")
    print(f"cross-validated accuracy {grid.best_score_:.4f}; held-out accuracy {accuracy:.4f}")
    clf = best.named_steps["sigmanetclassifier"]
    print(f"loss after {clf.n_iter_} epochs: {clf.loss_:.4f} (first epoch {clf.loss_curve_[0]:.4f})")
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.plot(range(1, len(clf.loss_curve_) + 1), clf.loss_curve_)
        ax.set_xlabel("epoch")
        ax.set_ylabel("training log-loss")
        ax.set_title(f"SigmaNetClassifier on digits, {grid.best_params_}", fontsize=8)
        ax.grid(True, alpha=0.3)
        fig.tight_layout()
        fig.savefig(args.plot, dpi=110)
        plt.close(fig)
        print(f"wrote {args.plot}")
    return accuracy


if __name__ == "__main__":
    main()
