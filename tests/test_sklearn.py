"""The scikit-learn estimators: scikit-learn's own checks, MLPClassifier's and MLPRegressor's numbers, and
what a drop-in must survive (refused fits, Ctrl-C, unscaled data, sparse input, the rest of scikit-learn)."""

import pickle
import re
import subprocess
import sys
import warnings

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn", reason="scikit-learn is not installed (pip install 'sigmanet[sklearn]')")

import scipy.sparse as sp  # noqa: E402
from helpers import usable_backend  # noqa: E402
from sklearn.base import clone  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.neural_network import MLPClassifier, MLPRegressor  # noqa: E402
from sklearn.preprocessing import LabelBinarizer  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

import sigmanet.sklearn as sks  # noqa: E402
from sigmanet.sklearn import SigmaNetClassifier, SigmaNetRegressor  # noqa: E402

# numba:fused is numba's generic engine: the auto choice measures and specialises per shape, which on a
# cold cache costs a compile for each of the checks' many shapes (the engines agree: test_backends_agree).
CHECK_BACKENDS = ["numpy", "numba:fused", "cupy"]
CHECK_PARAMS = dict(random_state=0, hidden_layer_sizes=(16,), max_iter=30, learning_rate_init=0.03)


def estimators():
    for backend in CHECK_BACKENDS:
        yield SigmaNetClassifier(backend=backend, **CHECK_PARAMS)
        yield SigmaNetRegressor(backend=backend, **CHECK_PARAMS)


@parametrize_with_checks(list(estimators()))
def test_scikit_learn_estimator_checks(estimator, check):
    usable_backend(estimator.backend.split(":")[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        check(estimator)


def quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return fn(*args, **kwargs)


# -- MLPClassifier's and MLPRegressor's numbers, from the same random_state or the same weights --

N = 120


def table(target, rng):
    X = rng.standard_normal((N, 5))
    if target == "binary":
        y = (X[:, 0] * X[:, 1] + 0.3 * X[:, 2] > 0).astype(int)
    elif target == "multiclass":
        y = (X[:, 0] > 0).astype(int) + (X[:, 1] > 0.5).astype(int)
    elif target == "multilabel":
        y = np.column_stack([X[:, 0] > 0, X[:, 1] + X[:, 2] > 0]).astype(int)
    elif target == "regression":
        y = np.sin(X[:, 0]) + 0.5 * X[:, 1]
    else:  # two outputs: scikit-learn's squared error averages them
        y = np.column_stack([np.sin(X[:, 0]) + 0.5 * X[:, 1], X[:, 2] - X[:, 3]])
    return X, y


TARGETS = ["binary", "multiclass", "multilabel", "regression", "regression2"]
CASES = {
    "sgd-full-batch": dict(solver="sgd", momentum=0.0, alpha=0.0, learning_rate_init=0.3),  # "auto": all 120 rows
    "heavy-ball": dict(solver="sgd", momentum=0.9, nesterovs_momentum=False, alpha=0.01, batch_size=16,
                       learning_rate_init=0.3),
    "nesterov-invscaling": dict(solver="sgd", momentum=0.9, alpha=0.001, batch_size=23, learning_rate="invscaling",
                                learning_rate_init=0.3),
    "adam": dict(solver="adam", alpha=0.0001, batch_size=32, learning_rate_init=0.05),
    "adam-full-batch": dict(solver="adam", alpha=0.1, beta_1=0.8, beta_2=0.95, epsilon=1e-6, learning_rate_init=0.05),
    "sgd-adaptive": dict(solver="sgd", momentum=0.5, alpha=0.0, batch_size=40, learning_rate="adaptive", tol=0.05,
                         n_iter_no_change=2, learning_rate_init=0.3),
    "adam-early-stopping": dict(solver="adam", early_stopping=True, batch_size=30, n_iter_no_change=3,
                                learning_rate_init=0.05),
    "lbfgs": dict(solver="lbfgs", alpha=0.01, max_iter=6),
}  # fmt: skip


def assert_same_fit(ours, mlp, X):
    """coefs_, intercepts_, loss_curve_ and the predictions agree to 1e-10 (float64), and the counters exactly."""
    # L-BFGS's line searches amplify the last bits of a differently ordered sum (numba's): there the
    # weights, of order 1, agree to 1e-10 absolute; the stochastic solvers' to 1e-12
    atol = 1e-10 if mlp.solver == "lbfgs" else 1e-12
    for a, b in zip(ours.coefs_ + ours.intercepts_, mlp.coefs_ + mlp.intercepts_, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=atol)
    if mlp.solver != "lbfgs":
        np.testing.assert_allclose(ours.loss_curve_, mlp.loss_curve_, rtol=1e-10)
        assert ours.best_loss_ == pytest.approx(mlp.best_loss_, rel=1e-10) if mlp.best_loss_ is not None else True
    if getattr(mlp, "validation_scores_", None) is not None:
        np.testing.assert_allclose(ours.validation_scores_, mlp.validation_scores_, rtol=1e-10)
    np.testing.assert_allclose(ours.loss_, mlp.loss_, rtol=1e-10)
    assert (ours.n_iter_, ours.t_, ours.n_layers_, ours.n_outputs_, ours.out_activation_) == (
        mlp.n_iter_,
        mlp.t_,
        mlp.n_layers_,
        mlp.n_outputs_,
        mlp.out_activation_,
    )
    if isinstance(mlp, MLPClassifier):
        np.testing.assert_allclose(ours.predict_proba(X), mlp.predict_proba(X), rtol=1e-10, atol=atol)
        np.testing.assert_array_equal(ours.classes_, mlp.classes_)
    else:
        np.testing.assert_allclose(ours.predict(X), mlp.predict(X), rtol=1e-10, atol=atol)


@pytest.mark.parametrize(
    "backend,weighted",
    [("numpy", False), ("numpy", True), ("numba:fused", True)],
    ids=["numpy", "numpy-sw", "numba-sw"],
)
@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("case", list(CASES))
def test_a_fit_follows_scikit_learns_to_1e_10(case, target, weighted, backend, rng):
    """Same random_state, shuffle=False: the same starting weights (MLPClassifier's draw), the same path."""
    X, y = table(target, rng)
    sw = rng.random(N) * 2 if weighted else None
    params = {**dict(hidden_layer_sizes=(7, 4), shuffle=False, random_state=0, max_iter=6), **CASES[case]}
    regression = target.startswith("regression")
    mlp = quiet((MLPRegressor if regression else MLPClassifier)(activation="logistic", **params).fit, X, y, sw)
    ours = quiet((SigmaNetRegressor if regression else SigmaNetClassifier)(backend=backend, **params).fit, X, y, sw)
    assert_same_fit(ours, mlp, X)


def test_the_default_numba_engine_follows_scikit_learn_too(rng):
    X, y = table("multiclass", rng)
    params = dict(hidden_layer_sizes=(7, 4), shuffle=False, random_state=0, max_iter=12, **CASES["heavy-ball"])
    mlp = quiet(MLPClassifier(activation="logistic", **params).fit, X, y)
    assert_same_fit(quiet(SigmaNetClassifier(backend="numba", **params).fit, X, y), mlp, X)


def mlp_from(estimator_class, X, y, **params):
    """As tests/test_optimizers.py: an MLP set up by one short fit and reset as a fresh fit would be
    (t_ 0, empty loss curve), so that its next warm-started fit is scikit-learn's path from its weights."""
    mlp = estimator_class(activation="logistic", shuffle=False, warm_start=True, max_iter=1, random_state=0, **params)
    quiet(mlp.fit, X, y)
    mlp.t_, mlp.loss_curve_, mlp.best_loss_, mlp._no_improvement_count = 0, [], np.inf, 0
    return mlp


@pytest.mark.parametrize("backend", ["numpy", "numba:fused"])
@pytest.mark.parametrize("case", ["nesterov-invscaling", "adam", "lbfgs"])
def test_a_warm_start_from_assigned_weights_follows_scikit_learn(case, backend, rng):
    X, y = table("multiclass", rng)
    params = {k: v for k, v in CASES[case].items() if k != "max_iter"}
    params.update(hidden_layer_sizes=(6,))
    mlp = mlp_from(MLPClassifier, X, y, **params)
    start = np.random.default_rng(5)  # weights neither estimator would draw
    mlp.coefs_ = [start.uniform(-1, 1, c.shape) for c in mlp.coefs_]
    mlp.intercepts_ = [start.uniform(-1, 1, b.shape) for b in mlp.intercepts_]
    ours = SigmaNetClassifier(backend=backend, shuffle=False, warm_start=True, max_iter=1, random_state=0, **params)
    quiet(ours.fit, X, y)
    ours.coefs_ = [c.copy() for c in mlp.coefs_]
    ours.intercepts_ = [b.copy() for b in mlp.intercepts_]
    if case != "lbfgs":
        ours.t_, ours.loss_curve_, ours.best_loss_, ours._no_improvement_count = 0, [], np.inf, 0
    mlp.set_params(max_iter=10)
    ours.set_params(max_iter=10)
    quiet(mlp.fit, X, y)
    quiet(ours.fit, X, y)
    assert_same_fit(ours, mlp, X)


@pytest.mark.parametrize("case", ["nesterov-invscaling", "adam", "sgd-adaptive"])
def test_warm_started_fits_and_partial_fits_continue_as_scikit_learns(case, rng):
    """fit with warm_start makes a new optimizer (invscaling's first epoch at learning_rate_init again, t_
    counting on); partial_fit keeps the optimizer's state (velocities, Adam's moments, the current rate)."""
    X, y = table("binary", rng)
    params = dict(hidden_layer_sizes=(5,), shuffle=False, random_state=0, max_iter=4, warm_start=True, **CASES[case])
    mlp = MLPClassifier(activation="logistic", **params)
    ours = SigmaNetClassifier(backend="numpy", **params)
    for est in (mlp, ours):
        quiet(est.fit, X, y)
        quiet(est.fit, X, y)
        for lo in (0, 40):
            est.partial_fit(X[lo : lo + 40], y[lo : lo + 40])
    assert_same_fit(ours, mlp, X)
    for est in (mlp, ours):  # t_ is no longer a multiple of the rows: invscaling goes epoch by epoch
        quiet(est.fit, X, y)
    assert_same_fit(ours, mlp, X)
    assert ours.t_ == 3 * 4 * N + 80 and len(ours.loss_curve_) == 3 * 4 + 2


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("kind", ["binary", "multiclass", "multilabel", "one-class"])
def test_the_epochs_validation_score_is_accuracy_score_exactly(kind, weighted, dtype, rng):
    """The early-stopping score, computed on class indices, is accuracy_score of the decoded labels to the
    last bit: outputs near the threshold and tied across classes, string labels, sample weights."""
    m = 257
    if kind == "multilabel":
        y = (rng.random((m, 3)) > 0.5).astype(int)
    else:
        names = np.array(["cat", "dog", "emu", "yak"][: {"binary": 2, "multiclass": 4, "one-class": 1}[kind]])
        y = names[rng.integers(0, len(names), m)]
    clf = SigmaNetClassifier(backend="numpy")
    binarizer = LabelBinarizer().fit(y)  # as the estimator's fit binarizes y
    Y = binarizer.transform(y).astype(dtype)  # the network's dtype
    fitted = {"_label_binarizer": binarizer}
    near = np.nextafter(np.array(0.5, dtype), 1)
    out = rng.choice(np.array([0.0, 0.25, 0.5, near, 0.75, 1.0], dtype), size=Y.shape)  # ties, the threshold
    sw = rng.random(m) * 3 if weighted else None
    want = sks.accuracy_score(clf._labels(Y, fitted), clf._labels(out, fitted), sample_weight=sw)
    assert clf._val_score(out, Y, sw, fitted) == want


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("outputs", [1, 3])
def test_the_regressors_validation_score_is_r2_score_exactly(outputs, weighted, rng):
    """The regressor's early-stopping score is r2_score to the last bit, constant and perfectly predicted
    outputs (r2_score's force_finite cases) included; float32 goes through r2_score itself."""
    m = 203
    Y = rng.standard_normal((m, outputs)) * 3 + 1
    pred = Y + rng.standard_normal((m, outputs))
    if outputs == 3:
        Y[:, 1] = 0.0  # a constant output: zero denominator (its weighted mean is exactly 0, weighted or not)
        pred[:, 2] = Y[:, 2]  # a perfect one: zero numerator
    sw = rng.random(m) * 2 if weighted else None
    reg = SigmaNetRegressor(backend="numpy")
    flat = (lambda a: a.ravel()) if outputs == 1 else (lambda a: a)
    assert reg._val_score(pred, Y, sw, {}) == sks.r2_score(flat(Y), flat(pred), sample_weight=sw)
    Y32, pred32 = Y.astype(np.float32), pred.astype(np.float32)
    assert reg._val_score(pred32, Y32, sw, {}) == sks.r2_score(flat(Y32), flat(pred32), sample_weight=sw)


@pytest.mark.parametrize("side", ["training", "validation"])
@pytest.mark.parametrize("cls", [SigmaNetClassifier, SigmaNetRegressor])
def test_a_split_whose_sample_weights_are_all_zero_is_refused_before_any_work(cls, side, monkeypatch, rng):
    """Early stopping's split leaves one side without weight: a ValueError naming that side, before any
    epoch, and a fitted estimator keeps its fit (the validation side's score would be undefined)."""
    X, y = table("multiclass" if cls is SigmaNetClassifier else "regression", rng)
    est = quiet(cls(backend="numpy", hidden_layer_sizes=(4,), max_iter=2, random_state=0).fit, X, y)
    kept = [c.copy() for c in est.coefs_]
    real = sks.train_test_split

    def split(*arrays, **kwargs):
        parts = list(real(*arrays, **kwargs))
        parts[4 if side == "training" else 5] = np.zeros_like(parts[4 if side == "training" else 5])
        return parts

    monkeypatch.setattr(sks, "train_test_split", split)
    est.set_params(early_stopping=True, warm_start=True)
    with pytest.raises(ValueError, match=f"the {side} split's sample weights are all zero"):
        est.fit(X, y, sample_weight=rng.random(N) + 0.5)
    assert all(np.array_equal(a, b) for a, b in zip(est.coefs_, kept, strict=True))


def test_early_stopping_with_warm_start_continues_as_scikit_learns(rng):
    X, y = table("binary", rng)
    params = dict(hidden_layer_sizes=(5,), shuffle=False, random_state=0, max_iter=6, warm_start=True,
                  **CASES["adam-early-stopping"])  # fmt: skip
    mlp = MLPClassifier(activation="logistic", **params)
    ours = SigmaNetClassifier(backend="numpy", **params)
    for est in (mlp, ours):
        quiet(est.fit, X, y)
    first_epochs = ours.n_iter_
    for est in (mlp, ours):
        quiet(est.fit, X, y)
    assert_same_fit(ours, mlp, X)
    assert len(ours.validation_scores_) == first_epochs + ours.n_iter_  # the scores go on across warm starts


def test_verbose_prints_scikit_learns_lines(rng, capsys):
    X, y = table("multiclass", rng)
    params = dict(hidden_layer_sizes=(5,), shuffle=False, random_state=0, max_iter=30, verbose=True,
                  early_stopping=True, solver="sgd", learning_rate="adaptive", momentum=0.0, learning_rate_init=0.5,
                  n_iter_no_change=2, tol=0.05)  # fmt: skip
    quiet(MLPClassifier(activation="logistic", **params).fit, X, y)
    theirs = capsys.readouterr().out
    quiet(SigmaNetClassifier(backend="numpy", **params).fit, X, y)
    ours = capsys.readouterr().out
    assert "Setting learning rate to" in theirs and "Validation score:" in theirs
    assert ours == theirs


def test_fresh_fits_draw_mlpclassifiers_starting_weights():
    """The one draw both make before training (a fit of one epoch at a zero rate keeps it)."""
    rng = np.random.default_rng(1)
    X, y = rng.random((30, 4)), rng.integers(3, size=30)
    params = dict(hidden_layer_sizes=(6, 5), solver="sgd", learning_rate_init=1e-300, momentum=0.0, alpha=0.0,
                  max_iter=1, random_state=7)  # fmt: skip
    mlp = quiet(MLPClassifier(activation="logistic", **params).fit, X, y)
    ours = quiet(SigmaNetClassifier(backend="numpy", **params).fit, X, y)
    for a, b in zip(ours.coefs_ + ours.intercepts_, mlp.coefs_ + mlp.intercepts_, strict=True):
        np.testing.assert_array_equal(a, b)


# -- targets, outputs and the methods --


def test_targets_get_scikit_learns_outputs(rng):
    X = rng.standard_normal((90, 3))
    labels = np.array(["ant", "bee", "cat"])[(X[:, 0] > 0).astype(int) + (X[:, 1] > 0).astype(int)]
    clf = quiet(SigmaNetClassifier((8,), backend="numpy", random_state=0, solver="lbfgs", max_iter=60).fit, X, labels)
    proba = clf.predict_proba(X)
    assert clf.out_activation_ == "softmax" and list(clf.classes_) == ["ant", "bee", "cat"]
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert (clf.predict(X) == clf.classes_[proba.argmax(axis=1)]).all()
    np.testing.assert_allclose(clf.predict_log_proba(X), np.log(proba))
    binary = quiet(SigmaNetClassifier(backend="numpy", random_state=0, max_iter=5).fit, X, X[:, 0] > 0)
    assert binary.out_activation_ == "logistic" and binary.n_outputs_ == 1 and binary.predict_proba(X).shape == (90, 2)
    Y = np.column_stack([X[:, 0] > 0, X[:, 1] > 0, X[:, 2] > 0]).astype(int)
    multilabel = quiet(SigmaNetClassifier(backend="numpy", random_state=0, max_iter=5).fit, X, Y)
    assert multilabel.out_activation_ == "logistic" and multilabel.predict(X).shape == (90, 3)
    target = 1000 + 50 * X[:, 0]
    reg = SigmaNetRegressor(hidden_layer_sizes=(8,), backend="numpy", random_state=0, solver="lbfgs")
    quiet(reg.fit, X, target)
    assert reg.out_activation_ == "identity" and reg.score(X, target) > 0.95
    half_mse = 0.5 * np.mean((reg.predict(X) - target) ** 2)  # in the targets' units: nothing rescaled
    penalty = 0.5 * reg.alpha * sum((c**2).sum() for c in reg.coefs_) / len(X)
    assert reg.loss_ == pytest.approx(half_mse + penalty, rel=1e-9)


@pytest.mark.parametrize("backend", ["numpy", "numba:fused"])
def test_dtype_follows_x_as_scikit_learn_or_the_dtype_parameter(backend, rng):
    X, y = table("binary", rng)
    params = dict(backend=backend, random_state=0, hidden_layer_sizes=(4,), max_iter=3)
    mlp = quiet(MLPClassifier(activation="logistic", **{k: v for k, v in params.items() if k != "backend"}).fit,
                X.astype(np.float32), y)  # fmt: skip
    as_x = quiet(SigmaNetClassifier(**params).fit, X.astype(np.float32), y)
    forced = quiet(SigmaNetClassifier(dtype="float32", **params).fit, X, y)
    for est in (mlp, as_x, forced):
        assert all(c.dtype == np.float32 for c in est.coefs_ + est.intercepts_)
        assert est.predict_proba(X.astype(np.float32)).dtype == np.float32
        assert est.predict_proba(X).dtype == np.float64  # X @ coefs_ promotes, in scikit-learn
    np.testing.assert_allclose(as_x.predict_proba(X), mlp.predict_proba(X), rtol=1e-4)
    assert quiet(SigmaNetClassifier(**params).fit, X, y).coefs_[0].dtype == np.float64


def test_partial_fit_needs_classes_first_and_is_only_for_stochastic_solvers():
    X, y = np.array([[0.0, 0], [0, 1], [1, 0], [1, 1]]), np.array([0, 1, 1, 0])
    clf = SigmaNetClassifier(backend="numpy", random_state=0)
    with pytest.raises(ValueError, match="classes must be passed"):
        clf.partial_fit(X, y)
    assert not hasattr(clf, "classes_")
    clf.partial_fit(X[:2], y[:2], classes=[0, 1])
    clf.partial_fit(X[2:], y[2:])
    assert clf.n_iter_ == 1 and clf.t_ == 4 and len(clf.loss_curve_) == 2  # as MLPClassifier counts
    assert not hasattr(SigmaNetClassifier(solver="lbfgs"), "partial_fit")
    assert not hasattr(SigmaNetRegressor(solver="lbfgs"), "partial_fit")
    with pytest.raises(ValueError, match="partial_fit does not support early_stopping"):
        SigmaNetRegressor(backend="numpy", early_stopping=True).partial_fit(X, y)


def test_other_activations_and_losses_are_refused_with_what_to_use():
    X, y = np.ones((4, 2)), [0, 1, 0, 1]
    with pytest.raises(ValueError, match="only activation='logistic'.*MLPClassifier"):
        SigmaNetClassifier(activation="relu").fit(X, y)
    with pytest.raises(ValueError, match="poisson.*exponential output"):
        SigmaNetRegressor(loss="poisson").fit(X, y)


# -- a refused fit changes nothing; a Ctrl-C keeps the last completed epoch --


def fitted_state(est):
    """Every fitted attribute (the names ending or starting with an underscore), copied."""
    state = {}
    for k, v in vars(est).items():
        if not (k.endswith("_") or k.startswith("_")):
            continue  # a parameter: set_params may change it
        if k == "_label_binarizer":
            v = pickle.dumps(v)
        elif k == "_optimizer_state" and v is not None:
            v = [v.rule, v.step] + [a for name in sorted(v.slots) for a in v.slots[name]]
        state[k] = [a.copy() if isinstance(a, np.ndarray) else a for a in v] if isinstance(v, list) else v
        if isinstance(v, np.ndarray):
            state[k] = v.copy()
    return state


def assert_same_state(a, b):
    assert a.keys() == b.keys()
    for k in a:
        x, y = a[k], b[k]
        if isinstance(x, list):
            assert len(x) == len(y) and all(same(p, q) for p, q in zip(x, y)), k
        else:
            assert same(x, y), k


def same(x, y):
    if isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
        return np.array_equal(x, y, equal_nan=np.asarray(x).dtype.kind == "f")
    return x == y or (x != x and y != y)


REFUSALS = [
    ("learning_rate_init=inf", dict(learning_rate_init=np.inf), None, "learning_rate_init"),
    ("activation", dict(activation="tanh"), None, "activation"),
    ("hidden_layer_sizes=None", dict(hidden_layer_sizes=None), None, "hidden_layer_sizes"),
    ("momentum", dict(momentum=1.5), None, "momentum"),
    ("batch_size", dict(batch_size=0), None, "batch_size"),
    ("validation_fraction", dict(early_stopping=True, validation_fraction=0.001), None, "validation set is too small"),
    ("class_weight", dict(class_weight={7: 2.0}), None, "class_weight"),
    ("backend", dict(backend="abacus"), None, "abacus"),
    ("features", dict(warm_start=True), lambda X, y: (X[:, :2], y), "features"),
    ("unseen classes", dict(warm_start=True), lambda X, y: (X, y + 5), "same classes"),
    ("a NaN", dict(), lambda X, y: (np.where(X > 1.5, np.nan, X), y), "NaN"),
    ("sample_weight", dict(), lambda X, y: (X, y, -np.ones(len(y))), "sample_weight"),
    ("divergence", dict(learning_rate_init=1e300, solver="sgd", momentum=0.0),
     lambda X, y: (X * 1e5, y), "non-finite"),
]  # fmt: skip


@pytest.mark.parametrize("change,params,data,message", REFUSALS, ids=[r[0] for r in REFUSALS])
def test_a_refused_fit_leaves_a_fitted_estimator_as_it_was(change, params, data, message, rng):
    X, y = table("multiclass", rng)
    clf = quiet(SigmaNetClassifier(backend="numpy", random_state=0, hidden_layer_sizes=(5,), max_iter=20).fit, X, y)
    before, predicted, good = fitted_state(clf), clf.predict_proba(X), clf.get_params()
    args = (X, y) if data is None else data(X, y)
    with pytest.raises(ValueError, match=message):
        clf.set_params(**params).fit(*args)
    assert_same_state(fitted_state(clf), before)
    np.testing.assert_array_equal(clf.set_params(**good).predict_proba(X), predicted)


def test_a_regressor_target_that_overflows_is_refused_and_changes_nothing(rng):
    X, y = table("regression", rng)
    reg = quiet(SigmaNetRegressor(backend="numpy", random_state=0, hidden_layer_sizes=(5,), max_iter=5).fit, X, y)
    before = fitted_state(reg)
    with pytest.raises(ValueError, match="non-finite"):
        quiet(reg.fit, X, np.where(y > 0, 1e300, -1e300))
    assert_same_state(fitted_state(reg), before)


class Interrupt:
    """Raises KeyboardInterrupt in the trainer's run call number ``at`` (1-based), after half its steps
    have run, so that the network's own state has moved past the last completed epoch."""

    def __init__(self, at):
        self.at, self.calls = at, 0

    def __call__(self, run, trainer, start, iterations):
        self.calls += 1
        if self.calls == self.at:
            run(trainer, start, max(1, iterations // 2))
            raise KeyboardInterrupt
        return run(trainer, start, iterations)


def interrupt_at(monkeypatch, call):
    """Interrupts the NumPy backend's trainer (the tests' estimators train on it) at its run call ``call``."""
    from sigmanet.backends.reference import ReferenceTrainer

    hook, run = Interrupt(call), ReferenceTrainer.run
    monkeypatch.setattr(ReferenceTrainer, "run", lambda self, start, iterations: hook(run, self, start, iterations))


@pytest.mark.parametrize("warm_start", [False, True])
@pytest.mark.parametrize("solver", ["sgd", "adam-early-stopping"])
def test_ctrl_c_keeps_the_last_completed_epoch_with_every_attribute_agreeing(solver, warm_start, rng, monkeypatch):
    X, y = table("binary", rng)
    params = dict(CASES[solver]) if solver != "sgd" else dict(solver="sgd", batch_size=16, learning_rate_init=0.3)
    params.update(hidden_layer_sizes=(5,), shuffle=False, random_state=0, tol=0.0, n_iter_no_change=100,
                  warm_start=warm_start)  # fmt: skip
    first = quiet(SigmaNetClassifier(backend="numpy", max_iter=3, **params).fit, X, y)
    reference = clone(first).set_params(max_iter=3)
    if warm_start:
        quiet(reference.fit, X, y)
    quiet(reference.set_params(max_iter=4).fit, X, y)  # what 4 completed epochs give
    # a Network.fit runs one trainer call per epoch here (the pieces are far below half a second)
    interrupt_at(monkeypatch, 5)
    with pytest.warns(UserWarning, match="Training interrupted by user"):
        first.set_params(max_iter=50).fit(X, y)
    assert first.n_iter_ == 4 and first.t_ == reference.t_
    assert_same_fit(first, reference, X)


def test_ctrl_c_inside_an_epochs_bookkeeping_keeps_the_epoch_before(rng, monkeypatch):
    X, y = table("binary", rng)
    params = dict(hidden_layer_sizes=(5,), shuffle=False, random_state=0, max_iter=30, **CASES["adam-early-stopping"])
    params.update(tol=0.0, n_iter_no_change=100)
    reference = quiet(SigmaNetClassifier(backend="numpy", **dict(params, max_iter=3)).fit, X, y)
    calls = []
    real = SigmaNetClassifier._val_score

    def score_then_interrupt(self, *args):
        calls.append(1)
        if len(calls) == 4:  # epoch 4: its loss is already on the curve, its score not yet
            raise KeyboardInterrupt
        return real(self, *args)

    monkeypatch.setattr(SigmaNetClassifier, "_val_score", score_then_interrupt)
    with pytest.warns(UserWarning, match="interrupted"):
        clf = SigmaNetClassifier(backend="numpy", **params).fit(X, y)
    assert len(clf.loss_curve_) == len(clf.validation_scores_) == clf.n_iter_ == 3
    assert_same_fit(clf, reference, X)


def test_ctrl_c_before_the_first_epoch_changes_nothing_and_propagates(rng, monkeypatch):
    X, y = table("binary", rng)
    clf = quiet(SigmaNetClassifier(backend="numpy", random_state=0, hidden_layer_sizes=(4,), max_iter=3).fit, X, y)
    before = fitted_state(clf)
    interrupt_at(monkeypatch, 1)
    with pytest.raises(KeyboardInterrupt):
        clf.fit(X, y)
    assert_same_state(fitted_state(clf), before)


def test_ctrl_c_in_lbfgs_keeps_the_last_completed_iteration(rng, monkeypatch):
    X, y = table("multiclass", rng)
    params = dict(hidden_layer_sizes=(5,), solver="lbfgs", random_state=0, tol=0.0)
    reference = quiet(SigmaNetClassifier(backend="numpy", max_iter=6, **params).fit, X, y)
    real, calls = sks.loss_and_gradients, []

    def evaluate(*args, **kwargs):
        calls.append(1)
        if len(calls) == 9:  # a line search evaluation in iteration 7 or so
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(sks, "loss_and_gradients", evaluate)
    with pytest.warns(UserWarning, match="interrupted"):
        clf = SigmaNetClassifier(backend="numpy", max_iter=50, **params).fit(X, y)
    monkeypatch.setattr(sks, "loss_and_gradients", real)
    ref = quiet(SigmaNetClassifier(backend="numpy", max_iter=clf.n_iter_, **params).fit, X, y)
    assert 1 <= clf.n_iter_ < 9 and reference.n_iter_ == 6
    assert_same_fit(clf, ref, X)


# -- what a user is told --


def test_unscaled_data_gets_a_warning_that_names_the_scaler():
    from sklearn.datasets import load_breast_cancer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = load_breast_cancer(return_X_y=True)
    clf = SigmaNetClassifier(backend="numba:fused", random_state=0, hidden_layer_sizes=(32,), max_iter=20)
    with pytest.warns(ConvergenceWarning, match=r"saturated.*not scaled.*Pipeline.*StandardScaler") as caught:
        clf.fit(X, y)
    assert [w.message.cause for w in caught if w.category is ConvergenceWarning] == ["saturated"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        make_pipeline(StandardScaler(), clone(clf)).fit(X, y)
    assert [getattr(w.message, "cause", None) for w in caught] == [None]  # only "maximum iterations reached"
    assert "Maximum iterations (20)" in str(caught[0].message)


@pytest.mark.parametrize(
    "rate,advice", [(1e-9, "far too small.*raise it"), (1e8, "saturated.*learning_rate_init=1e\\+08.*lower it")]
)
def test_a_stalled_fit_is_told_what_fits_what_happened(rate, advice):
    from sklearn.datasets import load_iris
    from sklearn.preprocessing import StandardScaler

    X, y = load_iris(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    clf = SigmaNetClassifier(backend="numpy", random_state=0, hidden_layer_sizes=(8,), learning_rate_init=rate)
    with pytest.warns(ConvergenceWarning, match=advice) as caught:
        clf.fit(X, y)
    assert len([w for w in caught if w.category is ConvergenceWarning]) == 1
    assert "max_iter" not in str(caught[0].message)


def test_unscaled_iris_with_default_parameters_scores_as_mlpclassifier():
    """The silent 0.333 of the old defaults is gone: the defaults are scikit-learn's, and so is the result."""
    from sklearn.datasets import load_iris

    X, y = load_iris(return_X_y=True)  # 150 rows: "auto" batches are the whole table, so shuffling is moot
    mlp = quiet(MLPClassifier(activation="logistic", random_state=0).fit, X, y)
    ours = quiet(SigmaNetClassifier(random_state=0, backend="numba:fused").fit, X, y)
    assert ours.score(X, y) == mlp.score(X, y) > 0.95
    np.testing.assert_allclose(ours.loss_curve_, mlp.loss_curve_, rtol=1e-9)


def test_importing_without_scikit_learn_names_the_extra():
    code = "import sys; sys.modules['sklearn'] = None\nimport sigmanet.sklearn"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 1 and "ImportError" in out.stderr
    assert "pip install 'sigmanet[sklearn]'" in out.stderr


def test_import_sigmanet_does_not_import_scikit_learn():
    code = "import sys, sigmanet; print('sklearn' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"


# -- class_weight and sparse input --


def test_class_weight_is_per_class_sample_weight(rng):
    X, y = table("multiclass", rng)
    params = dict(backend="numpy", random_state=0, hidden_layer_sizes=(5,), max_iter=5, shuffle=False)
    weights = {0: 3.0, 2: 0.5}
    a = quiet(SigmaNetClassifier(class_weight=weights, **params).fit, X, y)
    b = quiet(SigmaNetClassifier(**params).fit, X, y, np.array([weights.get(c, 1.0) for c in y]))
    assert_same_fit(a, b, X)
    counts = np.bincount(y)
    c = quiet(SigmaNetClassifier(class_weight="balanced", **params).fit, X, y)
    d = quiet(SigmaNetClassifier(**params).fit, X, y, (N / (3 * counts))[y])
    assert_same_fit(c, d, X)
    with pytest.raises(ValueError, match="multilabel"):
        SigmaNetClassifier(class_weight="balanced", **params).fit(X, np.column_stack([y == 0, y == 1]).astype(int))


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("kind", ["csr", "csc"])
def test_sparse_input_trains_and_predicts_as_dense(kind, backend):
    rng = np.random.default_rng(3)
    dense = rng.random((150, 40)) * (rng.random((150, 40)) < 0.1)
    y = (dense[:, :20].sum(axis=1) > dense[:, 20:].sum(axis=1)).astype(int)
    X = sp.csr_matrix(dense) if kind == "csr" else sp.csc_matrix(dense)
    params = dict(backend=backend, random_state=0, hidden_layer_sizes=(8,), max_iter=10, batch_size=32)
    a = quiet(SigmaNetClassifier(**params).fit, X, y)
    b = quiet(SigmaNetClassifier(**params).fit, dense, y)
    for u, v in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_, strict=True):
        np.testing.assert_allclose(u, v, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(a.predict_proba(X), b.predict_proba(dense), rtol=1e-10)


# -- the rest of scikit-learn --


@pytest.mark.slow  # GridSearchCV(n_jobs=2) starts two worker processes: about 15 s here
def test_pipeline_cross_validation_grid_search_clone_and_pickle():
    from sklearn.datasets import load_iris
    from sklearn.model_selection import GridSearchCV, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = load_iris(return_X_y=True)
    pipe = make_pipeline(StandardScaler(), SigmaNetClassifier((8,), backend="numpy", random_state=0, solver="lbfgs"))
    assert quiet(cross_val_score, pipe, X, y, cv=3).mean() > 0.9
    grid = quiet(
        GridSearchCV(pipe, {"sigmanetclassifier__hidden_layer_sizes": [(4,), (16,)]}, cv=3, n_jobs=2).fit, X, y
    )
    assert grid.best_score_ > 0.9
    twin = clone(grid.best_estimator_)
    assert (
        twin.get_params()["sigmanetclassifier__hidden_layer_sizes"]
        == grid.best_params_["sigmanetclassifier__hidden_layer_sizes"]
    )
    back = pickle.loads(pickle.dumps(grid.best_estimator_))
    np.testing.assert_array_equal(back.predict_proba(X), grid.best_estimator_.predict_proba(X))


def test_a_pickled_estimator_continues_as_the_original(rng):
    X, y = table("multiclass", rng)
    partial = quiet(SigmaNetClassifier((6,), backend="numpy", random_state=0, max_iter=3).fit, X, y)
    again = pickle.loads(pickle.dumps(partial))  # the optimizer's state travels too: partial_fit goes on alike
    for est in (partial, again):
        est.partial_fit(X, y)
    assert_same_fit(again, partial, X)
    assert partial._optimizer_state.step == 3 * 1 + 1  # Adam's steps: one full batch per epoch


@pytest.mark.slow  # a fresh process
def test_a_pickled_estimator_loads_where_cupy_cannot_be_imported(tmp_path):
    X, y = np.array([[0.0, 0], [0, 1], [1, 0], [1, 1]]), np.array([0, 1, 1, 0])
    clf = quiet(SigmaNetClassifier(backend="numpy", random_state=0, max_iter=5).fit, X, y)
    (tmp_path / "clf.pkl").write_bytes(pickle.dumps(clf))
    code = (
        "import sys; sys.modules['cupy'] = None\n"  # any import of cupy now fails
        "import pickle, numpy as np\n"
        f"clf = pickle.loads(open({str(tmp_path / 'clf.pkl')!r}, 'rb').read())\n"
        "assert all(type(c) is np.ndarray for c in clf.coefs_)\n"
        "print(clf.predict(np.array([[0.0, 1.0]]))[0])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(clf.predict(np.array([[0.0, 1.0]]))[0])


def test_the_benchmark_runs_quick_and_follows_mlpclassifier():
    """benchmarks/sklearn_vs_mlp.py --quick is its smoke run (the timing runs are made on a quiet machine)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "benchmarks" / "sklearn_vs_mlp.py"
    spec = importlib.util.spec_from_file_location("sklearn_vs_mlp", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    rows = bench.main(["--quick", "--tables", "digits", "--batches", "200", "--backends", "numpy,numba:fused"])
    assert len(rows) == 2 * 3  # solvers x (MLPClassifier and two backends)
    assert all(r["seconds_per_epoch"] > 0 and r["loss_curve_gap"] < 1e-9 for r in rows)


@pytest.mark.parametrize(
    "labels,class_weight,unknown",
    [
        (["ant", "bee", "cat"], {"beetle": 5.0}, "['beetle']"),  # cut to "bee" by the labels' width
        (["ant", "bee"], {"beetle": 5.0}, "['beetle']"),  # was an IndexError
        ([0, 1, 2], {1.5: 5.0}, "[1.5]"),  # truncated to 1, then weighted class 2
        ([0, 1, 2], {"1": 5.0}, "['1']"),
    ],
)
def test_class_weight_keys_must_equal_a_class_as_they_are(labels, class_weight, unknown):
    """Found by a review: keys were cast to the classes' dtype before the check."""
    rng = np.random.RandomState(0)
    X, y = rng.randn(60, 3), np.array(labels)[np.arange(60) % len(labels)]
    clf = SigmaNetClassifier(hidden_layer_sizes=(4,), max_iter=3, random_state=0, backend="numpy")
    with pytest.raises(ValueError, match=re.escape(f"class_weight names classes {unknown} that are not among")):
        clf.set_params(class_weight=class_weight).fit(X, y)
    assert not hasattr(clf, "coefs_")
    heavy = dict.fromkeys([labels[-1]], 5.0)
    weighted = clf.set_params(class_weight=heavy, shuffle=False).fit(X, y).coefs_[0]
    by_rows = clf.set_params(class_weight=None).fit(X, y, sample_weight=np.where(y == labels[-1], 5.0, 1.0)).coefs_[0]
    assert np.array_equal(weighted, by_rows)  # the weight lands on the class it names


def test_a_fit_that_learned_gets_no_stuck_warning_as_mlpclassifier_gives_none():
    """Found by a review: L-BFGS on standardised digits converged to a training score of 1.0 and was
    still told its units were saturated, with an input-scaling cure (and, elsewhere, a learning rate
    cure for a solver that has none); early stopping on a split scored perfectly from epoch 1 was told
    it stalled."""
    from sklearn.datasets import load_digits, load_iris
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier
    from sklearn.preprocessing import StandardScaler

    digits = load_digits()
    iris = load_iris()
    cases = [
        (StandardScaler().fit_transform(digits.data), digits.target, dict(solver="lbfgs", hidden_layer_sizes=(20,))),
        (
            StandardScaler().fit_transform(iris.data),
            iris.target == 0,
            dict(early_stopping=True, learning_rate_init=0.01, batch_size=10, shuffle=False),
        ),
    ]
    for X, y, params in cases:
        for estimator in (
            MLPClassifier(activation="logistic", **params),
            SigmaNetClassifier(backend="numpy", **params),
        ):
            with warnings.catch_warnings():
                warnings.simplefilter("error", ConvergenceWarning)
                estimator.set_params(random_state=0).fit(X, y)
            assert estimator.score(X, y) > 0.99
    # unscaled inputs that keep the network from learning are still named
    with pytest.warns(ConvergenceWarning, match="saturated.*the inputs are not scaled"):
        SigmaNetClassifier(backend="numpy", hidden_layer_sizes=(20,), random_state=0, max_iter=20).fit(
            digits.data * 100, digits.target
        )
