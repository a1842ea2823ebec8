"""The scikit-learn estimators: scikit-learn's own checks, MLPClassifier's path, and the rest of scikit-learn."""

import pickle
import subprocess
import sys
import warnings

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn", reason="scikit-learn is not installed (pip install 'sigmanet[sklearn]')")

from helpers import usable_backend  # noqa: E402
from sklearn.base import clone  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.neural_network import MLPClassifier  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

from sigmanet.sklearn import SigmaNetClassifier, SigmaNetRegressor  # noqa: E402

CHECK_BACKENDS = ["numpy", "numba", "cupy"]


def estimators():
    for backend in CHECK_BACKENDS:
        yield SigmaNetClassifier(backend=backend, random_state=0)
        yield SigmaNetRegressor(backend=backend, random_state=0)


@parametrize_with_checks(list(estimators()))
def test_scikit_learn_estimator_checks(estimator, check):
    usable_backend(estimator.backend)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        check(estimator)


# -- the same math as MLPClassifier where the two overlap --


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_binary_classifier_takes_mlpclassifiers_path_to_1e_10(backend, rng):
    X = rng.standard_normal((120, 5))
    y = (X[:, 0] * X[:, 1] + 0.3 * X[:, 2] > 0).astype(int)
    common = dict(
        hidden_layer_sizes=(7, 4),
        learning_rate_init=0.3,
        batch_size=len(X),
        shuffle=False,
        tol=0.0,
        n_iter_no_change=10**6,
        warm_start=True,
        random_state=0,
    )
    mlp = MLPClassifier(
        activation="logistic", solver="sgd", momentum=0.0, alpha=0.0, learning_rate="constant", max_iter=1, **common
    )
    ours = SigmaNetClassifier(backend=backend, max_iter=1, **common)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        mlp.fit(X, y)
        ours.fit(X, y)  # sets classes_ and the layout; its weights are replaced next
        ours.coefs_ = [c.copy() for c in mlp.coefs_]  # the same start: MLPClassifier's weights
        ours.intercepts_ = [b.copy() for b in mlp.intercepts_]
        mlp.set_params(max_iter=40).fit(X, y)
        ours.set_params(max_iter=40).fit(X, y)
    for a, b in zip(ours.coefs_ + ours.intercepts_, mlp.coefs_ + mlp.intercepts_, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ours.predict_proba(X), mlp.predict_proba(X), rtol=1e-10, atol=1e-12)
    # the loss curve is the same figure too: log-loss before each epoch's step
    np.testing.assert_allclose(ours.loss_curve_[1:], mlp.loss_curve_[1:], rtol=1e-9)  # [0]: each its own start
    assert ours.n_iter_ == mlp.n_iter_ == 40 and ours.t_ == mlp.t_ == 41 * len(X)


# -- targets and outputs --


def test_multiclass_predict_is_the_argmax_and_probabilities_sum_to_one(rng):
    from sklearn.datasets import load_iris

    X, y = load_iris(return_X_y=True)
    clf = SigmaNetClassifier(backend="numpy", random_state=0, max_iter=100).fit(X / 8, np.array(["a", "b", "c"])[y])
    proba = clf.predict_proba(X / 8)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert list(clf.classes_) == ["a", "b", "c"] and clf.n_outputs_ == 3 and clf.coefs_[-1].shape == (16, 3)
    assert (clf.predict(X / 8) == clf.classes_[proba.argmax(axis=1)]).all()
    assert clf.score(X / 8, np.array(["a", "b", "c"])[y]) > 0.9


def test_multilabel_targets_get_independent_sigmoids(rng):
    X = rng.random((200, 4))
    Y = np.column_stack([X[:, 0] > 0.5, X[:, 1] + X[:, 2] > 1]).astype(int)
    clf = SigmaNetClassifier(backend="numpy", random_state=0, max_iter=300).fit(X, Y)
    proba = clf.predict_proba(X)
    assert proba.shape == (200, 2) and ((proba >= 0) & (proba <= 1)).all()
    assert clf.predict(X).shape == (200, 2) and (clf.predict(X) == Y).mean() > 0.85


def test_regressor_predictions_stay_inside_the_training_range(rng):
    X = rng.random((300, 2))
    y = 10 + 5 * np.sin(3 * X[:, 0]) + X[:, 1]
    reg = SigmaNetRegressor(backend="numpy", random_state=0, max_iter=300).fit(X, y)
    assert reg.y_min_ == y.min() and reg.y_max_ == y.max()
    far = reg.predict(rng.random((50, 2)) * 100 - 50)
    assert (far >= y.min()).all() and (far <= y.max()).all()
    assert reg.score(X, y) > 0.8


def test_partial_fit_needs_classes_first_then_continues():
    X, y = np.array([[0.0, 0], [0, 1], [1, 0], [1, 1]]), np.array([0, 1, 1, 0])
    clf = SigmaNetClassifier(backend="numpy", random_state=0)
    with pytest.raises(ValueError, match="classes must be passed"):
        clf.partial_fit(X, y)
    clf.partial_fit(X[:2], y[:2], classes=[0, 1])
    assert clf.n_iter_ == 1 and list(clf.classes_) == [0, 1]
    clf.partial_fit(X[2:], y[2:])
    assert clf.n_iter_ == 1 and clf.t_ == 4 and len(clf.loss_curve_) == 2  # as MLPClassifier counts


def test_warm_start_continues_from_assigned_weights():
    X, y = np.array([[0.0, 0], [0, 1], [1, 0], [1, 1]] * 10), np.array([0, 1, 1, 0] * 10)
    clf = SigmaNetClassifier(backend="numpy", random_state=0, warm_start=True, max_iter=1, batch_size=None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X, y)
        clf.coefs_ = [np.zeros_like(c) for c in clf.coefs_]
        clf.intercepts_ = [np.zeros_like(b) for b in clf.intercepts_]
        clf.fit(X, y)
    # from all-zero weights, one step leaves every hidden unit's weights equal (symmetry)
    assert np.allclose(clf.coefs_[0], clf.coefs_[0][:, :1])


def test_early_stopping_keeps_the_best_validation_weights(rng):
    X = rng.standard_normal((400, 3))
    y = (X[:, 0] + X[:, 1] ** 2 > 1).astype(int)
    clf = SigmaNetClassifier(
        backend="numpy", random_state=0, early_stopping=True, n_iter_no_change=5, max_iter=500
    ).fit(X, y)
    assert len(clf.validation_scores_) == clf.n_iter_ < 500
    assert clf.best_validation_score_ == max(clf.validation_scores_)


@pytest.mark.parametrize(
    "params,message",
    [
        (dict(hidden_layer_sizes=(0,)), "hidden_layer_sizes"),
        (dict(max_iter=0), "max_iter"),
        (dict(learning_rate_init=-1), "learning_rate_init"),
        (dict(loss="hinge"), "loss must be one of"),
        (dict(batch_size=0), "batch_size"),
        (dict(validation_fraction=1.5), "validation_fraction"),
    ],
)
def test_bad_parameters_are_refused_at_fit_naming_the_parameter(params, message):
    clf = SigmaNetClassifier(backend="numpy", **params)  # __init__ stores, never checks
    with pytest.raises(ValueError, match=message):
        clf.fit(np.ones((4, 2)), [0, 1, 0, 1])


# -- the rest of scikit-learn --


def test_pipeline_cross_validation_grid_search_clone_and_pickle():
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import GridSearchCV, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import MinMaxScaler, StandardScaler

    X, y = load_breast_cancer(return_X_y=True)
    pipe = make_pipeline(StandardScaler(), SigmaNetClassifier(backend="numba", random_state=0, max_iter=30))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        assert cross_val_score(pipe, X, y, cv=3).mean() > 0.93
        grid = GridSearchCV(
            make_pipeline(MinMaxScaler(), SigmaNetClassifier(backend="numpy", random_state=0, max_iter=30)),
            {
                "sigmanetclassifier__hidden_layer_sizes": [(4,), (16,)],
                "sigmanetclassifier__learning_rate_init": [0.5, 2.0],
            },
            cv=3,
            n_jobs=2,
        ).fit(X, y)
    assert grid.best_score_ > 0.93
    twin = clone(grid.best_estimator_)
    assert (
        twin.get_params()["sigmanetclassifier__hidden_layer_sizes"]
        == grid.best_params_["sigmanetclassifier__hidden_layer_sizes"]
    )
    back = pickle.loads(pickle.dumps(grid.best_estimator_))
    np.testing.assert_array_equal(back.predict_proba(X), grid.best_estimator_.predict_proba(X))


def test_a_pickled_estimator_loads_where_cupy_cannot_be_imported(tmp_path):
    X, y = np.array([[0.0, 0], [0, 1], [1, 0], [1, 1]]), np.array([0, 1, 1, 0])
    clf = SigmaNetClassifier(backend="numpy", random_state=0, max_iter=5).fit(X, y)
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


def test_import_sigmanet_does_not_import_scikit_learn():
    code = "import sys, sigmanet; print('sklearn' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"
