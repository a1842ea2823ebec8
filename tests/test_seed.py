"""The contract's anchor: the NumPy backend reproduces the seed program."""

import numpy as np
import pytest
from reference import random_problem, reference_fit, seed_program

import sigmanet as sn
from sigmanet.datasets import tutorial_table


@pytest.fixture(scope="module")
def seed_run():
    return seed_program()


def test_numpy_backend_reproduces_seed_program(seed_run):
    errors, weights, out = seed_run
    X, y = tutorial_table()
    net = sn.Network([3, 4, 1], backend="numpy", dtype="float64", seed=1, init="legacy")
    hist = net.fit(X, y, iterations=60000, learning_rate=1.0, report_every=10000)
    assert hist.iterations == [0, 10000, 20000, 30000, 40000, 50000]
    np.testing.assert_allclose(hist.errors, errors, rtol=1e-9, atol=0)
    for w, ref in zip(net.weights, weights, strict=True):
        np.testing.assert_allclose(w, ref, rtol=1e-9, atol=0)
    assert net.iteration == 60000
    # the seed prints l2 from its last forward pass, before the last update
    np.testing.assert_allclose(net.predict(X), out, rtol=1e-4)  # one update apart


def test_legacy_init_is_the_seeds_draw_without_touching_global_state():
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    net = sn.Network([3, 4, 1], backend="numpy", seed=1, init="legacy")
    assert np.array_equal(np.random.get_state()[1], before)
    rs = np.random.RandomState(1)
    expected = [2 * rs.random_sample((3, 4)) - 1, 2 * rs.random_sample((4, 1)) - 1]
    for w, e in zip(net.weights, expected, strict=True):
        assert np.array_equal(w, e)


@pytest.mark.parametrize("layers", [[3, 1], [5, 7, 2], [4, 6, 5, 3], [2, 3, 3, 3, 1]])
@pytest.mark.parametrize("n", [1, 9, 64])
def test_numpy_backend_matches_reference_loop_on_random_shapes(rng, layers, n):
    X, y = random_problem(rng, n, layers)
    net = sn.Network(layers, backend="numpy", seed=int(rng.integers(1 << 30)), init="glorot")
    w0 = net.weights
    # mean steps keep the dynamics well-conditioned (summed steps on random
    # targets can be chaotic, amplifying any rounding difference)
    hist = net.fit(X, y, iterations=120, learning_rate=0.5, report_every=40, reduction="mean")
    errs, W, _ = reference_fit(w0, X, y, 120, lr=0.5, report_every=40, reduction="mean")
    np.testing.assert_allclose(hist.errors, errs, rtol=1e-9)
    for w, ref in zip(net.weights, W, strict=True):
        np.testing.assert_allclose(w, ref, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("loss", ["mse", "bce"])
@pytest.mark.parametrize("reduction", ["sum", "mean"])
@pytest.mark.parametrize("batch_size", [None, 5, 16])
def test_options_beyond_the_seed_match_reference(rng, loss, reduction, batch_size):
    layers = [4, 6, 2]
    X, y = random_problem(rng, 23, layers)
    net = sn.Network(layers, backend="numpy", seed=3, bias=True)
    w0, b0 = net.weights, [rng.standard_normal(n) * 0.1 for n in layers[1:]]
    net.set_weights(w0, b0)
    hist = net.fit(
        X, y, iterations=50, learning_rate=0.3, report_every=10, loss=loss, reduction=reduction, batch_size=batch_size
    )
    errs, W, B = reference_fit(
        w0, X, y, 50, lr=0.3, report_every=10, biases=b0, loss=loss, reduction=reduction, batch_size=batch_size
    )
    np.testing.assert_allclose(hist.errors, errs, rtol=1e-9)
    for got, ref in zip(net.weights + net.biases, W + B, strict=True):
        np.testing.assert_allclose(got, ref, rtol=1e-9, atol=1e-12)


def test_defaults_keep_the_seeds_behaviour():
    """No bias, mse, full batch, sum, learning_rate 1, 60000 iterations, report every 10000."""
    X, y = tutorial_table()
    a = sn.Network([3, 4, 1], backend="numpy", seed=1, init="legacy")
    b = sn.Network([3, 4, 1], backend="numpy", seed=1, init="legacy", bias=False)
    ha = a.fit(X, y, iterations=500)
    hb = b.fit(X, y, iterations=500, learning_rate=1.0, loss="mse", batch_size=None, reduction="sum")
    assert ha.errors == hb.errors and a.biases is None
    for wa, wb in zip(a.weights, b.weights, strict=True):
        assert np.array_equal(wa, wb)


def test_single_layer_perceptron_cannot_learn_xor_but_hidden_layer_can():
    X, y = tutorial_table()
    single = sn.Network([3, 1], backend="numpy", seed=1, init="legacy")
    single.fit(X, y, iterations=10000)
    hidden = sn.Network([3, 4, 1], backend="numpy", seed=1, init="legacy")
    hidden.fit(X, y, iterations=10000)
    assert single.error(X, y) > 0.4
    assert hidden.error(X, y) < 0.05


@pytest.mark.slow
def test_default_glorot_init_trains_a_deep_net_better_than_legacy():
    from sigmanet.datasets import make_table

    X, y = make_table(512, 8, 1, seed=0, noise=0.0)
    layers = [8, 32, 32, 32, 32, 1]
    errors = {}
    for init in ("glorot", "legacy"):
        net = sn.Network(layers, backend="numpy", seed=0, init=init)
        net.fit(X, y, iterations=2000, learning_rate=4.0, reduction="mean", report_every=None)
        errors[init] = net.error(X, y)
    assert errors["glorot"] < min(0.1, errors["legacy"]), errors
