"""Bad input fails before any work, with an error naming the argument, and changes nothing."""

import numpy as np
import pytest

import sigmanet as sn
from sigmanet.datasets import tutorial_table

X, Y = tutorial_table()


def snapshot(net):
    return ([w.copy() for w in net.weights], net.iteration, net.backend, dict(net.fit_options), net.input_range)


def assert_unchanged(net, snap):
    ws, it, be, opts, rng = snapshot(net)
    assert it == snap[1] and be == snap[2] and opts == snap[3] and rng is snap[4]
    for a, b in zip(ws, snap[0], strict=True):
        assert np.array_equal(a, b)


@pytest.fixture
def trained():
    net = sn.Network([3, 4, 1], backend="numpy", seed=1, init="legacy")
    net.fit(X, Y, iterations=10)
    return net


@pytest.mark.parametrize(
    "layers,exc,match",
    [
        ([3], ValueError, "at least an input and an output"),
        ([], ValueError, "at least"),
        ([3, 0, 1], ValueError, r"layers\[1\] must be at least 1"),
        ([3, -2], ValueError, r"layers\[1\]"),
        ([3, 4.0, 1], TypeError, r"layers\[1\] must be an integer"),
        ([3, True], TypeError, r"layers\[1\]"),
        ("341", TypeError, "layers must be a sequence"),
        (5, TypeError, "layers must be a sequence"),
        ({3, 4, 1}, TypeError, "layers must be an ordered sequence.*got a set"),  # would iterate as 1, 3, 4
        ({3: 0, 4: 0, 1: 0}, TypeError, "layers must be an ordered sequence.*got a dict"),
    ],
)
def test_invalid_layer_sizes(layers, exc, match):
    with pytest.raises(exc, match=match):
        sn.Network(layers)


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        (dict(dtype="float16"), ValueError, "dtype must be one of"),
        (dict(dtype="int32"), ValueError, "dtype"),
        (dict(dtype="nonsense"), ValueError, "dtype"),
        (dict(init="he"), ValueError, "init must be one of"),
        (dict(seed=-1), ValueError, "seed must be at least 0"),
        (dict(seed=1.5), TypeError, "seed must be an integer"),
        (dict(bias="yes"), TypeError, "bias must be True or False"),
        (dict(threads=0), ValueError, "threads must be at least 1"),
        (dict(backend="gpu"), sn.BackendUnavailableError, "unknown backend 'gpu'"),
    ],
)
def test_invalid_network_options(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        sn.Network([3, 4, 1], **kwargs)


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        (dict(iterations=0), ValueError, "iterations must be at least 1"),
        (dict(iterations=1e4), TypeError, "iterations must be an integer"),
        (dict(iterations="100"), TypeError, "iterations"),
        (dict(learning_rate=0), ValueError, "learning_rate must be a finite number in \\(0, inf\\)"),
        (dict(learning_rate=-1), ValueError, "learning_rate"),
        (dict(learning_rate=float("nan")), ValueError, "learning_rate"),
        (dict(learning_rate=float("inf")), ValueError, "learning_rate"),
        (dict(learning_rate="fast"), TypeError, "learning_rate must be a real number"),
        (dict(report_every=0), ValueError, "report_every"),
        (dict(batch_size=0), ValueError, "batch_size must be at least 1"),
        (dict(batch_size=5), ValueError, "batch_size=5 exceeds the 4 rows"),
        (dict(batch_size=2.0), TypeError, "batch_size"),
        (dict(loss="hinge"), ValueError, "loss must be one of"),
        (dict(reduction="max"), ValueError, "reduction must be one of"),
        (dict(callback=42), TypeError, "callback must be callable"),
    ],
)
def test_invalid_fit_options_change_nothing(trained, kwargs, exc, match):
    snap = snapshot(trained)
    with pytest.raises(exc, match=match):
        trained.fit(X, Y, **kwargs)
    assert_unchanged(trained, snap)


@pytest.mark.parametrize(
    "Xbad,ybad,exc,match",
    [
        (X[:, :2], Y, ValueError, "X has 2 columns, but the network takes 3 inputs per row"),
        (X, np.hstack([Y, Y]), ValueError, r"the network has 1 output, so y needs 1 column; got shape \(4, 2\)"),
        (X[:3], Y, ValueError, "X has 3 rows but y has 4"),
        (X[:0], Y[:0], ValueError, "X is empty"),
        (np.where(X == 1, np.nan, X), Y, ValueError, "X holds NaN or infinite values, the first at row 0, column 2"),
        (np.where(X == 1, np.inf, X), Y, ValueError, "X holds"),
        (X, np.full_like(Y, np.nan), ValueError, "y holds"),
        (X.astype(complex), Y, TypeError, "X must be real, got complex"),
        (X.astype(str), Y, TypeError, "X must be numeric"),
        (np.array([[1, "a", 2]], dtype=object), Y[:1], TypeError, "X must be numeric"),
        ([[0, 0], [1]], Y[:2], ValueError, "X could not be read as an array"),
        (X[0], Y, ValueError, r"X must be 2-D .*reshape"),
        (X[None], Y, ValueError, "X must be 2-D"),
        (X, Y * 2, ValueError, r"y must lie in \[0, 1\]"),
        (X, Y - 1, ValueError, r"y must lie in \[0, 1\]"),
        ("data.csv", Y, TypeError, "X must be a numeric array"),
    ],
)
def test_invalid_data_changes_nothing(trained, Xbad, ybad, exc, match):
    snap = snapshot(trained)
    with pytest.raises(exc, match=match):
        trained.fit(Xbad, ybad, iterations=5)
    assert_unchanged(trained, snap)


def test_valid_variants_are_accepted():
    net = sn.Network([3, 4, 1], backend="numpy", seed=0)
    net.fit(X.astype(int).tolist(), Y.ravel().astype(bool), iterations=3)  # lists, ints, bools, 1-D y
    net.fit(X.astype(np.float32), Y.astype(np.int8), iterations=3)
    assert net.iteration == 6


@pytest.mark.parametrize(
    "bad,exc,match",
    [
        (X[:, :2], ValueError, "X has 2 columns"),
        (np.full((2, 3), np.nan), ValueError, "X holds"),
        (np.zeros((0, 3)), ValueError, "X is empty"),
    ],
)
def test_predict_validates(trained, bad, exc, match):
    with pytest.raises(exc, match=match):
        trained.predict(bad)


def test_predict_takes_a_single_row_for_one_input_network():
    net = sn.Network([1, 3, 1], backend="numpy", seed=0)
    assert net.predict(np.array([0.1, 0.2, 0.3])).shape == (3, 1)  # 1-D means a column of rows


def test_set_weights_checks_shapes_and_values_and_changes_nothing_on_failure(trained):
    snap = snapshot(trained)
    with pytest.raises(ValueError, match=r"weights\[0\] must have shape \(3, 4\)"):
        trained.set_weights([np.zeros((4, 3)), np.zeros((4, 1))])
    with pytest.raises(ValueError, match="finite"):
        trained.set_weights([np.full((3, 4), np.inf), np.zeros((4, 1))])
    with pytest.raises(ValueError, match="must hold 2 matrices"):
        trained.set_weights([np.zeros((3, 4))])
    with pytest.raises(ValueError, match="bias=False"):
        trained.set_weights(trained.weights, [np.zeros(4), np.zeros(1)])
    assert_unchanged(trained, snap)


@pytest.mark.parametrize("labels", [np.array([0, 2, 1, 2]), np.array([[0], [2], [1], [2]])])
def test_class_labels_for_a_multi_output_network_get_one_hot_advice(labels):
    net = sn.Network([3, 4, 3], backend="numpy", seed=0)
    with pytest.raises(ValueError, match=r"network has 3 outputs.*one-hot encode them.*np\.eye\(3\)\[labels\]") as e:
        net.fit(X, labels, iterations=1)
    assert "reshape" not in str(e.value)


def test_a_single_example_gets_reshape_advice_and_a_wrong_width_does_not():
    net = sn.Network([3, 4, 1], backend="numpy", seed=0)
    with pytest.raises(ValueError, match=r"x\.reshape\(1, -1\)"):
        net.predict(X[0])
    with pytest.raises(ValueError, match="takes 3 inputs") as e:
        net.predict(np.ones(5))
    assert "reshape(1, -1)" not in str(e.value)


def test_moving_to_an_unknown_backend_changes_nothing(trained):
    snap = snapshot(trained)
    with pytest.raises(sn.BackendUnavailableError):
        trained.to("tpu")
    assert_unchanged(trained, snap)


def test_weights_are_copies(trained):
    w = trained.weights
    w[0][:] = 123
    assert not np.array_equal(trained.weights[0], w[0])


def test_layers_too_large_for_this_machine_say_so_naming_the_layers(monkeypatch):
    import sigmanet.network

    def no_memory(*args, **kwargs):
        raise MemoryError("Unable to allocate 74.5 GiB")

    monkeypatch.setattr(sigmanet.network, "init_weights", no_memory)
    with pytest.raises(MemoryError, match=r"layers \[100000, 100000, 10\] need 10,001,000,000 weights \(74.5 GiB"):
        sn.Network([100000, 100000, 10])


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_float64_values_beyond_float32s_range_are_refused_for_a_float32_network(backend):
    """Found by a review: X * 1e39 (finite in float64) trained into a DivergenceError blaming the learning
    rate, and predicted NaN without a word; cast to float32 the values were infinite."""
    import scipy.sparse

    net = sn.Network([3, 4, 1], backend=backend, seed=1, dtype="float32")
    snap = snapshot(net)
    big = X * 1e39
    for call in (
        lambda: net.fit(big, Y, iterations=5),
        lambda: net.predict(big),
        lambda: net.error(big, Y),
        lambda: net.predict(scipy.sparse.csr_matrix(big)),
        lambda: net.fit(X, Y, iterations=5, sample_weight=np.full(4, 1e39)),
        lambda: sn.loss_and_gradients(net.weights, None, big, Y, backend=backend),
    ):
        with pytest.raises(ValueError, match="beyond float32's range .* the network's dtype"):
            call()
    assert_unchanged(net, snap)
    with pytest.raises(ValueError, match=r"X holds values beyond .*\(the first at row 0, column 2\)"):
        net.predict(np.where(np.arange(3) == 2, 1e39, 0.5) * np.ones((4, 1)))
    # the same values on a float64 network, and float32's own largest, are fine
    assert np.isfinite(sn.Network([3, 4, 1], backend=backend, seed=1).predict(big)).all()
    assert np.isfinite(net.predict(np.full((2, 3), np.finfo(np.float32).max, np.float64))).all()


def test_set_weights_refuses_values_beyond_the_networks_dtype(tmp_path):
    """Found by a review: float64 weights * 1e300 on a float32 network were stored as inf, and the model
    file they saved could not be loaded."""
    net = sn.Network([3, 4, 1], backend="numpy", seed=1, dtype="float32", bias=True)
    snap = snapshot(net)
    with pytest.raises(ValueError, match=r"weights\[0\] must be finite real numbers \(values beyond float32's"):
        net.set_weights([net.weights[0].astype(float) * 1e300, net.weights[1]], net.biases)
    with pytest.raises(ValueError, match=r"biases\[1\] must be 1 finite real numbers \(values beyond"):
        net.set_weights(net.weights, [net.biases[0], np.array([1e300])])
    with pytest.raises(ValueError, match=r"weights\[1\] must be finite real numbers, got dtype <U"):
        net.set_weights([net.weights[0], net.weights[1].astype(str)], net.biases)
    assert_unchanged(net, snap)
    net.save(tmp_path / "m.npz")
    assert np.array_equal(sn.load(tmp_path / "m.npz").weights[0], net.weights[0])


@pytest.mark.parametrize(
    "lo,hi,exc,match",
    [
        (np.zeros(3), None, TypeError, "needs both its minima and its maxima"),
        (None, np.ones(3), TypeError, "needs both its minima and its maxima"),
        (["a", "b", "c"], [1, 2, 3], ValueError, "the input range's minima must be 3 real numbers"),
        (np.zeros(3), np.ones(2), ValueError, "needs 3 minima and maxima"),
        (np.ones(3), np.zeros(3), ValueError, r"max >= min in every column; input column\(s\) \[0, 1, 2\]"),
    ],
)
def test_set_input_range_names_what_is_wrong(trained, lo, hi, exc, match):
    snap = snapshot(trained)
    with pytest.raises(exc, match=match):
        trained.set_input_range(lo, hi)
    assert_unchanged(trained, snap)


@pytest.mark.parametrize("dtype", ["Int64", "Float64", "float64[pyarrow]"])
def test_pandas_frames_of_nullable_or_arrow_numbers_are_numbers(dtype):
    """Found by a review: a frame of several such columns was refused as 'dtype object'."""
    pd = pytest.importorskip("pandas")
    if "pyarrow" in dtype:
        pytest.importorskip("pyarrow")
    net = sn.Network([3, 4, 1], backend="numpy", seed=0)
    values = np.array([[1, 2, 3], [4, 5, 6]], dtype=np.float64)
    frame = pd.DataFrame(values, columns=["a", "b", "c"]).astype(dtype)
    assert np.array_equal(net.predict(frame), net.predict(values))
    frame.loc[1, "b"] = None  # a missing value is refused as NaN, where it is
    with pytest.raises(ValueError, match="NaN or infinite values, the first at row 1, column 1"):
        net.predict(frame)
    with pytest.raises(TypeError, match="X must be numeric, got dtype object"):  # text stays text
        sn.Network([1, 2, 1], seed=0).predict(pd.Series(["a", "b", "c"]))
