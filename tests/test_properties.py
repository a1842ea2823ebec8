"""Property tests (hypothesis) over every available backend."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sigmanet as sn

SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(autouse=True)
def _one_kernel_for_every_shape(request, monkeypatch):
    """numba would compile a kernel specialised to each random shape (a second each); the fused
    engine, compiled once, takes every shape. The specialised kernels are checked in test_backends_agree."""
    if request.node.callspec.params.get("backend") == "numba":
        monkeypatch.setenv("SIGMANET_NUMBA_STRATEGY", "fused")


@st.composite
def problems(draw, max_depth=3):
    depth = draw(st.integers(1, max_depth))
    layers = [draw(st.integers(1, 6)) for _ in range(depth + 1)]
    n = draw(st.integers(1, 12))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    X = rng.uniform(-2, 2, (n, layers[0]))
    y = rng.uniform(0, 1, (n, layers[-1]))
    return layers, X, y, seed


def loss_value(weights, biases, X, y, loss):
    """0.5 * sum (y - out)^2, or cross-entropy computed stably from the output logit z:
    -[y log s(z) + (1-y) log(1 - s(z))] = softplus(z) - y z (log(1 - out) would lose
    digits to cancellation when out is near 1)."""
    a = X
    for k, w in enumerate(weights):
        z = a @ w + (biases[k] if biases else 0)
        a = 1 / (1 + np.exp(-z))
    if loss == "mse":
        return 0.5 * np.sum((y - a) ** 2)
    return np.sum(np.logaddexp(0, z) - y * z)


@SETTINGS
@given(problem=problems(), loss=st.sampled_from(["mse", "bce"]), bias=st.booleans())
def test_the_step_is_minus_the_analytic_gradient_and_equals_finite_differences(backend, problem, loss, bias):
    """One fit iteration at rate 1 moves the weights by exactly -dL/dW (L: 0.5*sum sq. error, or cross-entropy)."""
    layers, X, y, seed = problem
    net = sn.Network(layers, backend=backend, seed=seed, bias=bias)
    w0, b0 = net.weights, net.biases
    net.fit(X, y, iterations=1, loss=loss)
    params0 = w0 + (b0 or [])
    steps = [a - b for a, b in zip(net.weights + (net.biases or []), params0, strict=True)]
    L = len(w0)
    h = 1e-6
    for i, (p, step) in enumerate(zip(params0, steps, strict=True)):
        for idx in np.ndindex(p.shape):
            plus = [q.copy() for q in params0]
            minus = [q.copy() for q in params0]
            plus[i][idx] += h
            minus[i][idx] -= h
            lp = loss_value(plus[:L], plus[L:], X, y, loss)
            lm = loss_value(minus[:L], minus[L:], X, y, loss)
            fd = (lp - lm) / (2 * h)
            assert step[idx] == pytest.approx(-fd, rel=1e-5, abs=1e-7)


@SETTINGS
@given(problem=problems(), dtype=st.sampled_from(["float64", "float32"]), batch=st.sampled_from([None, 1, 3]))
def test_backends_agree_with_numpy_on_random_problems(backend, problem, dtype, batch):
    layers, X, y, seed = problem
    batch = None if batch is None or batch > len(X) else batch
    tol = dict(rtol=1e-9, atol=1e-12) if dtype == "float64" else dict(rtol=1e-4, atol=1e-6)
    nets = [sn.Network(layers, backend=b, seed=seed, dtype=dtype) for b in ("numpy", backend)]
    hists = [n.fit(X, y, iterations=20, report_every=5, reduction="mean", batch_size=batch, warn_stuck=False)
             for n in nets]  # fmt: skip
    np.testing.assert_allclose(hists[1].errors, hists[0].errors, **tol)
    for a, b in zip(nets[1].weights, nets[0].weights, strict=True):
        np.testing.assert_allclose(a, b, **tol)


@SETTINGS
@given(problem=problems(), cut=st.integers(1, 11))
def test_predicting_a_batch_in_parts_equals_predicting_it_whole(backend, problem, cut):
    layers, X, y, seed = problem
    net = sn.Network(layers, backend=backend, seed=seed)
    cut = min(cut, len(X))
    whole = net.predict(X)
    parts = np.vstack([net.predict(X[:cut])] + ([net.predict(X[cut:])] if cut < len(X) else []))
    np.testing.assert_allclose(parts, whole, rtol=1e-12, atol=0)


@SETTINGS
@given(problem=problems(), bias=st.booleans(), dtype=st.sampled_from(["float64", "float32"]))
def test_save_then_load_is_the_identity(backend, tmp_path_factory, problem, bias, dtype):
    layers, X, y, seed = problem
    net = sn.Network(layers, backend=backend, seed=seed, bias=bias, dtype=dtype)
    net.fit(X, y, iterations=3)
    path = tmp_path_factory.mktemp("ckpt") / "m.npz"
    net.save(path)
    back = sn.load(path, backend=backend)
    assert (back.layers, back.dtype, back.bias, back.iteration) == (net.layers, net.dtype, net.bias, net.iteration)
    for a, b in zip(net.weights + (net.biases or []), back.weights + (back.biases or []), strict=True):
        assert a.dtype == b.dtype and np.array_equal(a, b)


@SETTINGS
@given(problem=problems())
def test_the_same_seed_gives_the_same_weights_run_after_run(backend, problem):
    layers, X, y, seed = problem
    runs = []
    for _ in range(2):
        net = sn.Network(layers, backend=backend, seed=seed)
        net.fit(X, y, iterations=10)
        runs.append(net.weights)
    for a, b in zip(*runs, strict=True):
        assert np.array_equal(a, b)
