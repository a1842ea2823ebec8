"""Training as people train today: optimizers, L2, schedules, sample and class weights, output layers.

Every engine agrees with the NumPy backend on every option (1e-9 in float64,
1e-4 in float32); the NumPy backend follows scikit-learn's MLPClassifier and
MLPRegressor (an outside oracle) to 1e-10 from the same starting weights;
optimizer state is checkpointed and resumes bit for bit; bad options fail
before any work, naming the argument.
"""

import warnings

import numpy as np
import pytest
from reference import random_problem

import sigmanet as sn

TOL = {"float64": dict(rtol=1e-9, atol=1e-12), "float32": dict(rtol=1e-4, atol=1e-5)}

# Each option's every value appears in some case, with and without bias, full batch and
# mini-batches, shuffled and not (a full product would be hundreds of fits per engine).
CASES = [
    dict(output="sigmoid", loss="bce", optimizer="momentum", momentum=0.9, batch_size=8),
    dict(output="sigmoid", loss="mse", optimizer="nesterov", momentum=0.5, alpha=0.01, bias=True),
    dict(output="sigmoid", loss="bce", optimizer="adam", alpha=0.1, batch_size=16, shuffle=3, bias=True),
    dict(output="softmax", optimizer="adam", beta_1=0.8, beta_2=0.99, batch_size=10, weighted=True),
    dict(output="softmax", optimizer="sgd", schedule="invscaling", power_t=0.3, batch_size=7, bias=True),
    dict(output="identity", optimizer="momentum", alpha=0.001, weighted=True, bias=True, learning_rate=0.05),
    dict(output="identity", optimizer="adam", schedule="invscaling", batch_size=9, shuffle=True),
    dict(output="sigmoid", loss="mse", optimizer="sgd", weighted=True, batch_size=12, shuffle=5, alpha=0.05),
    dict(output="sigmoid", loss="bce", optimizer="adam", schedule="adaptive", tol=10.0, n_iter_no_change=1),
    dict(output="softmax", optimizer="nesterov", class_weight="balanced", bias=True, average_loss=True),
]


def problem(rng, case, layers, n=40):
    X, y = random_problem(rng, n, layers)
    if case["output"] == "softmax":
        y = np.eye(layers[-1])[rng.integers(layers[-1], size=n)]
    elif case["output"] == "identity":
        y = rng.standard_normal((n, layers[-1])) * 3
    sw = rng.random(n) * 2 if case.get("weighted") else None
    return X, y, sw


def fit_options(case):
    opts = {k: v for k, v in case.items() if k not in ("output", "bias", "weighted")}
    return dict(dict(learning_rate=0.5, reduction="mean"), **opts)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("case", CASES, ids=[f"case{i}" for i in range(len(CASES))])
def test_every_engine_agrees_with_numpy_on_every_option(engine, rng, case, dtype):
    layers = [5, 9, 3]
    X, y, sw = problem(rng, case, layers)
    nets = {}
    for name in ("numpy", engine):
        net = sn.Network(layers, backend=name, dtype=dtype, seed=7, bias=case.get("bias", False), output=case["output"])
        if case.get("bias"):
            net.set_weights(net.weights, [np.linspace(-0.5, 0.5, n) for n in layers[1:]])
        opts = fit_options(case)
        if dtype == "float32" and opts.get("optimizer") == "adam":
            # Adam divides by sqrt(v): where a gradient is near 0, float32's rounding decides the step's
            # sign, and runs drift apart chaotically; a larger epsilon and a smaller rate keep the run
            # well conditioned
            opts.update(epsilon=1e-2, learning_rate=0.05)
        hist = net.fit(X.astype(dtype), y, iterations=60, report_every=20, sample_weight=sw, **opts)
        nets[name] = (net, hist)
    (ref, h_ref), (net, h) = nets["numpy"], nets[engine]
    assert h.iterations == h_ref.iterations and h.options == h_ref.options
    np.testing.assert_allclose(h.errors, h_ref.errors, **TOL[dtype])
    np.testing.assert_allclose(h.losses, h_ref.losses, **TOL[dtype])
    for got, want in zip(net.weights + (net.biases or []), ref.weights + (ref.biases or []), strict=True):
        np.testing.assert_allclose(got, want, **TOL[dtype])
    for name, arrays in ref.optimizer_state.slots.items():
        for got, want in zip(net.optimizer_state.slots[name], arrays, strict=True):
            np.testing.assert_allclose(got, want, **TOL[dtype])
    assert net.optimizer_state.step == ref.optimizer_state.step == 60


@pytest.mark.parametrize("optimizer", ["momentum", "adam"])
def test_a_fit_continued_from_a_checkpoint_is_bit_for_bit_one_fit(engine, tmp_path, rng, optimizer):
    layers = [4, 6, 2]
    X, y = random_problem(rng, 30, layers)
    opts = dict(optimizer=optimizer, learning_rate=0.1, reduction="mean", batch_size=7, shuffle=1, alpha=0.01)
    one = sn.Network(layers, backend=engine, seed=2, bias=True)
    one.fit(X, y, iterations=50, report_every=10, **opts)
    two = sn.Network(layers, backend=engine, seed=2, bias=True)
    two.fit(X, y, iterations=23, report_every=10, **opts)
    two.save(tmp_path / "m.npz")
    three = sn.load(tmp_path / "m.npz", backend=engine)
    assert three.optimizer_state.step == 23 and three.fit_options["optimizer"] == optimizer
    three.fit(X, y, iterations=27, report_every=10)  # every option from the checkpoint
    for a, b in zip(three.weights + three.biases, one.weights + one.biases, strict=True):
        assert np.array_equal(a, b)


def test_a_checkpoint_continues_on_another_backend_within_tolerance(tmp_path, rng):
    layers = [4, 6, 2]
    X, y = random_problem(rng, 30, layers)
    opts = dict(optimizer="adam", learning_rate=0.05, reduction="mean", batch_size=10)
    one = sn.Network(layers, backend="numpy", seed=2)
    one.fit(X, y, iterations=40, **opts)
    two = sn.Network(layers, backend="numba", seed=2)
    two.fit(X, y, iterations=20, **opts)
    two.save(tmp_path / "m.npz")
    three = sn.load(tmp_path / "m.npz", backend="numpy")
    three.fit(X, y, iterations=20)
    for a, b in zip(three.weights, one.weights, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("version", ["0.1.0", "0.2.0"])
def test_files_of_earlier_versions_load_and_continue_with_the_sgd_they_were_trained_with(version):
    from pathlib import Path

    from sigmanet.datasets import tutorial_table

    data = Path(__file__).parent / "data"
    seed_net = sn.load(data / f"seed-net-{version}.npz", backend="numpy")
    fresh = sn.Network([3, 4, 1], backend="numpy", seed=1, init="legacy")
    fresh.fit(*tutorial_table(), iterations=500, report_every=100)
    assert seed_net.iteration == 500 and seed_net.output == "sigmoid" and seed_net.optimizer_state is None
    # The files were trained on another machine: its OpenBLAS kernels (SkylakeX there, Haswell on a CPU
    # without AVX-512) may round the products' sums differently in the last bit, so not bit for bit
    for a, b in zip(seed_net.weights, fresh.weights, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
    biased = sn.load(data / f"biased-net-{version}.npz", backend="numpy")
    assert biased.fit_options["loss"] == "bce" and biased.fit_options["batch_size"] == 8
    hist = biased.fit(np.random.default_rng(0).random((40, 5)) * 10, np.ones((40, 2)), iterations=8, report_every=8)
    assert hist.options["optimizer"] == "sgd" and hist.options["loss"] == "bce" and hist.options["learning_rate"] == 0.5


def test_a_continued_fit_takes_every_option_it_is_not_given(tmp_path, rng):
    """The new user's case: trained with options, saved, loaded, fit again without them."""
    X, y = random_problem(rng, 60, [10, 16, 1])
    net = sn.Network([10, 16, 1], backend="numpy", bias=True, seed=0)
    net.fit(X, y, iterations=300, reduction="mean", learning_rate=2, loss="bce", report_every=300)
    net.save(tmp_path / "m.npz")
    ref = sn.Network.from_state(net.get_state(), backend="numpy")
    ref.fit(X, y, iterations=300, reduction="mean", learning_rate=2, loss="bce", report_every=300)
    loaded = sn.load(tmp_path / "m.npz", backend="numpy")
    hist = loaded.fit(X, y, iterations=300, report_every=300)
    assert hist.options["loss"] == "bce" and hist.options["learning_rate"] == 2 and hist.options["reduction"] == "mean"
    for a, b in zip(loaded.weights, ref.weights, strict=True):
        assert np.array_equal(a, b)
    explicit = loaded.fit(X, y, iterations=10, learning_rate=0.5, report_every=10)
    assert explicit.options["learning_rate"] == 0.5 and explicit.options["loss"] == "bce"
    assert loaded.fit_options["learning_rate"] == 0.5


def test_the_loss_comes_from_the_training_pass_and_matches_its_definition(rng):
    layers = [4, 5, 3]
    X, y = random_problem(rng, 25, layers)
    y = np.eye(3)[rng.integers(3, size=25)]
    sw = rng.random(25)
    net = sn.Network(layers, backend="numpy", seed=3, output="softmax", bias=True)
    out = net.predict(X)
    alpha = 0.2
    hist = net.fit(X, y, iterations=1, sample_weight=sw, alpha=alpha, reduction="mean")
    p = np.clip(out, np.finfo(float).eps, 1 - np.finfo(float).eps)
    data = -(y * np.log(p)).sum(axis=1)
    start = sn.Network(layers, backend="numpy", seed=3, output="softmax", bias=True)
    penalty = 0.5 * alpha * sum((w**2).sum() for w in start.weights)
    assert hist.losses[0] == pytest.approx(((data * sw).sum() + penalty) / sw.sum(), rel=1e-12)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(optimizer="rmsprop"), "optimizer must be one of"),
        (dict(optimizer="adam", beta_1=1.0), r"beta_1 must be a finite number in \[0, 1\)"),
        (dict(optimizer="adam", beta_2=-0.1), "beta_2"),
        (dict(alpha=-1), r"alpha must be a finite number in \[0, inf\)"),
        (dict(momentum=1.5), "momentum"),
        (dict(epsilon=0), "epsilon"),
        (dict(schedule="cosine"), "schedule must be one of"),
        (dict(sample_weight=np.ones(5)), "sample_weight must hold one weight per row of X"),
        (dict(sample_weight=-np.ones(20)), "sample_weight must be at least 0"),
        (dict(sample_weight=np.zeros(20)), "sample_weight is 0 for every row"),
        (dict(sample_weight=np.full(20, np.nan)), "sample_weight holds NaN"),
        (dict(class_weight={5: 2.0}), "class_weight names class 5, which y does not have"),
        (dict(class_weight="even"), "class_weight must be a dict .*, 'balanced' or None"),
        (dict(loss="cross_entropy"), "loss must be one of .* for output='sigmoid'"),
    ],
)
def test_bad_options_fail_before_any_work_naming_the_argument(rng, kwargs, match):
    X, y = rng.random((20, 3)), (rng.random((20, 1)) > 0.5).astype(float)
    net = sn.Network([3, 2, 1], backend="numpy", seed=0)
    before = net.get_state()
    with pytest.raises((ValueError, TypeError), match=match):
        net.fit(X, y, iterations=5, **kwargs)
    after = net.get_state()
    assert after["iteration"] == 0 and after["optimizer"] is None and after["fit_options"] == {}
    assert all(np.array_equal(a, b) for a, b in zip(after["weights"], before["weights"], strict=True))


def test_softmax_needs_two_outputs_and_one_hot_rows():
    with pytest.raises(ValueError, match="output='softmax' needs at least 2 output columns"):
        sn.Network([3, 4, 1], output="softmax")
    net = sn.Network([3, 4, 2], backend="numpy", output="softmax")
    with pytest.raises(ValueError, match="each row of y must sum to 1"):
        net.fit(np.ones((4, 3)), np.ones((4, 2)), iterations=1)


def test_class_weights_are_per_class_sample_weights(rng):
    X, labels = rng.random((30, 3)), rng.integers(3, size=30)
    y = np.eye(3)[labels]
    table = {0: 2.0, 1: 0.5, 2: 1.0}
    a = sn.Network([3, 4, 3], backend="numpy", seed=1, output="softmax")
    b = sn.Network([3, 4, 3], backend="numpy", seed=1, output="softmax")
    a.fit(X, y, iterations=20, class_weight=table, reduction="mean")
    b.fit(X, y, iterations=20, sample_weight=np.array([table[c] for c in labels]), reduction="mean")
    for wa, wb in zip(a.weights, b.weights, strict=True):
        assert np.array_equal(wa, wb)
    counts = np.bincount(labels, minlength=3)
    c = sn.Network([3, 4, 3], backend="numpy", seed=1, output="softmax")
    c.fit(X, y, iterations=20, class_weight="balanced", reduction="mean")
    d = sn.Network([3, 4, 3], backend="numpy", seed=1, output="softmax")
    d.fit(X, y, iterations=20, sample_weight=(30 / (3 * counts))[labels], reduction="mean")
    for wc, wd in zip(c.weights, d.weights, strict=True):
        np.testing.assert_allclose(wc, wd, rtol=1e-14)


def test_an_identity_output_regresses_unbounded_targets(rng):
    X = rng.random((200, 2))
    y = 10 + 5 * np.sin(3 * X[:, :1]) + X[:, 1:]
    net = sn.Network([2, 16, 1], backend="numpy", seed=0, output="identity", bias=True)
    net.fit(X, y, iterations=3000, optimizer="adam", learning_rate=0.02, reduction="mean", report_every=3000)
    pred = net.predict(X)
    assert 1 - ((pred - y) ** 2).sum() / ((y - y.mean()) ** 2).sum() > 0.9  # R^2
    assert pred.max() > 1  # no [0, 1] range


# -- the outside oracle: scikit-learn's MLP, from the same starting weights --

sklearn = pytest.importorskip("sklearn", reason="scikit-learn is not installed (pip install 'sigmanet[sklearn]')")


def mlp_from(estimator_class, X, y, **params):
    """A scikit-learn MLP with its layout set up by one short fit, then reset as a fresh fit would be
    (t_ 0, empty loss curve), so the next warm-started fit is scikit-learn's path from its weights."""
    from sklearn.exceptions import ConvergenceWarning

    mlp = estimator_class(activation="logistic", shuffle=False, warm_start=True, max_iter=1, random_state=0, **params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        mlp.fit(X, y)
    mlp.t_, mlp.loss_curve_, mlp.best_loss_, mlp._no_improvement_count = 0, [], np.inf, 0
    return mlp


SK_CASES = [
    dict(solver="sgd", momentum=0.0, alpha=0.0, batch_size=200),
    dict(solver="sgd", momentum=0.9, nesterovs_momentum=False, alpha=0.01, batch_size=16),
    dict(solver="sgd", momentum=0.9, nesterovs_momentum=True, alpha=0.001, batch_size=23, learning_rate="invscaling"),
    dict(solver="adam", alpha=0.0001, batch_size=32),
    dict(solver="adam", alpha=0.1, batch_size=200, beta_1=0.8, beta_2=0.95, epsilon=1e-6),
    dict(solver="sgd", momentum=0.5, alpha=0.0, batch_size=40, learning_rate="adaptive", tol=5.0, n_iter_no_change=2),
]


def ours_for(params):
    solver, momentum = params["solver"], params.get("momentum", 0.9)
    if solver == "adam":
        optimizer = "adam"
    elif momentum == 0:
        optimizer = "sgd"
    else:
        optimizer = "nesterov" if params.get("nesterovs_momentum", True) else "momentum"
    return dict(
        optimizer=optimizer,
        momentum=momentum,
        alpha=params.get("alpha", 1e-4),
        beta_1=params.get("beta_1", 0.9),
        beta_2=params.get("beta_2", 0.999),
        epsilon=params.get("epsilon", 1e-8),
        schedule=params.get("learning_rate", "constant") if solver == "sgd" else "constant",
        tol=params.get("tol", 1e-4),
        n_iter_no_change=params.get("n_iter_no_change", 10),
        learning_rate=params["learning_rate_init"],
        reduction="mean",
        average_loss=True,
    )


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("target", ["binary", "multiclass", "multilabel", "regression"])
@pytest.mark.parametrize("params", SK_CASES, ids=[f"sk{i}" for i in range(len(SK_CASES))])
def test_the_numpy_backend_follows_scikit_learns_mlp_to_1e_10(rng, params, target, weighted):
    from sklearn.neural_network import MLPClassifier, MLPRegressor

    n = 120
    X = rng.standard_normal((n, 5))
    if target == "binary":
        Y = y = (X[:, 0] * X[:, 1] + 0.3 * X[:, 2] > 0).astype(int)
        Y = y.reshape(-1, 1).astype(float)
        output, loss = "sigmoid", "bce"
    elif target == "multiclass":
        y = (X[:, 0] > 0).astype(int) + (X[:, 1] > 0.5).astype(int)
        Y = np.eye(3)[y]
        output, loss = "softmax", "cross_entropy"
    elif target == "multilabel":
        Y = y = np.column_stack([X[:, 0] > 0, X[:, 1] + X[:, 2] > 0]).astype(int)
        Y = Y.astype(float)
        output, loss = "sigmoid", "bce"
    else:
        y = np.sin(X[:, 0]) + 0.5 * X[:, 1]
        Y = y.reshape(-1, 1)
        output, loss = "identity", "mse"
    params = dict(params, learning_rate_init=0.05 if params["solver"] == "adam" else 0.3, hidden_layer_sizes=(7, 4))
    sk_params = {k: v for k, v in params.items() if k not in ("tol", "n_iter_no_change")}
    sk_params.update(tol=params.get("tol", 0.0), n_iter_no_change=params.get("n_iter_no_change", 10**6))
    sk_params["batch_size"] = min(sk_params["batch_size"], n)  # 200: the whole table (unclipped: no warning)
    cls = MLPRegressor if target == "regression" else MLPClassifier
    mlp = mlp_from(cls, X, y, **sk_params)
    layers = [5, 7, 4, Y.shape[1]]
    net = sn.Network(layers, backend="numpy", bias=True, output=output)
    net.set_weights([c.copy() for c in mlp.coefs_], [b.copy() for b in mlp.intercepts_])
    sw = rng.random(n) * 2 if weighted else None
    epochs = 12
    batch = min(sk_params["batch_size"], n)
    n_batches = -(-n // batch)
    opts = ours_for(dict(params, tol=sk_params["tol"], n_iter_no_change=sk_params["n_iter_no_change"]))
    hist = net.fit(
        X, Y, iterations=epochs * n_batches, report_every=n_batches, batch_size=batch, loss=loss, sample_weight=sw,
        **opts,
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mlp.set_params(max_iter=epochs).fit(X, y, sample_weight=sw)
    assert mlp.n_iter_ == epochs
    for a, b in zip(net.weights + net.biases, mlp.coefs_ + mlp.intercepts_, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    if target != "regression" or Y.shape[1] == 1:  # (scikit-learn's squared loss averages the outputs)
        np.testing.assert_allclose(hist.losses, mlp.loss_curve_, rtol=1e-10)
