"""Every backend agrees with the NumPy backend: 1e-9 relative in float64, 1e-4 in float32.

Run on the seed and on fresh random inputs of several shapes and depths, with
every option, through every strategy a backend has (numba: fused small-net
loop and BLAS + parallel kernels).
"""

import numpy as np
import pytest
from reference import random_problem, seed_program

import sigmanet as sn
from sigmanet.datasets import tutorial_table

TOL = {"float64": dict(rtol=1e-9, atol=1e-12), "float32": dict(rtol=1e-4, atol=1e-6)}


def check_agree(engine, layers, X, y, dtype="float64", bias=False, seed=0, **fit):
    ref = sn.Network(layers, backend="numpy", dtype=dtype, seed=seed, bias=bias)
    net = sn.Network(layers, backend=engine, dtype=dtype, seed=seed, bias=bias)
    if bias:  # non-zero biases, the same on both
        bs = [np.linspace(-0.5, 0.5, n) for n in layers[1:]]
        ref.set_weights(ref.weights, bs)
        net.set_weights(net.weights, bs)
    h_ref = ref.fit(X, y, **fit)
    h = net.fit(X, y, **fit)
    assert h.iterations == h_ref.iterations
    np.testing.assert_allclose(h.errors, h_ref.errors, **TOL[dtype])
    for got, want in zip(net.weights + (net.biases or []), ref.weights + (ref.biases or []), strict=True):
        assert got.dtype == np.dtype(dtype)
        np.testing.assert_allclose(got, want, **TOL[dtype])
    np.testing.assert_allclose(net.predict(X), ref.predict(X), **TOL[dtype])
    return net


@pytest.mark.parametrize("iterations", [2000, pytest.param(60000, marks=pytest.mark.slow)])
def test_seed_run_agrees_with_the_seed_program(engine, iterations):
    errors, weights, _ = seed_program(iterations)
    X, y = tutorial_table()
    net = sn.Network([3, 4, 1], backend=engine, seed=1, init="legacy")
    hist = net.fit(X, y, iterations=iterations, report_every=10000)
    np.testing.assert_allclose(hist.errors, errors, rtol=1e-9)
    for w, ref in zip(net.weights, weights, strict=True):
        np.testing.assert_allclose(w, ref, rtol=1e-9)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("layers,n", [([3, 1], 4), ([5, 8, 2], 37), ([4, 16, 9, 3], 200), ([6, 5, 5, 5, 5, 2], 64)])
def test_random_shapes_and_depths_agree(engine, rng, dtype, layers, n):
    X, y = random_problem(rng, n, layers)
    check_agree(
        engine,
        layers,
        X.astype(dtype),
        y,
        dtype=dtype,
        seed=int(rng.integers(1 << 30)),
        iterations=150,
        learning_rate=1.0,
        report_every=50,
        reduction="mean",
    )


@pytest.mark.parametrize("loss", ["mse", "bce"])
@pytest.mark.parametrize("batch_size", [None, 7, 32])
@pytest.mark.parametrize("bias", [False, True])
def test_options_agree(engine, rng, loss, batch_size, bias):
    layers = [5, 12, 3]
    X, y = random_problem(rng, 45, layers)
    check_agree(
        engine,
        layers,
        X,
        y,
        bias=bias,
        seed=int(rng.integers(1 << 30)),
        iterations=90,
        learning_rate=0.7,
        report_every=20,
        loss=loss,
        batch_size=batch_size,
        reduction="mean",
    )


def test_summed_steps_agree_on_a_larger_table(engine, rng):
    layers = [8, 32, 4]
    X, y = random_problem(rng, 300, layers)
    check_agree(engine, layers, X, y, seed=5, iterations=40, learning_rate=0.01, report_every=10)


def test_fits_continue_identically_across_calls(engine, rng):
    """fit(a) then fit(b) equals fit(a + b): the trainer restarts at the right batch."""
    layers = [4, 6, 1]
    X, y = random_problem(rng, 30, layers)
    one = sn.Network(layers, backend=engine, seed=2)
    two = sn.Network(layers, backend=engine, seed=2)
    one.fit(X, y, iterations=70, batch_size=8, reduction="mean")
    two.fit(X, y, iterations=33, batch_size=8, reduction="mean")
    two.fit(X, y, iterations=37, batch_size=8, reduction="mean")
    assert two.iteration == one.iteration == 70
    for a, b in zip(one.weights, two.weights, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12)
