"""scikit-learn estimators on the Network and its backends: SigmaNetClassifier, SigmaNetRegressor.

Importing this module imports scikit-learn (extra ``sklearn``); ``import
sigmanet`` does not. The estimators take MLPClassifier's parameter and
attribute names where the meaning is the same, and train through
:meth:`sigmanet.Network.fit` on any backend: there is no second training loop.

What they are, in MLPClassifier's terms: logistic units everywhere, solver
"sgd" with a constant learning rate, momentum 0 and alpha 0, a bias unit per
layer, and steps averaged over each batch. For a binary target with
cross-entropy, ``batch_size`` equal to the number of rows, ``shuffle=False``
and the same starting weights, SigmaNetClassifier takes exactly
MLPClassifier's path (the tests show it to 1e-10 in float64).

Targets: a binary target gets one sigmoid output; a multiclass target one
sigmoid per class, trained on one-hot rows (``predict`` is the argmax and
``predict_proba`` normalises the rows); a multilabel indicator matrix one
independent sigmoid per label. The regressor scales each target to [0, 1] by
its training range, which is stored (``y_min_``, ``y_max_``): its predictions
stay inside that range.
"""

from __future__ import annotations

import numbers
import warnings

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import accuracy_score, r2_score
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets, unique_labels
from sklearn.utils.validation import check_is_fitted, column_or_1d, validate_data

from .network import Network

__all__ = ["SigmaNetClassifier", "SigmaNetRegressor"]

_LOSSES = {"log_loss": "bce", "mse": "mse", "squared_error": "mse"}


class _SigmaNetBase(BaseEstimator):
    """What the classifier and the regressor share: parameters, the epoch loop, the fitted layout."""

    _default_loss: str

    def __init__(
        self,
        hidden_layer_sizes=(16,),
        *,
        learning_rate_init=2.0,
        max_iter=200,
        batch_size=32,
        shuffle=True,
        random_state=None,
        tol=1e-4,
        n_iter_no_change=10,
        early_stopping=False,
        validation_fraction=0.1,
        warm_start=False,
        verbose=False,
        backend="auto",
        dtype="float64",
        loss=None,
    ):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.learning_rate_init = learning_rate_init
        self.max_iter = max_iter
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.n_iter_no_change = n_iter_no_change
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.warm_start = warm_start
        self.verbose = verbose
        self.backend = backend
        self.dtype = dtype
        self.loss = loss

    # -- parameters, checked at fit (never in __init__, as scikit-learn asks) --

    def _check_params(self):
        hidden = self.hidden_layer_sizes
        hidden = [hidden] if isinstance(hidden, numbers.Integral) else list(hidden)
        if any(isinstance(h, bool) or not isinstance(h, numbers.Integral) or h < 1 for h in hidden):
            raise ValueError(f"hidden_layer_sizes must hold positive integers, got {self.hidden_layer_sizes!r}")
        for name in ("max_iter", "n_iter_no_change"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or int(value) < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not (isinstance(self.learning_rate_init, numbers.Real) and float(self.learning_rate_init) > 0):
            raise ValueError(f"learning_rate_init must be a number above 0, got {self.learning_rate_init!r}")
        if not (isinstance(self.tol, numbers.Real) and float(self.tol) >= 0):
            raise ValueError(f"tol must be a number of at least 0, got {self.tol!r}")
        if not (isinstance(self.validation_fraction, numbers.Real) and 0 < float(self.validation_fraction) < 1):
            raise ValueError(f"validation_fraction must be in (0, 1), got {self.validation_fraction!r}")
        bs = self.batch_size
        if not (
            bs is None
            or bs == "auto"
            or (isinstance(bs, numbers.Integral) and not isinstance(bs, bool) and int(bs) >= 1)
        ):
            raise ValueError(f"batch_size must be 'auto', a positive integer or None, got {bs!r}")
        loss = self._default_loss if self.loss is None else self.loss
        if loss not in _LOSSES:
            raise ValueError(f"loss must be one of {sorted(_LOSSES)}, got {loss!r}")
        return hidden, _LOSSES[loss]

    # -- the training loop: epochs of Network.fit --

    def _network(self) -> Network:
        """A Network holding coefs_ and intercepts_ (as the user may have assigned them), on ``backend``."""
        layers = [self.coefs_[0].shape[0]] + [c.shape[1] for c in self.coefs_]
        return Network.from_state(
            {
                "layers": layers,
                "dtype": self.dtype,
                "bias": True,
                "iteration": self.t_iter_,
                "weights": self.coefs_,
                "biases": self.intercepts_,
            },
            backend=self.backend,
        )

    def _initialise(self, n_features, n_outputs, hidden, rng):
        layers = [n_features, *hidden, n_outputs]
        net = Network(layers, backend=self.backend, dtype=self.dtype, seed=int(rng.randint(2**31 - 1)), bias=True)
        self.coefs_, self.intercepts_ = net.weights, net.biases
        self.n_layers_ = len(layers)
        self.n_outputs_ = n_outputs
        self.out_activation_ = "logistic"
        self.n_iter_ = 0
        self.t_ = 0
        self.t_iter_ = 0  # gradient steps taken, keying the batch order across calls
        self.loss_curve_ = []
        self.best_loss_ = np.inf
        self._no_improvement_count = 0
        self.validation_scores_: list[float] | None = [] if self.early_stopping else None
        self.best_validation_score_ = -np.inf if self.early_stopping else None

    def _train(self, X, Y, incremental):
        """Epochs of gradient descent on X (n, features) and Y (n, outputs) in [0, 1]."""
        hidden, net_loss = self._check_params()
        rng = check_random_state(self.random_state)
        fresh = not hasattr(self, "coefs_") or (not self.warm_start and not incremental)
        if fresh:
            self._initialise(X.shape[1], Y.shape[1], hidden, rng)
        elif self.coefs_[0].shape[0] != X.shape[1] or self.coefs_[-1].shape[1] != Y.shape[1]:
            raise ValueError(
                f"the fitted network takes {self.coefs_[0].shape[0]} features and gives "
                f"{self.coefs_[-1].shape[1]} outputs; X has {X.shape[1]}, y {Y.shape[1]}"
            )
        X_val = Y_val = None
        if self.early_stopping and not incremental:
            X, X_val, Y, Y_val = train_test_split(
                X,
                Y,
                test_size=self.validation_fraction,
                random_state=rng.randint(2**31 - 1),
                stratify=self._stratify(Y),
            )
        n = X.shape[0]
        batch = n if self.batch_size is None else min(200, n) if self.batch_size == "auto" else min(self.batch_size, n)
        n_batches = -(-n // batch)
        epochs = 1 if incremental else self.max_iter
        net = self._network()
        options = dict(
            learning_rate=float(self.learning_rate_init),
            loss=net_loss,
            reduction="mean",
            batch_size=None if batch >= n else batch,
            warn_stuck=False,
        )
        self.n_iter_ = 0  # epochs of this call, as MLPClassifier counts them (t_ keeps counting)
        best, converged = None, False
        # As MLPClassifier's: an epoch's loss is measured before its steps (exactly so for full batches)
        loss_before = [self._loss(net, X, Y, net_loss)]

        def after_epoch():
            nonlocal best, converged
            self.n_iter_ += 1
            self.t_ += n
            self.loss_curve_.append(loss_before[0])
            loss_before[0] = self._loss(net, X, Y, net_loss)
            if self.verbose:
                print(f"Iteration {self.n_iter_}, loss = {self.loss_curve_[-1]:.8f}")
            if incremental:
                return True
            if self.early_stopping:
                score = self._validation_score(net, X_val, Y_val)
                assert self.validation_scores_ is not None  # set with early_stopping
                self.validation_scores_.append(score)
                improved = score > self.best_validation_score_ + self.tol
                if score > self.best_validation_score_:
                    self.best_validation_score_ = score
                    best = (net.weights, net.biases)
            else:
                improved = self.loss_curve_[-1] < self.best_loss_ - self.tol
            self.best_loss_ = min(self.best_loss_, self.loss_curve_[-1])
            self._no_improvement_count = 0 if improved else self._no_improvement_count + 1
            converged = self._no_improvement_count > self.n_iter_no_change
            return not converged

        # One fit for every epoch, one report per epoch; with shuffle, a new order of the rows each
        # epoch, drawn by the Network from a seed taken from random_state.
        shuffle = int(rng.randint(2**31 - 1)) if self.shuffle and batch < n else False
        net.fit(
            X,
            Y,
            iterations=epochs * n_batches,
            report_every=n_batches,
            callback=lambda iteration, error: after_epoch(),
            shuffle=shuffle,
            **options,
        )
        if best is not None:
            net.set_weights(*best)
        self.coefs_, self.intercepts_ = net.weights, net.biases
        self.t_iter_ = net.iteration
        self.loss_ = self.loss_curve_[-1]
        if not incremental and not converged:
            warnings.warn(
                f"{type(self).__name__}: the maximum of {self.max_iter} epochs was reached before the "
                "loss stopped improving; raise max_iter or learning_rate_init.",
                ConvergenceWarning,
                stacklevel=3,
            )
        return self

    def _loss(self, net, X, Y, net_loss):
        """The training loss as MLPClassifier reports it: log-loss (summed over outputs, mean over rows),
        or half the mean squared error (over every element, in the targets' own units)."""
        out = net.predict(X).astype(np.float64)
        if net_loss == "mse":
            return float(0.5 * np.mean(((Y - out) * self._target_span()) ** 2))
        eps = np.finfo(np.float64).eps
        out = np.clip(out, eps, 1 - eps)
        return float(-np.mean(np.sum(Y * np.log(out) + (1 - Y) * np.log1p(-out), axis=1)))

    def _stratify(self, Y):
        return None

    def _target_span(self):
        """Each output's width in the targets' own units (1 for a classifier's 0/1 targets)."""
        return 1.0

    # -- fitted attributes and input checks --

    def _check_X(self, X):
        check_is_fitted(self, "coefs_")
        return validate_data(self, X, dtype=(np.float64, np.float32), reset=False)

    def _outputs(self, X):
        return self._network().predict(np.asarray(X, dtype=self.dtype)).astype(np.float64)

    def partial_fit(self, X, y, **kwargs):
        """One epoch over (X, y), continuing from the current weights (``classes=`` on a classifier's first call)."""
        return self._fit(X, y, incremental=True, **kwargs)

    def fit(self, X, y):
        """Train for up to ``max_iter`` epochs (from the current weights when ``warm_start``). Returns self."""
        return self._fit(X, y, incremental=False)


class SigmaNetClassifier(ClassifierMixin, _SigmaNetBase):
    """A sigmoid network classifier trained by sigmanet's backpropagation, with MLPClassifier's interface.

    Parameters
    ----------
    hidden_layer_sizes : int or tuple of int, default (16,)
    learning_rate_init : float, default 2.0
        The constant step size (steps are averaged over each batch). Plain
        gradient descent on sigmoid units takes larger steps than Adam's
        0.001.
    max_iter : int, default 200
        Epochs: passes over the training rows.
    batch_size : int, "auto" or None, default 32
        Rows per gradient step: "auto" is MLPClassifier's min(200, n_samples);
        None the whole table. Small batches suit plain gradient descent.
    shuffle : bool, default True
        Shuffle the rows each epoch (with mini-batches).
    random_state : int, RandomState or None
        Seeds the initial weights, the shuffles and the validation split.
    tol, n_iter_no_change : float, int
        Stop when the loss (or, with early stopping, the validation score) has
        not improved by ``tol`` for ``n_iter_no_change`` epochs.
    early_stopping : bool, default False
        Hold out ``validation_fraction`` of the rows (stratified), score them
        after each epoch, and keep the best weights.
    validation_fraction : float, default 0.1
    warm_start : bool, default False
        Continue from ``coefs_`` and ``intercepts_``, including arrays you assigned.
    verbose : bool, default False
    backend : str, default "auto"
        Any sigmanet backend: "numpy", "numba", "cupy" or "auto".
    dtype : {"float64", "float32"}, default "float64"
    loss : {"log_loss", "mse"}, default "log_loss"

    Attributes
    ----------
    classes_, n_features_in_, feature_names_in_, coefs_, intercepts_, loss_,
    loss_curve_, best_loss_, validation_scores_, best_validation_score_,
    n_iter_, t_, n_layers_, n_outputs_, out_activation_
        As MLPClassifier's.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from sigmanet.sklearn import SigmaNetClassifier
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = SigmaNetClassifier(backend="numpy", random_state=0, max_iter=300).fit(X / 8, y)
    >>> clf.classes_
    array([0, 1, 2])
    >>> bool(clf.score(X / 8, y) > 0.9)
    True
    """

    _default_loss = "log_loss"

    def _fit(self, X, y, incremental, classes=None):
        first = not hasattr(self, "classes_") or (not self.warm_start and not incremental)
        if incremental and first and classes is None:
            raise ValueError("classes must be passed on the first call to partial_fit")
        X, y = validate_data(self, X, y, multi_output=True, dtype=(np.float64, np.float32), reset=first)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        check_classification_targets(y)
        if first:
            self._label_binarizer = LabelBinarizer().fit(y if classes is None else classes)
            self.classes_ = self._label_binarizer.classes_
            if len(self.classes_) < 2 and self._label_binarizer.y_type_ != "multilabel-indicator":
                raise ValueError(f"the target needs at least 2 classes to learn, got 1 class: {self.classes_}")
        else:
            unseen = np.setdiff1d(unique_labels(y), self.classes_)
            if unseen.size and self._label_binarizer.y_type_ != "multilabel-indicator":
                raise ValueError(f"y has classes {unseen.tolist()} not in classes_ {self.classes_.tolist()}")
        Y = self._label_binarizer.transform(y).astype(self.dtype)
        return self._train(X, Y, incremental)

    def _stratify(self, Y):
        return Y if self._label_binarizer.y_type_ in ("binary", "multiclass") else None

    def _validation_score(self, net, X, Y):
        out = net.predict(X)
        return accuracy_score(self._label_binarizer.inverse_transform(Y), self._label_binarizer.inverse_transform(out))

    def predict(self, X):
        """The predicted class of each row (argmax for multiclass, out > 0.5 for binary and multilabel)."""
        out = self._outputs(self._check_X(X))
        return self._label_binarizer.inverse_transform(out)

    def predict_proba(self, X):
        """Class probabilities: rows sum to 1 (binary, multiclass); independent per label (multilabel)."""
        out = self._outputs(self._check_X(X))
        kind = self._label_binarizer.y_type_
        if kind == "binary":
            return np.hstack([1 - out, out])
        if kind == "multiclass":
            total = out.sum(axis=1, keepdims=True)
            return np.divide(out, total, out=np.full_like(out, 1 / out.shape[1]), where=total > 0)
        return out

    def predict_log_proba(self, X):
        """The log of :meth:`predict_proba`."""
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


class SigmaNetRegressor(RegressorMixin, _SigmaNetBase):
    """A sigmoid network regressor with MLPRegressor's interface.

    Each target column is scaled to [0, 1] by its training range (stored in
    ``y_min_`` and ``y_max_``), learned by sigmoid outputs, and mapped back:
    predictions always lie inside the range seen in training. Parameters are
    :class:`SigmaNetClassifier`'s; ``loss`` is "mse" (the default) or
    "log_loss" (cross-entropy on the scaled targets).

    Examples
    --------
    >>> import numpy as np
    >>> from sigmanet.sklearn import SigmaNetRegressor
    >>> X = np.linspace(0, 1, 200).reshape(-1, 1)
    >>> y = np.sin(3 * X[:, 0])
    >>> reg = SigmaNetRegressor(backend="numpy", random_state=0, max_iter=500, tol=1e-6).fit(X, y)
    >>> bool(reg.score(X, y) > 0.9)
    True
    >>> bool(reg.predict(X).max() <= y.max())  # inside the training range
    True
    """

    _default_loss = "mse"

    def _fit(self, X, y, incremental):
        first = not hasattr(self, "coefs_") or (not self.warm_start and not incremental)
        X, y = validate_data(self, X, y, multi_output=True, y_numeric=True, dtype=(np.float64, np.float32), reset=first)
        Y = y.reshape(-1, 1) if y.ndim == 1 else y
        self._y_1d = y.ndim == 1
        if first:
            self.y_min_, self.y_max_ = Y.min(axis=0).astype(np.float64), Y.max(axis=0).astype(np.float64)
        span = np.where(self.y_max_ > self.y_min_, self.y_max_ - self.y_min_, 1.0)
        Y01 = np.clip((Y - self.y_min_) / span, 0.0, 1.0).astype(self.dtype)
        return self._train(X, Y01, incremental)

    def _validation_score(self, net, X, Y):
        return r2_score(Y, net.predict(X))

    def _target_span(self):
        return np.where(self.y_max_ > self.y_min_, self.y_max_ - self.y_min_, 1.0)

    def predict(self, X):
        """Predictions in the targets' own units, inside the training range."""
        out = self._outputs(self._check_X(X))
        span = np.where(self.y_max_ > self.y_min_, self.y_max_ - self.y_min_, 0.0)
        pred = self.y_min_ + out * span
        return pred[:, 0] if self._y_1d else pred

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.regressor_tags.poor_score = False
        return tags
