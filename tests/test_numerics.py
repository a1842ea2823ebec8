"""The sigmoid never overflows or warns, and equals the naive formula wherever that is finite."""

import warnings

import numpy as np
import pytest

import sigmanet as sn


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_sigmoid_is_silent_at_extremes_and_saturates(dtype):
    x = np.array([-1e300 if dtype == "float64" else -3e38, -1e4, -1000, -800, -89, 0, 89, 1000, 1e4], dtype=dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = sn.sigmoid(x)
    assert s.dtype == np.dtype(dtype)
    assert np.isfinite(s).all()
    assert s[0] == 0 and s[1] == 0 and s[-1] == 1 and s[5] == 0.5


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_sigmoid_equals_naive_formula_where_finite(rng, dtype):
    x = np.concatenate([rng.standard_normal(10000) * 50, rng.uniform(-750, 750, 10000)]).astype(dtype)
    with np.errstate(over="ignore"):
        naive = 1 / (1 + np.exp(-x))
    assert np.array_equal(sn.sigmoid(x), naive)


def test_sigmoid_in_place():
    x = np.linspace(-5, 5, 11)
    expected = 1 / (1 + np.exp(-x))
    out = sn.sigmoid(x, out=x)
    assert out is x and np.array_equal(x, expected)


def test_training_on_extreme_inputs_emits_no_runtime_warning(backend):
    X = np.array([[1e4, -1e4, 1.0], [-1e4, 1e4, 1.0], [0.0, 0.0, 1.0]])
    y = np.array([[1.0], [0.0], [1.0]])
    net = sn.Network([3, 5, 1], backend=backend, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        net.fit(X, y, iterations=20, report_every=5)
        out = net.predict(X)
    assert np.isfinite(out).all()


def test_saturated_share_measures_each_wide_sigmoid_layer_and_needs_eight_rows(rng):
    from sigmanet.numerics import saturated_share

    X = rng.standard_normal((16, 3))
    big = np.full((3, 4), 1e4)  # every first-layer unit pinned at 0 or 1 (X's rows have both signs)
    small = rng.standard_normal((4, 2)) * 1e-3  # the second layer sits at 0.5: not saturated
    assert saturated_share(X, [big, small], None, 1) == 1.0
    assert saturated_share(X, [small[:3], big[:2]], None, 2) == 1.0  # the deeper layer counts too
    assert saturated_share(X, [big, small], None, 0) == 0.0  # no layer asked for
    assert saturated_share(X[:7], [big, small], None, 1) == 0.0  # too few rows to say
    assert saturated_share(X, [big[:, :1]], None, 1) == 0.0  # one unit: never measured
    half = np.hstack([big[:, :2], small[:3, :1].repeat(2, axis=1)])
    assert saturated_share(X, [half], [np.zeros(4)], 1) == 0.5
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # exp's overflow on a pinned unit is silent
        assert saturated_share(X * 1e3, [big], None, 1) == 1.0
