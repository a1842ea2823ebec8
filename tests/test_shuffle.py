"""fit(shuffle=...): a new row order every epoch, seeded, deterministic, and resumable bit for bit.

The oracle is the definition itself: epoch e trains, in row order, on
X[P_e] with P_e = default_rng([seed, e]).permutation(n_rows). Every engine
(backend and forced strategy) is checked against it.
"""

import numpy as np
import pytest
from reference import random_problem

import sigmanet as sn

LAYERS = [4, 6, 2]
TOL = {"float64": dict(rtol=1e-9, atol=1e-12), "float32": dict(rtol=1e-4, atol=1e-6)}


def by_hand(X, y, seed, epochs, batch_size, **net_options):
    """Epoch after epoch, the rows in the epoch's permuted order, through row-order fits on NumPy."""
    net = sn.Network(LAYERS, backend="numpy", seed=net_options.pop("net_seed", 3), **net_options)
    n_batches = -(-len(X) // batch_size)
    errors = []
    for e in range(epochs):
        order = np.random.default_rng([seed, e]).permutation(len(X))
        h = net.fit(X[order], y[order], iterations=n_batches, batch_size=batch_size, reduction="mean")
        errors.append(h.errors[0])
    return net, errors


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_every_engine_trains_on_each_epochs_permutation(engine, rng, dtype):
    X, y = random_problem(rng, 37, LAYERS)
    X, y = X.astype(dtype), y.astype(dtype)
    want, want_errors = by_hand(X, y, seed=11, epochs=4, batch_size=8, dtype=dtype)
    net = sn.Network(LAYERS, backend=engine, seed=3, dtype=dtype)
    h = net.fit(X, y, iterations=4 * 5, batch_size=8, reduction="mean", report_every=5, shuffle=11)
    np.testing.assert_allclose(h.errors, want_errors, **TOL[dtype])
    for a, b in zip(net.weights, want.weights, strict=True):
        np.testing.assert_allclose(a, b, **TOL[dtype])
    unshuffled = sn.Network(LAYERS, backend=engine, seed=3, dtype=dtype)
    unshuffled.fit(X, y, iterations=20, batch_size=8, reduction="mean")
    assert not np.allclose(unshuffled.weights[0], net.weights[0], rtol=1e-6, atol=0)  # the order mattered


def test_numpy_backend_equals_the_definition_bit_for_bit(rng):
    X, y = random_problem(rng, 30, LAYERS)
    want, _ = by_hand(X, y, seed=5, epochs=3, batch_size=7)
    net = sn.Network(LAYERS, backend="numpy", seed=3)
    net.fit(X, y, iterations=3 * 5, batch_size=7, reduction="mean", shuffle=5)
    for a, b in zip(net.weights, want.weights, strict=True):
        np.testing.assert_array_equal(a, b)


def test_intervals_that_cross_epochs_and_fits_that_stop_midway_continue_exactly(engine, rng):
    """fit(a) then fit(b) equals fit(a + b), bit for bit, whatever the report intervals and cut points."""
    X, y = random_problem(rng, 30, LAYERS)
    one = sn.Network(LAYERS, backend=engine, seed=2)
    one.fit(X, y, iterations=50, batch_size=8, reduction="mean", report_every=7, shuffle=True)
    two = sn.Network(LAYERS, backend=engine, seed=2)
    two.fit(X, y, iterations=13, batch_size=8, reduction="mean", report_every=3, shuffle=True)
    two.fit(X, y, iterations=37, batch_size=8, reduction="mean", report_every=50, shuffle=True)
    assert one.iteration == two.iteration == 50
    for a, b in zip(one.weights, two.weights, strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_checkpoint_resumes_the_shuffled_fit_exactly(tmp_path, rng):
    X, y = random_problem(rng, 25, LAYERS)
    whole = sn.Network(LAYERS, backend="numpy", seed=9, bias=True)
    whole.fit(X, y, iterations=40, batch_size=6, reduction="mean", shuffle=True)
    first = sn.Network(LAYERS, backend="numpy", seed=9, bias=True)
    first.fit(X, y, iterations=17, batch_size=6, reduction="mean", shuffle=True)
    first.save(tmp_path / "half.npz")
    resumed = sn.load(tmp_path / "half.npz", backend="numpy")
    assert resumed.fit_options["shuffle"] == 9
    resumed.fit(X, y, iterations=23, batch_size=6, reduction="mean", shuffle=True)
    for a, b in zip(whole.weights + whole.biases, resumed.weights + resumed.biases, strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_network_without_a_seed_keeps_the_shuffle_seed_it_drew(rng):
    X, y = random_problem(rng, 20, LAYERS)
    net = sn.Network(LAYERS, backend="numpy")
    net.fit(X, y, iterations=9, batch_size=6, shuffle=True)
    seed = net.fit_options["shuffle"]
    assert isinstance(seed, int) and seed >= 0
    net.fit(X, y, iterations=9, batch_size=6, shuffle=True)
    assert net.fit_options["shuffle"] == seed
    other = sn.Network(LAYERS, backend="numpy")
    other.fit(X, y, iterations=9, batch_size=6, shuffle=True)
    assert other.fit_options["shuffle"] != seed  # a new draw for a new network


def test_the_callers_arrays_are_not_modified(engine, rng):
    X, y = random_problem(rng, 30, LAYERS)
    X0, y0 = X.copy(), y.copy()
    sn.Network(LAYERS, backend=engine, seed=1).fit(X, y, iterations=12, batch_size=4, shuffle=3)
    np.testing.assert_array_equal(X, X0)
    np.testing.assert_array_equal(y, y0)


def test_a_full_batch_is_not_reordered(rng):
    X, y = random_problem(rng, 30, LAYERS)
    a = sn.Network(LAYERS, backend="numpy", seed=1)
    b = sn.Network(LAYERS, backend="numpy", seed=1)
    a.fit(X, y, iterations=10, shuffle=True)
    b.fit(X, y, iterations=10)
    for u, w in zip(a.weights, b.weights, strict=True):
        np.testing.assert_array_equal(u, w)


@pytest.mark.parametrize(
    "shuffle,error,match",
    [
        ("yes", TypeError, "shuffle must be an integer"),
        (-1, ValueError, "shuffle must be at least 0"),
        (1.5, TypeError, "shuffle must be an integer"),
    ],
)
def test_bad_shuffle_values_are_refused_before_any_work(rng, shuffle, error, match):
    X, y = random_problem(rng, 20, LAYERS)
    net = sn.Network(LAYERS, backend="numpy", seed=1)
    before = [w.copy() for w in net.weights]
    with pytest.raises(error, match=match):
        net.fit(X, y, iterations=5, batch_size=4, shuffle=shuffle)
    assert net.iteration == 0
    for a, b in zip(net.weights, before, strict=True):
        np.testing.assert_array_equal(a, b)


def test_dask_arrays_refuse_shuffle_before_any_work(rng):
    da = pytest.importorskip("dask.array")
    X, y = random_problem(rng, 40, LAYERS)
    net = sn.Network(LAYERS, backend="numpy", seed=1)
    with pytest.raises(ValueError, match="shuffle is not available"):
        net.fit(da.from_array(X, chunks=10), da.from_array(y, chunks=10), iterations=5, batch_size=4, shuffle=True)
    assert net.iteration == 0
