"""scikit-learn estimators on the Network: SigmaNetClassifier and SigmaNetRegressor.

They are drop-ins for scikit-learn's ``MLPClassifier`` and ``MLPRegressor``
with ``activation="logistic"``: every parameter, attribute and method of
theirs, with their meanings and defaults (``activation`` defaults to
"logistic", the only one offered), plus ``backend``, ``dtype`` and, on the
classifier, ``class_weight``. Importing this module imports scikit-learn
(extra ``sklearn``); ``import sigmanet`` does not.

They take scikit-learn's path, not a path like it: the starting weights are
drawn as MLPClassifier draws them from ``random_state``; the validation split
of ``early_stopping`` is scikit-learn's ``train_test_split`` on the same
random state; the targets are treated as scikit-learn treats them (a softmax
output for multiclass targets, sigmoid outputs for binary and multilabel
ones, an identity output with squared error for regression); the optimizers
(sgd with momentum or Nesterov's, Adam), the L2 penalty, the schedules, the
loss curve, the stopping rule and the verbose lines are scikit-learn's. With
``shuffle=False`` (or full batches) the weights, ``loss_curve_`` and the
predictions follow MLPClassifier's and MLPRegressor's to 1e-10 in float64;
``tests/test_sklearn.py`` checks it. With shuffled mini-batches the epochs'
row orders are sigmanet's own (seeded from ``random_state``), so the numbers
differ from scikit-learn's as two shuffles do.

Training runs in :meth:`sigmanet.Network.fit` on any backend, one call for
all the epochs (one report per epoch, the loss taken from the training pass
itself), and ``solver="lbfgs"`` runs ``scipy.optimize.minimize`` on
:func:`sigmanet.loss_and_gradients`: there is no second training loop.
"""

from __future__ import annotations

try:
    import sklearn  # noqa: F401  (the optional dependency, named in the error below)
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
except ImportError as e:  # pragma: no cover - exercised in a subprocess by the tests
    raise ImportError(
        f"sigmanet.sklearn needs scikit-learn, which could not be imported ({e}); "
        "install it with: pip install 'sigmanet[sklearn]'"
    ) from e

import math
import numbers
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.optimize
import scipy.special
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import accuracy_score, r2_score
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils import check_random_state
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import type_of_target, unique_labels
from sklearn.utils.validation import check_is_fitted, column_or_1d, validate_data

from .backends import get_backend
from .backends._blas import blas_threads, one_thread_if_small
from .embedding import loss_and_gradients
from .errors import DivergenceError, warn_at_caller
from .network import Network
from .numerics import saturated_share

__all__ = ["SigmaNetClassifier", "SigmaNetRegressor"]

_STOCHASTIC = ("sgd", "adam")
_OUTPUT = {"logistic": "sigmoid", "softmax": "softmax", "identity": "identity"}
_NET_LOSS = {"logistic": "bce", "softmax": "cross_entropy", "identity": "mse"}
# Saturation, measured as Network's stuck check measures it (outputs within 1e-6 of 0 or 1, on the first
# 256 rows, hidden layers of two or more units): the estimators warn from a quarter of a layer's outputs
# (unscaled breast cancer: about half; the same data scaled: none), Network's own check at 99%.
_SATURATED_SHARE, _SATURATED_ROWS = 0.25, 256


# -- parameters: checked at fit, before anything is touched (never in __init__, as scikit-learn asks) --


@dataclass(frozen=True)
class _Params:
    hidden: tuple[int, ...]
    solver: str
    alpha: float
    batch_size: int | None  # None: "auto"
    learning_rate: str
    learning_rate_init: float
    power_t: float
    max_iter: int
    shuffle: bool
    tol: float
    verbose: int
    warm_start: bool
    momentum: float
    nesterovs_momentum: bool
    early_stopping: bool
    validation_fraction: float
    beta_1: float
    beta_2: float
    epsilon: float
    n_iter_no_change: float  # an int, or inf
    max_fun: int
    backend: str
    dtype: np.dtype | None  # None: X's own (float64 or float32), as scikit-learn

    @property
    def optimizer(self) -> str:
        """Network's name for the update rule."""
        if self.solver == "adam":
            return "adam"
        if self.momentum == 0:
            return "sgd"
        return "nesterov" if self.nesterovs_momentum else "momentum"


def _bad(name: str, value: Any, what: str) -> ValueError:
    return ValueError(f"{name} must be {what}, got {value!r}")


def _int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral) or int(value) < minimum:
        raise _bad(name, value, f"an integer of at least {minimum}")
    return int(value)


def _real(name: str, value: Any, low: float, high: float, *, low_open=False, high_open=False) -> float:
    ok = isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_)) and math.isfinite(value)
    if ok:
        x = float(value)
        ok = (x > low if low_open else x >= low) and (x < high if high_open else x <= high)
    if not ok:
        lo, hi = "(" if low_open else "[", ")" if high_open else "]"
        raise _bad(name, value, f"a finite number in {lo}{low:g}, {high:g}{hi}")
    return float(value)


def _bool(name: str, value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise _bad(name, value, "True or False")
    return bool(value)


def _choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise _bad(name, value, "one of " + ", ".join(repr(c) for c in choices))
    return value


def _check_params(est: _SigmaNetBase) -> _Params:
    """Every parameter checked, each message naming it; nothing is changed."""
    name = type(est).__name__
    hidden = est.hidden_layer_sizes
    if isinstance(hidden, numbers.Integral) and not isinstance(hidden, (bool, np.bool_)):
        hidden = [hidden]
    try:
        sizes = list(hidden)
    except TypeError:
        raise _bad("hidden_layer_sizes", est.hidden_layer_sizes, "a positive integer or a sequence of them") from None
    if any(isinstance(h, (bool, np.bool_)) or not isinstance(h, numbers.Integral) or h < 1 for h in sizes):
        raise _bad("hidden_layer_sizes", est.hidden_layer_sizes, "a positive integer or a sequence of them")
    if est.activation != "logistic":
        if est.activation in ("relu", "tanh", "identity"):
            raise ValueError(
                f"{name} offers only activation='logistic' (sigmoid hidden units, sigmanet's kind), got "
                f"activation={est.activation!r}; for {est.activation} units use scikit-learn's "
                f"{name.replace('SigmaNet', 'MLP')}"
            )
        raise _bad("activation", est.activation, "'logistic' (the only activation sigmanet offers)")
    solver = _choice("solver", est.solver, ("sgd", "adam", "lbfgs"))
    bs = est.batch_size
    batch: int | None = None
    if isinstance(bs, str) and bs == "auto":
        pass
    elif isinstance(bs, numbers.Integral) and not isinstance(bs, (bool, np.bool_)) and int(bs) >= 1:
        batch = int(bs)
    else:
        raise _bad("batch_size", bs, "'auto' or a positive integer")
    n_iter_no_change = est.n_iter_no_change
    if not (isinstance(n_iter_no_change, float) and n_iter_no_change == math.inf):
        n_iter_no_change = _int("n_iter_no_change", n_iter_no_change, 1)
    early = _bool("early_stopping", est.early_stopping)
    fraction = _real("validation_fraction", est.validation_fraction, 0.0, 1.0, low_open=early, high_open=True)
    verbose = est.verbose
    if isinstance(verbose, (bool, np.bool_)):
        verbose = int(verbose)
    verbose = _int("verbose", verbose, 0)
    try:
        check_random_state(est.random_state)
    except ValueError:
        raise _bad("random_state", est.random_state, "None, an integer or a numpy.random.RandomState") from None
    if not isinstance(est.backend, str):
        raise _bad("backend", est.backend, "a backend name such as 'numpy', 'numba', 'cupy' or 'auto'")
    get_backend(est.backend)  # unknown or unusable here: BackendUnavailableError (a ValueError), before any work
    dtype = None
    if est.dtype is not None:
        try:
            dtype = np.dtype(est.dtype)
        except TypeError:
            dtype = None
        if dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
            raise _bad("dtype", est.dtype, "None (X's own: float64, or float32), 'float64' or 'float32'")
    return _Params(
        hidden=tuple(int(h) for h in sizes),
        solver=solver,
        alpha=_real("alpha", est.alpha, 0.0, math.inf, high_open=True),
        batch_size=batch,
        learning_rate=_choice("learning_rate", est.learning_rate, ("constant", "invscaling", "adaptive")),
        learning_rate_init=_real(
            "learning_rate_init", est.learning_rate_init, 0.0, math.inf, low_open=True, high_open=True
        ),  # fmt: skip
        power_t=_real("power_t", est.power_t, 0.0, math.inf, high_open=True),
        max_iter=_int("max_iter", est.max_iter, 1),
        shuffle=_bool("shuffle", est.shuffle),
        tol=_real("tol", est.tol, 0.0, math.inf, high_open=True),
        verbose=verbose,
        warm_start=_bool("warm_start", est.warm_start),
        momentum=_real("momentum", est.momentum, 0.0, 1.0),
        nesterovs_momentum=_bool("nesterovs_momentum", est.nesterovs_momentum),
        early_stopping=early,
        validation_fraction=fraction,
        beta_1=_real("beta_1", est.beta_1, 0.0, 1.0, high_open=True),
        beta_2=_real("beta_2", est.beta_2, 0.0, 1.0, high_open=True),
        epsilon=_real("epsilon", est.epsilon, 0.0, math.inf, low_open=True, high_open=True),
        n_iter_no_change=n_iter_no_change,
        max_fun=_int("max_fun", est.max_fun, 1),
        backend=est.backend,
        dtype=dtype,
    )


def _check_sample_weight(sample_weight: Any, n: int, dtype: np.dtype) -> np.ndarray | None:
    """scikit-learn's forms (None, a number, one weight per row), checked: finite, at least 0, not all 0."""
    if sample_weight is None:
        return None
    if isinstance(sample_weight, numbers.Number):
        sw = np.full(n, sample_weight, dtype=dtype)
    else:
        sw = np.asarray(sample_weight)
        if sw.dtype.kind not in "biuf":
            raise ValueError(f"sample_weight must be numeric, got dtype {sw.dtype}")
        if sw.ndim != 1 or sw.shape[0] != n:
            raise ValueError(f"sample_weight must be 1-D with one weight per row of X ({n}), got shape {sw.shape}")
        sw = sw.astype(dtype)
    if not np.isfinite(sw).all():
        raise ValueError("sample_weight holds NaN or infinite values")
    if (sw < 0).any():
        raise ValueError(f"sample_weight must be at least 0 (sigmanet refuses negative weights), got {sw.min():g}")
    if not (sw > 0).any():
        raise ValueError("sample_weight is zero for every row: nothing would be learned")
    return sw


@dataclass(frozen=True)
class _Epoch:
    """The estimator's training record after a completed epoch: what an interrupted fit keeps."""

    n_iter: int
    t: int
    loss: float
    best_loss: float | None
    no_improvement: int
    best_validation_score: float | None
    best: tuple  # (coefs, intercepts) of the best validation score (early stopping)
    weights: list
    biases: list
    optimizer: Any  # the Network's OptimizerState
    learning_rate: float  # the sgd optimizer's rate for the next epoch (scikit-learn's optimizer.learning_rate)
    lr_is_schedule: bool  # that rate is invscaling's learning_rate_init / (t_ + 1) ** power_t
    n_curve: int  # entries of the loss curve (and validation scores) that belong to completed epochs
    n_scores: int
    stopped: bool  # the stopping rule fired
    decreased: bool  # adaptive: the rate was just divided by 5


_LIVE = "live"  # _Epoch.best: the current weights themselves (see _fit_stochastic)


class _Interrupted(Exception):
    def __init__(self, fitted: dict):
        self.fitted = fitted


def _pack(arrays: list[np.ndarray]) -> np.ndarray:
    return np.hstack([a.ravel() for a in arrays])


def _unpack(x: np.ndarray, shapes: list[tuple[int, ...]], dtype: np.dtype) -> list[np.ndarray]:
    out, at = [], 0
    for shape in shapes:
        size = int(np.prod(shape))
        out.append(np.asarray(x[at : at + size], dtype=dtype).reshape(shape))
        at += size
    return out


def _max_abs(X: Any) -> float:
    if hasattr(X, "toarray"):  # sparse
        return float(abs(X).max()) if X.nnz else 0.0
    return float(np.abs(X).max()) if X.size else 0.0


class _SigmaNetBase(BaseEstimator):
    """What the classifier and the regressor share: the checks, the fit, the Network, the fitted state."""

    # -- what each subclass supplies --

    def _prepare_targets(self, X, y, incremental, classes, first):  # pragma: no cover - abstract
        raise NotImplementedError

    def _val_score(self, out, Y_val, sw_val, fitted):  # pragma: no cover - abstract
        raise NotImplementedError

    def _labels(self, Y, fitted):  # pragma: no cover - the classifier's
        raise NotImplementedError

    # -- the fit, in one transaction --

    def _fit(self, X, y, sample_weight=None, incremental=False, classes=None):
        """Check everything, train, and publish the fitted state only when the fit completes (or, after a
        Ctrl-C, the state of its last completed epoch); a refused or failed fit leaves the estimator as it was."""
        before = dict(self.__dict__)
        pending: list[tuple[str, type[Warning], Any]] = []
        try:
            fitted = self._fit_transaction(X, y, sample_weight, incremental, classes, pending)
        except _Interrupted as stop:
            fitted = stop.fitted
            pending.append(("Training interrupted by user.", UserWarning, None))
        except BaseException:
            self.__dict__.clear()
            self.__dict__.update(before)
            raise
        for key in [k for k in fitted if fitted[k] is _DELETE]:
            fitted.pop(key)
            self.__dict__.pop(key, None)
        self.__dict__.update(fitted)  # one update: every attribute from the same completed epoch
        for message, category, cause in pending:
            w = category(message)
            if cause is not None:
                w.cause = cause  # type: ignore[attr-defined]
            warn_at_caller(w)
        return self

    def _fit_transaction(self, X, y, sample_weight, incremental, classes, pending):
        p = _check_params(self)
        if incremental and p.solver not in _STOCHASTIC:
            raise AttributeError(f"partial_fit is only available for stochastic optimizers; {p.solver} is not")
        if incremental and p.early_stopping:
            raise ValueError("partial_fit does not support early_stopping=True")
        first = not hasattr(self, "coefs_") or (not p.warm_start and not incremental)
        X, Y, y_labels, meta = self._prepare_targets(X, y, incremental, classes, first)
        dtype = X.dtype if p.dtype is None else p.dtype  # (np.dtype is falsy: no "or" here)
        X = X.astype(dtype, copy=False)
        Y = np.asarray(Y, dtype=dtype)
        n, n_features = X.shape
        sw = _check_sample_weight(sample_weight, n, dtype)
        cw = meta.pop("class_weights", None)
        if cw is not None:
            sw = cw if sw is None else sw * cw
        layer_units = [n_features, *p.hidden, Y.shape[1]]
        wanted = meta.pop("out_activation")
        if first:
            out_activation = wanted
        else:
            out_activation = self.out_activation_
            shapes = [c.shape for c in self.coefs_]
            if shapes != list(zip(layer_units[:-1], layer_units[1:])) or out_activation != wanted:
                raise ValueError(
                    f"the fitted network has layers {[s[0] for s in shapes] + [shapes[-1][1]]} "
                    f"({self.out_activation_} outputs); continuing it (warm_start or partial_fit) needs the same "
                    f"hidden_layer_sizes and targets, which give {layer_units} ({wanted} outputs)"
                )
        if p.solver in _STOCHASTIC and p.early_stopping:
            stratify = y_labels is not None and Y.shape[1] == 1  # scikit-learn stratifies single-output classifiers
            _check_split(n, p.validation_fraction, y_labels if stratify else None)
        rs = check_random_state(self.random_state)
        fitted: dict[str, Any] = dict(meta)
        fitted["_dtype"] = np.dtype(dtype)
        if first:
            coefs, intercepts = _init_weights(rs, layer_units, dtype)
            fitted.update(n_iter_=0, t_=0, n_outputs_=Y.shape[1], n_layers_=len(layer_units))
            fitted["out_activation_"] = out_activation
            if p.solver in _STOCHASTIC:
                fitted.update(
                    loss_curve_=[],
                    _no_improvement_count=0,
                    _best_coefs=[c.copy() for c in coefs],
                    _best_intercepts=[b.copy() for b in intercepts],
                )
                if p.early_stopping:
                    fitted.update(validation_scores_=[], best_validation_score_=-np.inf, best_loss_=None)
                else:
                    fitted.update(best_loss_=np.inf, validation_scores_=None, best_validation_score_=None)
            else:
                for key in ("loss_curve_", "best_loss_", "validation_scores_", "best_validation_score_"):
                    fitted[key] = _DELETE
            fitted["_optimizer_state"] = None
        else:
            coefs = [np.asarray(c, dtype=dtype) for c in self.coefs_]
            intercepts = [np.asarray(b, dtype=dtype) for b in self.intercepts_]
            if not all(np.isfinite(a).all() for a in coefs + intercepts):
                raise ValueError("coefs_ and intercepts_ must be finite to continue from them")
        if p.solver == "lbfgs":
            return self._fit_lbfgs(p, X, Y, sw, coefs, intercepts, out_activation, fitted, pending)
        return self._fit_stochastic(
            p, X, Y, y_labels, sw, coefs, intercepts, out_activation, fitted, rs, incremental, first, pending
        )

    # -- sgd and adam: epochs of Network.fit --

    def _fit_stochastic(self, p, X, Y, y_labels, sw, coefs, intercepts, out_activation, fitted, rs, incremental,
                        first, pending):  # fmt: skip
        regression_outputs = Y.shape[1] if out_activation == "identity" else 1
        # The state this fit starts from: fresh (first pass) or the estimator's own.
        prev = dict(self.__dict__)
        prev.update({k: v for k, v in fitted.items() if v is not _DELETE})
        loss_curve = list(prev["loss_curve_"]) if prev.get("loss_curve_") is not None else []
        scores = None
        if p.early_stopping:
            old = prev.get("validation_scores_")
            scores = list(old) if old is not None else []
        best_val = prev.get("best_validation_score_")
        if p.early_stopping and best_val is None:
            best_val = -np.inf
        best_loss = prev.get("best_loss_")
        if not p.early_stopping and best_loss is None:
            best_loss = np.inf
        # scikit-learn ends an early-stopping fit with coefs_ = _best_coefs, the same lists, which its next
        # warm-started fit then trains in place: until a better score is seen, the "best" weights are the
        # current ones. That aliasing is followed here (_LIVE), so warm-started early stopping is exact too.
        best: Any
        if not first and prev.get("_best_coefs") is self.__dict__.get("coefs_"):
            best = _LIVE
        else:
            best = (
                [np.asarray(c) for c in prev.get("_best_coefs", coefs)],
                [np.asarray(b) for b in prev.get("_best_intercepts", intercepts)],
            )
        # The optimizer: a new fit makes a new one (scikit-learn's); partial_fit keeps the last one's state.
        opt_state = prev.get("_optimizer_state") if incremental else None
        t0 = int(prev["t_"])
        if opt_state is not None and "_learning_rate" in prev:
            learning_rate, lr_is_schedule = prev["_learning_rate"], prev["_lr_is_schedule"]
        else:
            learning_rate, lr_is_schedule = p.learning_rate_init, t0 == 0
        # The validation split: scikit-learn's own function and random state, as MLPClassifier does it.
        X_val = Y_val = sw_val = None
        if p.early_stopping:
            stratify = Y.astype(bool) if (y_labels is not None and Y.shape[1] == 1) else None  # as scikit-learn's
            if sw is None:
                X, X_val, Y, Y_val = train_test_split(
                    X, Y, random_state=rs, test_size=p.validation_fraction, stratify=stratify
                )
            else:
                X, X_val, Y, Y_val, sw, sw_val = train_test_split(
                    X, Y, sw, random_state=rs, test_size=p.validation_fraction, stratify=stratify
                )
                if not (sw > 0).any():
                    raise ValueError("the training split's sample weights are all zero: nothing would be learned")
                if not (sw_val > 0).any():
                    raise ValueError(
                        "the validation split's sample weights are all zero: early stopping's score would be "
                        "undefined (give more rows weight, or early_stopping=False)"
                    )
        val_macs = 0 if X_val is None else X_val.shape[0] * sum(c.shape[0] * c.shape[1] for c in coefs)
        n = X.shape[0]
        if p.batch_size is None:
            batch = min(200, n)
        else:
            if p.batch_size > n:
                pending.append(
                    ("Got `batch_size` less than 1 or larger than sample size. It is going to be clipped", UserWarning,
                     None)
                )  # fmt: skip
            batch = min(p.batch_size, n)
        n_batches = -(-n // batch)
        shuffle_seed = int(rs.randint(np.iinfo(np.int32).max)) if p.shuffle and batch < n else False
        epochs = 1 if incremental else p.max_iter
        net = Network.from_state(
            {
                "layers": [X.shape[1]] + [c.shape[1] for c in coefs],
                "dtype": np.dtype(fitted["_dtype"]).name,
                "bias": True,
                "output": _OUTPUT[out_activation],
                "iteration": 0,
                "weights": coefs,
                "biases": intercepts,
                "optimizer": None
                if opt_state is None
                else {"rule": opt_state.rule, "step": opt_state.step, "slots": dict(opt_state.slots)},
            },
            backend=p.backend,
        )
        start = _Epoch(
            n_iter=0,
            t=t0,
            loss=float("nan"),
            best_loss=best_loss,
            no_improvement=int(prev.get("_no_improvement_count", 0)),
            best_validation_score=best_val,
            best=best,
            weights=coefs,
            biases=intercepts,
            optimizer=net.optimizer_state,
            learning_rate=learning_rate,
            lr_is_schedule=lr_is_schedule,
            n_curve=len(loss_curve),
            n_scores=0 if scores is None else len(scores),
            stopped=False,
            decreased=False,
        )
        done = [start]  # done[0]: the last completed epoch (one assignment per epoch)

        def on_epoch(hist):
            # the interval's mean loss from the training pass itself (average_loss=True), its data and
            # penalty parts apart: scikit-learn's squared error averages a regression's outputs, the
            # Network's sums them
            last = done[0]
            loss = hist.data_losses[-1] / regression_outputs + hist.penalties[-1]
            if not math.isfinite(loss):
                raise ValueError(
                    f"Solver produced a non-finite training loss ({loss}) in epoch {last.n_iter + 1}: "
                    + self._too_large(X, Y)
                )
            n_iter, t = last.n_iter + 1, last.t + n
            del loss_curve[last.n_curve :]
            loss_curve.append(loss)
            if p.verbose:
                print(f"Iteration {n_iter}, loss = {loss:.8f}")
            no_improvement, best_loss, best_val, best = (
                last.no_improvement,
                last.best_loss,
                last.best_validation_score,
                last.best,
            )
            weights, biases = net.weights, net.biases or []
            if p.early_stopping:
                assert scores is not None
                with one_thread_if_small(val_macs):  # between a fit's calls: see _blas.ONE_THREAD_MACS
                    out = net.predict(X_val)
                score = self._val_score(out, Y_val, sw_val, fitted)
                del scores[last.n_scores :]
                scores.append(score)
                if p.verbose:
                    print(f"Validation score: {score:f}")
                no_improvement = no_improvement + 1 if score < best_val + p.tol else 0
                if score > best_val:
                    best_val, best = score, (weights, biases)
            else:
                assert best_loss is not None  # set when early stopping is off
                no_improvement = no_improvement + 1 if loss > best_loss - p.tol else 0
                best_loss = min(best_loss, loss)
            learning_rate, lr_is_schedule = last.learning_rate, last.lr_is_schedule
            if p.solver == "sgd" and p.learning_rate == "invscaling":
                learning_rate, lr_is_schedule = p.learning_rate_init / (t + 1) ** p.power_t, True
            stopped = decreased = False
            if no_improvement > p.n_iter_no_change:
                what = "Validation score" if p.early_stopping else "Training loss"
                msg = f"{what} did not improve more than tol={p.tol:f} for {p.n_iter_no_change} consecutive epochs."
                if p.solver == "sgd" and p.learning_rate == "adaptive":
                    if learning_rate <= 1e-6:
                        stopped = True
                        if p.verbose:
                            print(f"{msg} Learning rate too small. Stopping.")
                    else:
                        learning_rate /= 5.0
                        decreased, no_improvement = True, 0
                        if p.verbose:
                            print(f"{msg} Setting learning rate to {learning_rate:f}")
                else:
                    stopped = True
                    if p.verbose:
                        print(f"{msg} Stopping.")
            done[0] = _Epoch(
                n_iter=n_iter,
                t=t,
                loss=loss,
                best_loss=best_loss,
                no_improvement=no_improvement,
                best_validation_score=best_val,
                best=best,
                weights=weights,
                biases=biases,
                optimizer=net.optimizer_state,
                learning_rate=learning_rate,
                lr_is_schedule=lr_is_schedule,
                n_curve=len(loss_curve),
                n_scores=0 if scores is None else len(scores),
                stopped=stopped,
                decreased=decreased,
            )
            return not (stopped or decreased)

        causes: list[str] = []
        try:
            while done[0].n_iter < epochs and not done[0].stopped:
                last = done[0]
                remaining = epochs - last.n_iter
                schedule, rate = "constant", last.learning_rate
                if p.solver == "adam":
                    rate = p.learning_rate_init
                elif p.learning_rate == "invscaling" and not incremental:
                    if last.lr_is_schedule and last.t % n == 0:
                        # Network's invscaling is scikit-learn's when epoch e starts after e * n rows
                        schedule, rate = "invscaling", p.learning_rate_init
                        net = _renumbered(net, (last.t // n) * n_batches)
                    else:
                        remaining = 1  # one epoch at the optimizer's current rate, then the schedule
                _run_network(net, p, X, Y, sw, out_activation, batch, n, n_batches, shuffle_seed, remaining,
                             schedule, rate, on_epoch, causes)  # fmt: skip
                if done[0] is last:
                    raise RuntimeError("Network.fit returned without completing an epoch")  # pragma: no cover
        except DivergenceError as e:
            raise ValueError(
                "Solver produced non-finite parameter weights. The input data may contain large values and need "
                f"to be preprocessed (or learning_rate_init={p.learning_rate_init:g} is too large): {e}"
            ) from e
        except KeyboardInterrupt:
            if done[0] is start:
                raise  # not one epoch completed: the estimator stays as it was
            raise _Interrupted(self._finish(p, fitted, done[0], loss_curve, scores, X, incremental)) from None
        last = done[0]
        result = self._finish(p, fitted, last, loss_curve, scores, X, incremental)
        coefs_, intercepts_ = result["coefs_"], result["intercepts_"]
        share = _saturation(coefs_, intercepts_, X)
        # stalled from the start: a fresh fit whose first epoch's figure (an improvement on the starting
        # infinity) was never beaten by tol, so it stopped after its first n_iter_no_change + 1 epochs;
        # unless its loss fell well below a constant guess's (a validation score at its best from epoch 1)
        learned = _learned(last.loss, Y, out_activation)
        stalled = first and last.stopped and last.n_iter <= p.n_iter_no_change + 2 and not learned
        cause = None
        if (share >= _SATURATED_SHARE and not learned) or "saturated" in causes:
            cause = "saturated"
        elif "frozen" in causes or stalled:
            cause = "frozen"
        maxed = not incremental and last.n_iter == p.max_iter and not last.stopped
        if cause is not None:
            message = self._stuck_message(cause, p, X, share, last, maxed)
            pending.append((message, ConvergenceWarning, cause))
        elif maxed:
            pending.append(
                (
                    f"Stochastic Optimizer: Maximum iterations ({p.max_iter}) reached and the optimization hasn't "
                    "converged yet.",
                    ConvergenceWarning,
                    None,
                )
            )
        return result

    def _finish(self, p, fitted, last: _Epoch, loss_curve, scores, X, incremental) -> dict:
        """The attributes of a fit that ended after epoch ``last``."""
        fitted = dict(fitted)
        live = last.best is _LIVE
        if p.early_stopping and not live:
            coefs, intercepts = last.best
        else:
            coefs, intercepts = last.weights, last.biases
        coefs_, intercepts_ = [np.array(c) for c in coefs], [np.array(b) for b in intercepts]
        if p.early_stopping or live:  # scikit-learn's aliasing: coefs_ is _best_coefs
            best_coefs, best_intercepts = coefs_, intercepts_
        else:
            best_coefs, best_intercepts = [np.array(c) for c in last.best[0]], [np.array(b) for b in last.best[1]]
        fitted.update(
            coefs_=coefs_,
            intercepts_=intercepts_,
            n_iter_=last.n_iter,
            t_=last.t,
            loss_=last.loss,
            loss_curve_=loss_curve[: last.n_curve],
            best_loss_=last.best_loss,
            _no_improvement_count=last.no_improvement,
            _best_coefs=best_coefs,
            _best_intercepts=best_intercepts,
            _optimizer_state=last.optimizer,
            _learning_rate=last.learning_rate,
            _lr_is_schedule=last.lr_is_schedule,
        )
        if p.early_stopping:
            fitted.update(validation_scores_=scores[: last.n_scores], best_validation_score_=last.best_validation_score)
        return fitted

    # -- lbfgs: scipy.optimize on the Network's loss and gradient --

    def _fit_lbfgs(self, p, X, Y, sw, coefs, intercepts, out_activation, fitted, pending):
        output = _OUTPUT[out_activation]
        dtype = np.dtype(fitted["_dtype"])
        shapes = [c.shape for c in coefs] + [b.shape for b in intercepts]
        n_w = len(coefs)
        k_out = Y.shape[1] if out_activation == "identity" else 1
        weight_sum = float(X.shape[0] if sw is None else sw.sum())
        last: dict[str, Any] = {"x": None, "f": None}
        backend = p.backend
        loss = _NET_LOSS[out_activation]

        def fun(x):
            params = _unpack(x, shapes, dtype)
            ws, bs = params[:n_w], params[n_w:]
            value, gw, gb = loss_and_gradients(
                ws, bs, X, Y, backend=backend, output=output, loss=loss, reduction="mean", alpha=p.alpha,
                sample_weight=sw,
            )  # fmt: skip
            if k_out > 1:  # scikit-learn's squared error averages the outputs; its gradient does not
                penalty = 0.5 * p.alpha * sum(float(np.vdot(w, w)) for w in ws) / weight_sum
                value = (value - penalty) / k_out + penalty
            last["x"], last["f"] = x.copy(), value
            return value, _pack(gw + (gb or [])).astype(np.float64)

        progress: list[tuple[np.ndarray, float, int]] = []  # [(x, loss, iterations)] after each completed iteration

        def on_iteration(intermediate_result):
            x = getattr(intermediate_result, "x", intermediate_result)  # scipy < 1.11 passes x alone
            f = getattr(intermediate_result, "fun", None)
            if f is None:
                f = last["f"] if last["x"] is not None and np.array_equal(last["x"], x) else float("nan")
            nit = progress[0][2] + 1 if progress else 1
            progress[:] = [(np.array(x, copy=True), float(f), nit)]

        x0 = _pack(coefs + intercepts)
        try:
            result = scipy.optimize.minimize(
                fun,
                x0,
                method="L-BFGS-B",
                jac=True,
                callback=on_iteration,
                options={"maxfun": p.max_fun, "maxiter": p.max_iter, "gtol": p.tol},
            )
        except DivergenceError as e:  # pragma: no cover - loss_and_gradients does not raise it
            raise ValueError(f"Solver produced non-finite parameter weights: {e}") from e
        except KeyboardInterrupt:
            if not progress:
                raise
            x, f, nit = progress[0]
            raise _Interrupted(self._lbfgs_fitted(fitted, x, f, nit, shapes, n_w, dtype)) from None
        n_iter = min(result.nit, p.max_iter)
        if result.status != 0:
            msg = f"lbfgs failed to converge after {n_iter} iteration(s) (status={result.status}):\n{result.message}\n"
            if n_iter == p.max_iter:
                msg += f"\nIncrease the number of iterations to improve the convergence (max_iter={p.max_iter})."
            msg += (
                "\n\nIncrease the number of iterations (max_iter) or scale the data as shown in:\n"
                "    https://scikit-learn.org/stable/modules/preprocessing.html"
            )
            pending.append((msg, ConvergenceWarning, None))
        if not np.isfinite(result.x).all():
            raise ValueError(
                "Solver produced non-finite parameter weights. The input data may contain large values and need "
                "to be preprocessed."
            )
        fitted = self._lbfgs_fitted(fitted, result.x, float(result.fun), n_iter, shapes, n_w, dtype)
        share = _saturation(fitted["coefs_"], fitted["intercepts_"], X)
        if share >= _SATURATED_SHARE and not _learned(fitted["loss_"], Y, out_activation):
            pending.append(
                (self._stuck_message("saturated", p, X, share, None, False), ConvergenceWarning, "saturated")
            )
        return fitted

    def _lbfgs_fitted(self, fitted, x, f, n_iter, shapes, n_w, dtype):
        fitted = dict(fitted)
        params = _unpack(x, shapes, dtype)
        fitted.update(coefs_=params[:n_w], intercepts_=params[n_w:], n_iter_=int(n_iter), loss_=float(f))
        return fitted

    def _too_large(self, X: Any, Y: np.ndarray) -> str:
        """What to do when the numbers overflow."""
        if np.abs(Y).max() > 1e100:
            return (
                f"the targets reach |y| = {np.abs(Y).max():.3g}, too large to square; scale them (e.g. "
                "sklearn.compose.TransformedTargetRegressor with a StandardScaler)"
            )
        return f"the inputs reach |X| = {_max_abs(X):.3g}: scale them (a StandardScaler in a Pipeline)"

    # -- the warning a stuck fit gets --

    def _stuck_message(self, cause: str, p: _Params, X: Any, share: float, last: _Epoch | None, maxed: bool) -> str:
        """The warning for a fit that saturated or stalled: what happened, and the cure that fits it."""
        name = type(self).__name__
        biggest = _max_abs(X)
        unscaled = biggest > 10
        rate = p.learning_rate_init
        large = rate >= (1.0 if p.solver == "adam" else 100.0)
        small = rate <= 1e-6
        scale = (
            f"the inputs are not scaled (the largest |X| is {biggest:.3g}): put a scaler before {name} in a "
            f"Pipeline, make_pipeline(StandardScaler(), {name}(...)) or MinMaxScaler()"
        )
        cures = []
        if cause == "saturated":
            what = (
                f"{name}: {share:.0%} of a hidden layer's logistic outputs are saturated (within 1e-6 of 0 or 1), "
                "so almost no gradient flows through those units and the network learns with the rest"
            )
            if unscaled:
                cures.append(scale)
            if p.solver == "lbfgs" and not unscaled:  # L-BFGS has no learning rate: only alpha holds the weights
                cures.append(f"the weights grew large: raise alpha (now {p.alpha:g}) to hold them back")
            elif large or not unscaled:
                cures.append(f"learning_rate_init={rate:g} lets the weights grow large: lower it, or raise alpha")
        else:
            figure = "validation score" if p.early_stopping else "training loss"
            what = f"{name}: training stalled: the {figure} did not move"
            if last is not None and last.stopped:
                what += f" by more than tol={p.tol:g} after the first epoch (it stopped after {last.n_iter} epochs)"
            if small:
                cures.append(f"learning_rate_init={rate:g} is far too small to move the weights: raise it")
            elif large:
                cures.append(f"learning_rate_init={rate:g} is far too large, the steps overshoot: lower it")
            else:
                cures.append(f"try another learning_rate_init (now {rate:g})")
            if unscaled:
                cures.append(scale)
        if maxed:
            cures.append(f"(the maximum of {p.max_iter} epochs was reached too)")
        return f"{what}. Cure: " + "; ".join(cures) + "."

    # -- predictions: a Network holding coefs_ and intercepts_ (as the user may have assigned them) --

    def _network(self) -> Network:
        coefs = [np.asarray(c) for c in self.coefs_]
        dtype = getattr(self, "_dtype", None)
        if dtype is None:
            dtype = coefs[0].dtype if coefs[0].dtype in (np.float32, np.float64) else np.float64
        return Network.from_state(
            {
                "layers": [coefs[0].shape[0]] + [c.shape[1] for c in coefs],
                "dtype": np.dtype(dtype).name,
                "bias": True,
                "output": _OUTPUT[self.out_activation_],
                "iteration": 0,
                "weights": coefs,
                "biases": [np.asarray(b) for b in self.intercepts_],
            },
            backend=self.backend,
        )

    def _forward(self, X, check_input=True) -> np.ndarray:
        check_is_fitted(self, "coefs_")
        if check_input:
            X = validate_data(self, X, accept_sparse=["csr", "csc"], dtype=(np.float64, np.float32), reset=False)
        net = self._network()
        # as scikit-learn's X @ coefs_: float32 only when both X and the network are float32
        return np.asarray(net.predict(X), dtype=np.result_type(X.dtype, net.dtype))

    def _check_solver(self) -> bool:
        if self.solver not in _STOCHASTIC:
            raise AttributeError(
                f"partial_fit is only available for stochastic optimizers. {self.solver} is not stochastic."
            )
        return True

    def fit(self, X, y, sample_weight=None):
        """Fit the model to X and y: up to ``max_iter`` epochs (from the current weights with ``warm_start``).

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            CSR and CSC matrices are used as they are (the first layer's product is sparse).
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
        sample_weight : array-like of shape (n_samples,), default=None
            Each row's weight on the loss and every gradient (at least 0).

        Returns
        -------
        self
        """
        return self._fit(X, y, sample_weight=sample_weight, incremental=False)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags


class _Delete:
    def __repr__(self) -> str:
        return "<delete>"


_DELETE = _Delete()  # in a fitted-state dict: remove this attribute


def _init_weights(rs: np.random.RandomState, layer_units: list[int], dtype: Any) -> tuple[list, list]:
    """MLPClassifier's draw for logistic units: uniform in +-sqrt(2 / (fan_in + fan_out)), each layer's
    weights then its intercepts, from ``random_state`` in order; so the two start from the same weights."""
    coefs, intercepts = [], []
    for fan_in, fan_out in zip(layer_units[:-1], layer_units[1:]):
        bound = np.sqrt(2.0 / (fan_in + fan_out))
        coefs.append(rs.uniform(-bound, bound, (fan_in, fan_out)).astype(dtype, copy=False))
        intercepts.append(rs.uniform(-bound, bound, fan_out).astype(dtype, copy=False))
    return coefs, intercepts


def _check_split(n: int, fraction: float, labels: np.ndarray | None) -> None:
    """Refuse, before any random draw, a validation split that scikit-learn's train_test_split would refuse."""
    n_val = math.ceil(fraction * n)
    if n_val < 2:
        raise ValueError(
            "The validation set is too small. Increase 'validation_fraction' or the size of your dataset "
            f"(validation_fraction={fraction} of {n} rows holds out {n_val})."
        )
    if n - n_val < 1:
        raise ValueError(f"validation_fraction={fraction} of {n} rows leaves no rows to train on")
    if labels is not None:
        _, counts = np.unique(labels, return_counts=True)
        if counts.min() < 2:
            raise ValueError(
                "early_stopping's stratified validation split needs at least 2 rows of every class; "
                f"the least populated class has {counts.min()}"
            )
        if n_val < len(counts) or n - n_val < len(counts):
            raise ValueError(
                f"early_stopping's stratified validation split of {n_val} rows (validation_fraction={fraction}) "
                f"needs at least one row of each of the {len(counts)} classes on both sides"
            )


def _renumbered(net: Network, iteration: int) -> Network:
    """The same network (weights, optimizer state) at another iteration count."""
    if net.iteration == iteration:
        return net
    state = net.get_state()
    state["iteration"] = iteration
    return Network.from_state(state, backend=net.backend)


def _run_network(net, p, X, Y, sw, out_activation, batch, n, n_batches, shuffle_seed, epochs, schedule, rate, on_epoch,
                 causes):  # fmt: skip
    """One Network.fit over ``epochs`` epochs, one report per epoch; what Network.diagnose finds stuck
    goes in ``causes`` (no warning: the estimator words its own ConvergenceWarning)."""
    hist = net.fit(
        X,
        Y,
        iterations=epochs * n_batches,
        report_every=n_batches,
        learning_rate=rate,
        loss=_NET_LOSS[out_activation],
        reduction="mean",
        batch_size=None if batch >= n else batch,
        shuffle=shuffle_seed,
        optimizer=p.optimizer,
        momentum=p.momentum,
        beta_1=p.beta_1,
        beta_2=p.beta_2,
        epsilon=p.epsilon,
        alpha=p.alpha,
        schedule=schedule,
        power_t=p.power_t,
        average_loss=True,
        sample_weight=sw,
        on_report=on_epoch,
        warn_stuck=False,
    )
    with blas_threads(1):  # 256 rows, and no OpenBLAS thread left spinning beside the next fit (_blas)
        cause = net.diagnose(X, hist)
    if cause is not None:
        causes.append(cause)


def _saturation(coefs: list, intercepts: list, X: Any) -> float:
    """The largest share of a hidden layer's outputs within 1e-6 of 0 or 1 on X's first 256 rows: the measure
    :meth:`Network.diagnose` uses (:func:`~sigmanet.numerics.saturated_share`), here with a lower bar."""
    head = X[:_SATURATED_ROWS]
    a = head.toarray() if hasattr(head, "toarray") else np.asarray(head)
    with blas_threads(1):  # 256 rows, inside a fit: see _blas.ONE_THREAD_MACS
        return saturated_share(a, coefs, intercepts, len(coefs) - 1)


def _learned(loss: float, Y: np.ndarray, out_activation: str) -> bool:
    """Whether a fit's training loss fell below half a constant guess's (each output's mean, the loss's own
    measure): then saturated units or an early stop right after the first epoch did not keep it from
    learning, and warning that it is stuck would be wrong (MLPClassifier gives no warning there either)."""
    mean = Y.mean(axis=0)
    if out_activation == "identity":
        constant = float(np.mean((Y - mean) ** 2)) / 2
    elif out_activation == "softmax":
        constant = float(-np.sum(scipy.special.xlogy(mean, mean)))
    else:
        constant = float(-np.sum(scipy.special.xlogy(mean, mean) + scipy.special.xlogy(1 - mean, 1 - mean)))
    return bool(np.isfinite(loss)) and loss < 0.5 * constant


def _r2(Y: np.ndarray, pred: np.ndarray, sw: np.ndarray | None) -> float:
    """``r2_score`` (uniform average over the outputs, ``force_finite``) of (n, k) targets and predictions:
    its own arithmetic, the same NumPy reductions in the same order, without its checks of the arrays,
    which cost about as much as an epoch on small tables. Other dtypes than float64, and fewer than two
    rows (its warning), go to r2_score itself."""
    if (Y.dtype != np.float64 or pred.dtype != np.float64 or (sw is not None and sw.dtype != np.float64)
            or Y.shape[0] < 2):  # fmt: skip
        return r2_score(Y.ravel() if Y.shape[1] == 1 else Y, pred.ravel() if pred.shape[1] == 1 else pred,
                        sample_weight=sw)  # fmt: skip
    weight = 1.0 if sw is None else sw[:, None]
    numerator = np.sum(weight * (Y - pred) ** 2, axis=0)
    denominator = np.sum(weight * (Y - np.average(Y, axis=0, weights=sw)) ** 2, axis=0)
    scores = np.ones(Y.shape[1])
    valid = (denominator != 0) & (numerator != 0)
    scores[valid] = 1 - numerator[valid] / denominator[valid]
    scores[(numerator != 0) & (denominator == 0)] = 0.0
    return float(np.average(scores))


def _class_weights(class_weight: Any, y: np.ndarray, classes: np.ndarray) -> np.ndarray | None:
    """Per-row weights from ``class_weight`` ({label: weight} or "balanced") for single-label targets."""
    if class_weight is None:
        return None
    if isinstance(class_weight, str):
        if class_weight != "balanced":
            raise _bad("class_weight", class_weight, "None, 'balanced' or a dict {class label: weight}")
        present, index, counts = np.unique(y, return_inverse=True, return_counts=True)
        return (len(y) / (len(present) * counts))[index.reshape(-1)]
    if not isinstance(class_weight, dict):
        raise _bad("class_weight", class_weight, "None, 'balanced' or a dict {class label: weight}")
    # each key must equal a class as it is, not once cast to the classes' dtype ("beetle" cut to "bee",
    # 1.5 truncated to 1 passed that way, and then weighted another class)
    labels = classes.tolist()
    where = {k: [i for i, c in enumerate(labels) if c == k] for k in class_weight}
    unknown = [k for k, hits in where.items() if not hits]
    if unknown:
        raise ValueError(f"class_weight names classes {unknown} that are not among the classes {labels}")
    table = np.ones(len(classes))
    for k, w in class_weight.items():
        if isinstance(w, (bool, np.bool_)) or not isinstance(w, numbers.Real) or not math.isfinite(w) or w < 0:
            raise ValueError(f"class_weight[{k!r}] must be a finite number of at least 0, got {w!r}")
        table[where[k][0]] = float(w)
    return table[np.searchsorted(classes, y)]


class SigmaNetClassifier(ClassifierMixin, _SigmaNetBase):
    """A multi-layer perceptron classifier with logistic units: MLPClassifier's interface and numbers.

    A drop-in for ``MLPClassifier(activation="logistic", ...)``: the same
    parameters with the same defaults (except ``activation``, whose default
    here is the only one offered), the same starting weights from
    ``random_state``, the same path through training (to 1e-10 with
    ``shuffle=False`` or full batches), and the same attributes, trained by
    :meth:`sigmanet.Network.fit` on any backend.

    Parameters
    ----------
    hidden_layer_sizes : array-like of int, default=(100,)
        The units of each hidden layer; ``()`` for none (logistic regression).
    activation : {"logistic"}, default="logistic"
        The hidden units' activation: sigmoid only. Other values are refused
        by ``fit`` (use scikit-learn's MLPClassifier for them).
    solver : {"adam", "sgd", "lbfgs"}, default="adam"
        "sgd" with ``momentum`` (heavy ball, or Nesterov's with
        ``nesterovs_momentum``), "adam", or L-BFGS-B through
        ``scipy.optimize`` on the network's exact loss and gradient.
    alpha : float, default=0.0001
        L2 penalty on the weights (not the intercepts), divided by the batch's
        sample weight, as scikit-learn's.
    batch_size : int or "auto", default="auto"
        Rows per step; "auto" is ``min(200, n_samples)``.
    learning_rate : {"constant", "invscaling", "adaptive"}, default="constant"
        The sgd schedule: "invscaling" is ``learning_rate_init / (t_ + 1) ** power_t``
        after each epoch; "adaptive" divides the rate by 5 when the loss (or
        the validation score) stops improving.
    learning_rate_init : float, default=0.001
    power_t : float, default=0.5
    max_iter : int, default=200
        Epochs (sgd, adam) or iterations (lbfgs).
    shuffle : bool, default=True
        A new row order every epoch (sigmanet's own seeded order: the numbers
        then differ from MLPClassifier's as two shuffles do).
    random_state : int, RandomState or None, default=None
        Draws the starting weights (as MLPClassifier draws them), the
        validation split and the shuffles' seed.
    tol : float, default=1e-4
    verbose : bool or int, default=False
        Prints scikit-learn's lines ("Iteration 1, loss = ...").
    warm_start : bool, default=False
        Continue from ``coefs_`` and ``intercepts_`` (the optimizer starts afresh).
    momentum : float, default=0.9
    nesterovs_momentum : bool, default=True
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the rows (scikit-learn's
        ``train_test_split``, stratified for single-output targets), score
        them after every epoch, stop when the score stops improving, and keep
        the best weights.
    validation_fraction : float, default=0.1
    beta_1, beta_2, epsilon : float, defaults 0.9, 0.999, 1e-8
        Adam's.
    n_iter_no_change : int, default=10
    max_fun : int, default=15000
        lbfgs's budget of loss evaluations.
    class_weight : dict, "balanced" or None, default=None
        Weights per class, multiplied into ``sample_weight``: ``{label:
        weight}`` (missing labels weigh 1), or "balanced": ``n_samples /
        (n_classes * count)`` from each fit's targets. Not for multilabel targets.
    backend : str, default="auto"
        A sigmanet backend: "numpy", "numba", "cupy" or "auto".
    dtype : {None, "float64", "float32"}, default=None
        The network's floats; None: X's own (float32 stays float32, anything
        else is float64), as scikit-learn.

    Attributes
    ----------
    classes_ : ndarray
    loss_ : float
        The last epoch's loss (mean over its batches, with the penalty).
    best_loss_ : float or None
    loss_curve_ : list of float
    validation_scores_ : list of float or None
    best_validation_score_ : float or None
    t_ : int
        Training rows seen, over all fits.
    coefs_, intercepts_ : lists of ndarray
    n_features_in_ : int
    feature_names_in_ : ndarray
    n_iter_ : int
    n_layers_ : int
    n_outputs_ : int
    out_activation_ : str
        "softmax" for multiclass targets, "logistic" for binary and multilabel ones.

    Warns
    -----
    sklearn.exceptions.ConvergenceWarning
        When training did not converge in ``max_iter`` epochs; or when it got
        stuck (saturated units, a frozen loss): then the warning's ``cause``
        is "saturated" or "frozen" and its message names the cure (a scaler
        in a Pipeline, or another ``learning_rate_init``).

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> from sigmanet.sklearn import SigmaNetClassifier
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = make_pipeline(StandardScaler(), SigmaNetClassifier(solver="lbfgs", backend="numpy", random_state=0))
    >>> bool(clf.fit(X, y).score(X, y) > 0.95)
    True
    >>> clf[-1].out_activation_, clf[-1].classes_
    ('softmax', array([0, 1, 2]))
    """

    def __init__(
        self,
        hidden_layer_sizes=(100,),
        activation="logistic",
        *,
        solver="adam",
        alpha=0.0001,
        batch_size="auto",
        learning_rate="constant",
        learning_rate_init=0.001,
        power_t=0.5,
        max_iter=200,
        shuffle=True,
        random_state=None,
        tol=1e-4,
        verbose=False,
        warm_start=False,
        momentum=0.9,
        nesterovs_momentum=True,
        early_stopping=False,
        validation_fraction=0.1,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        n_iter_no_change=10,
        max_fun=15000,
        class_weight=None,
        backend="auto",
        dtype=None,
    ):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.class_weight = class_weight
        self.backend = backend
        self.dtype = dtype

    def _prepare_targets(self, X, y, incremental, classes, first):
        first_classes = not hasattr(self, "classes_") or (not self.warm_start and not incremental)
        if incremental:
            if not hasattr(self, "classes_"):
                if classes is None:
                    raise ValueError("classes must be passed on the first call to partial_fit.")
            elif classes is not None and not np.array_equal(unique_labels(classes), self.classes_):
                raise ValueError(
                    f"`classes={classes!r}` is not the same as on last call to partial_fit, was: {self.classes_!r}"
                )
        X, y = validate_data(
            self, X, y, accept_sparse=["csr", "csc"], multi_output=True, dtype=(np.float64, np.float32), reset=first
        )
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        if first_classes or (incremental and not hasattr(self, "classes_")):
            binarizer = LabelBinarizer()
            if incremental and classes is not None and not type_of_target(y).startswith("multilabel"):
                binarizer.fit(classes)
                unseen = np.setdiff1d(unique_labels(y), binarizer.classes_)
                if unseen.size:
                    raise ValueError(f"`y` has classes not in `classes`: {unseen.tolist()}")
            else:
                binarizer.fit(y)
        else:
            binarizer = self._label_binarizer
            present = unique_labels(y)
            if self.warm_start and not incremental:
                if set(present) != set(self.classes_):
                    raise ValueError(
                        "warm_start can only be used where `y` has the same classes as in the previous call to fit. "
                        f"Previously got {self.classes_}, `y` has {present}"
                    )
            elif len(np.setdiff1d(present, self.classes_, assume_unique=True)):
                raise ValueError(
                    f"`y` has classes not in `self.classes_`. `self.classes_` has {self.classes_}. 'y' has {present}."
                )
        Y = binarizer.transform(y)
        meta = {
            "_label_binarizer": binarizer,
            "classes_": binarizer.classes_,
            "out_activation": "softmax" if binarizer.y_type_ == "multiclass" else "logistic",
        }
        multilabel = binarizer.y_type_.startswith("multilabel")
        if self.class_weight is not None:
            if multilabel:
                raise ValueError(
                    "class_weight is for single-label targets (binary or multiclass); y is a multilabel indicator "
                    "matrix: pass sample_weight instead"
                )
            meta["class_weights"] = _class_weights(self.class_weight, y, binarizer.classes_)
        return X, Y, (None if multilabel else y), meta

    def _labels(self, Y, fitted):
        binarizer = fitted["_label_binarizer"]
        return binarizer.inverse_transform(Y.ravel() if Y.shape[1] == 1 else Y)

    def _val_score(self, out, Y_val, sw_val, fitted):
        """``accuracy_score`` of the predicted labels against Y_val's (the binarized targets), computed
        on class indices as the label binarizer decodes them: the same number without scikit-learn's
        checks of both arrays, which took 0.6 ms of each epoch's 1.2 ms on the digits."""
        binarizer = fitted["_label_binarizer"]
        if len(binarizer.classes_) < 2:  # one class: the binarizer's own decoding
            return accuracy_score(self._labels(Y_val, fitted), self._labels(out, fitted), sample_weight=sw_val)
        if binarizer.y_type_ == "multiclass":
            hit = out.argmax(axis=1) == Y_val.argmax(axis=1)
        else:  # binary and multilabel: the binarizer's threshold, every label of a row right
            hit = ((out > 0.5) == (Y_val > 0.5)).all(axis=1)
        return float(np.average(hit, weights=sw_val))

    @available_if(lambda est: est._check_solver())
    def partial_fit(self, X, y, sample_weight=None, classes=None):
        """One epoch over (X, y), continuing the weights and the optimizer's state.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_labels)
        sample_weight : array-like of shape (n_samples,), default=None
        classes : array of shape (n_classes,), default=None
            Every class across the calls: required on the first call.

        Returns
        -------
        self
        """
        return self._fit(X, y, sample_weight=sample_weight, incremental=True, classes=classes)

    def predict(self, X):
        """The predicted classes (labels; an indicator matrix for multilabel targets).

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples,) or (n_samples, n_labels)
        """
        out = self._forward(X)
        return self._label_binarizer.inverse_transform(out.ravel() if self.n_outputs_ == 1 else out)

    def predict_proba(self, X):
        """Class probabilities, in the order of ``classes_``.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples, n_classes)
            Rows sum to 1 (binary, multiclass); each label's own probability (multilabel).
        """
        out = self._forward(X)
        if self.n_outputs_ == 1:
            p = out.ravel()
            return np.vstack([1 - p, p]).T
        return out

    def predict_log_proba(self, X):
        """The log of :meth:`predict_proba`.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples, n_classes)
        """
        proba = self.predict_proba(X)
        return np.log(proba, out=proba)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


class SigmaNetRegressor(RegressorMixin, _SigmaNetBase):
    """A multi-layer perceptron regressor with logistic hidden units: MLPRegressor's interface and numbers.

    A drop-in for ``MLPRegressor(activation="logistic", ...)``: an identity
    output with squared error (any real targets, no clipping), the same
    parameters, defaults, starting weights, path and attributes; see
    :class:`SigmaNetClassifier` for the parameters (``class_weight`` aside).

    Parameters
    ----------
    loss : {"squared_error"}, default="squared_error"
        Half the squared error, averaged over the outputs as scikit-learn's
        (``"poisson"`` needs an exponential output, which sigmanet lacks).
    hidden_layer_sizes, activation, solver, alpha, batch_size, learning_rate, learning_rate_init, power_t,\
 max_iter, shuffle, random_state, tol, verbose, warm_start, momentum, nesterovs_momentum, early_stopping,\
 validation_fraction, beta_1, beta_2, epsilon, n_iter_no_change, max_fun, backend, dtype
        As :class:`SigmaNetClassifier`'s. With ``early_stopping`` the
        validation score is R^2 on the held-out rows.

    Attributes
    ----------
    loss_, best_loss_, loss_curve_, validation_scores_, best_validation_score_, t_, coefs_, intercepts_,\
 n_features_in_, feature_names_in_, n_iter_, n_layers_, n_outputs_, out_activation_
        As MLPRegressor's; ``out_activation_`` is "identity".

    Examples
    --------
    >>> import numpy as np
    >>> from sigmanet.sklearn import SigmaNetRegressor
    >>> X = np.linspace(-1, 1, 200).reshape(-1, 1)
    >>> y = 10 + 5 * np.sin(3 * X[:, 0])
    >>> reg = SigmaNetRegressor(hidden_layer_sizes=(16,), solver="lbfgs", backend="numpy", random_state=0).fit(X, y)
    >>> bool(reg.score(X, y) > 0.99), bool(reg.predict(np.array([[3.0]]))[0] > 0)  # no [0, 1] range
    (True, True)
    """

    def __init__(
        self,
        loss="squared_error",
        hidden_layer_sizes=(100,),
        activation="logistic",
        *,
        solver="adam",
        alpha=0.0001,
        batch_size="auto",
        learning_rate="constant",
        learning_rate_init=0.001,
        power_t=0.5,
        max_iter=200,
        shuffle=True,
        random_state=None,
        tol=1e-4,
        verbose=False,
        warm_start=False,
        momentum=0.9,
        nesterovs_momentum=True,
        early_stopping=False,
        validation_fraction=0.1,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        n_iter_no_change=10,
        max_fun=15000,
        backend="auto",
        dtype=None,
    ):
        self.loss = loss
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.backend = backend
        self.dtype = dtype

    def _prepare_targets(self, X, y, incremental, classes, first):
        if self.loss != "squared_error":
            if self.loss == "poisson":
                raise ValueError(
                    "SigmaNetRegressor offers only loss='squared_error': loss='poisson' needs an exponential output "
                    "layer, which sigmanet does not have (use scikit-learn's MLPRegressor for it)"
                )
            raise _bad("loss", self.loss, "'squared_error'")
        X, y = validate_data(
            self,
            X,
            y,
            accept_sparse=["csr", "csc"],
            multi_output=True,
            y_numeric=True,
            dtype=(np.float64, np.float32),
            reset=first,
        )
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        Y = y.reshape(-1, 1) if y.ndim == 1 else y
        return X, Y, None, {"out_activation": "identity"}

    def _val_score(self, out, Y_val, sw_val, fitted):
        if not np.isfinite(out).all():
            return np.nan
        return _r2(Y_val, out, sw_val)

    @available_if(lambda est: est._check_solver())
    def partial_fit(self, X, y, sample_weight=None):
        """One epoch over (X, y), continuing the weights and the optimizer's state.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
        sample_weight : array-like of shape (n_samples,), default=None

        Returns
        -------
        self
        """
        return self._fit(X, y, sample_weight=sample_weight, incremental=True)

    def predict(self, X):
        """The predicted values.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples,) or (n_samples, n_outputs)
        """
        out = self._forward(X)
        return out.ravel() if out.shape[1] == 1 else out

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags
