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
