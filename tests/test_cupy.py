"""CuPy specifics: data stays on the device, each strategy is really taken, nothing is allocated per iteration.

Agreement with NumPy on every strategy lives in test_backends_agree.py and
test_properties.py (through the `engine` and `backend` fixtures). All of
these skip, with the reason, where no CUDA device is usable.
"""

import numpy as np
import pytest

import sigmanet as sn
from sigmanet.backends import TrainConfig, get_backend
from sigmanet.datasets import make_table, tutorial_table

pytestmark = pytest.mark.usefixtures("_backend_cupy")


@pytest.fixture
def cp():
    import cupy

    return cupy


def test_cupy_in_cupy_out_numpy_in_numpy_out(cp):
    X, y = tutorial_table()
    net = sn.Network([3, 4, 1], backend="cupy", seed=1, init="legacy")
    net.fit(cp.asarray(X), cp.asarray(y), iterations=100)
    assert isinstance(net.predict(cp.asarray(X)), cp.ndarray)
    assert isinstance(net.predict(X), np.ndarray)
    assert all(isinstance(w, np.ndarray) for w in net.weights)  # host copies, always


def test_cupy_inputs_are_used_without_copies(cp):
    X, y = (cp.asarray(a) for a in tutorial_table())
    tr = get_backend("cupy").trainer(sn.Network([3, 4, 1], seed=0).weights, None, X, y, TrainConfig())
    assert tr.X.data.ptr == X.data.ptr


def test_strategies_by_size(cp):
    from sigmanet.backends.cupy import backend as cupy_backend

    b = get_backend("cupy")
    X, y = tutorial_table()
    assert isinstance(b.trainer(sn.Network([3, 4, 1]).weights, None, X, y, TrainConfig()), cupy_backend.FusedGpuTrainer)
    X, y = make_table(1 << 16, 64, 16)
    big = b.trainer(sn.Network([64, 256, 16]).weights, None, X, y, TrainConfig())
    assert isinstance(big, cupy_backend.CupyGemmTrainer)


def test_graph_capture_succeeds_and_matches_eager(monkeypatch):
    from sigmanet.backends.cupy import backend as cupy_backend

    monkeypatch.setattr(cupy_backend, "SMALL_LIMIT", -1)
    X, y = make_table(2048, 16, 4, seed=0)
    w = sn.Network([16, 32, 4], seed=0).weights
    b = get_backend("cupy")
    graph = cupy_backend.CupyGemmTrainer(b, w, None, X, y, TrainConfig(reduction="mean"), use_graph=True)
    eager = cupy_backend.CupyGemmTrainer(b, w, None, X, y, TrainConfig(reduction="mean"), use_graph=False)
    e1, e2 = graph.run(0, 50), eager.run(0, 50)
    assert graph.graph is not None and graph.graph_error is None
    np.testing.assert_allclose(e1, e2, rtol=1e-9)
    for a, c in zip(graph.weights()[0], eager.weights()[0], strict=True):
        np.testing.assert_allclose(a, c, rtol=1e-9, atol=1e-12)


def test_kernels_compile_once_per_dtype():
    from sigmanet.backends.cupy._cuda import kernels

    assert kernels("float32") is kernels("float32")
    assert kernels("float32") is not kernels("float64")


def test_device_name_is_reported():
    assert get_backend("cupy").device()


# -- checks for the leads of shared/GPU-REVIEW.md (each fails where the lead is real) --


def _agree_with_numpy(layers, rows, dtype="float32", iterations=3, bias=False, **fit):
    X, y = make_table(rows, layers[0], layers[-1], seed=1, dtype=dtype)
    ref = sn.Network(layers, backend="numpy", seed=3, dtype=dtype, bias=bias)
    net = sn.Network(layers, backend="cupy", seed=3, dtype=dtype, bias=bias)
    h_ref = ref.fit(X, y, iterations=iterations, report_every=1, reduction="mean", **fit)
    h = net.fit(X, y, iterations=iterations, report_every=1, reduction="mean", **fit)
    tol = dict(rtol=1e-4, atol=1e-6) if dtype == "float32" else dict(rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(h.errors, h_ref.errors, **tol)
    for a, b in zip(net.weights, ref.weights, strict=True):
        np.testing.assert_allclose(a, b, **tol)


def _graph_trainer(rows, layers, dtype="float32"):
    from sigmanet.backends.cupy import backend as cupy_backend

    X, y = make_table(rows, layers[0], layers[-1], seed=1, dtype=dtype)
    w = sn.Network(layers, seed=3, dtype=dtype).weights
    return cupy_backend.CupyGemmTrainer(
        get_backend("cupy"), w, None, X, y, TrainConfig(reduction="mean"), use_graph=True
    )


def test_lead1_the_first_graph_replay_sees_the_uploaded_data(monkeypatch):
    """A multi-MB X is uploaded asynchronously; the graph's stream must wait for it."""
    from sigmanet.backends.cupy import backend as cupy_backend

    monkeypatch.setattr(cupy_backend, "SMALL_LIMIT", -1)
    monkeypatch.setattr(cupy_backend, "GRAPH_LIMIT", 1 << 62)
    _agree_with_numpy([64, 8, 1], 1 << 18)


def test_lead3_the_graph_path_works_past_65535_row_tiles():
    """gemm_tiled puts rows on grid.y: above 1,048,560 rows that passes CUDA's 65535 limit."""
    tr = _graph_trainer((1 << 20) + 4096, [3, 4, 1])
    tr.run(0, 2)
    assert tr.graph is not None and tr.graph_error is None, tr.graph_error


@pytest.mark.parametrize("layers,rows", [([3, 1], 4), ([5, 8, 2], 37), ([4, 16, 9, 3], 200), ([16, 32, 4], 2048)])
def test_lead9_the_graph_engine_really_captures_a_graph(layers, rows):
    tr = _graph_trainer(rows, layers)
    tr.run(0, 2)
    assert tr.graph is not None and tr.graph_error is None, tr.graph_error


def test_lead9_medium_tables_take_the_graph_strategy_and_large_ones_eager():
    from sigmanet.backends.cupy import backend as cupy_backend

    b = get_backend("cupy")
    X, y = make_table(4096, 16, 4)
    medium = b.trainer(sn.Network([16, 32, 4]).weights, None, X, y, TrainConfig())
    assert isinstance(medium, cupy_backend.CupyGemmTrainer) and medium.use_graph
    rows = cupy_backend.GRAPH_LIMIT // (64 * 256 + 256 * 16) + 1024
    X, y = make_table(rows, 64, 16, dtype="float32")
    large = b.trainer(sn.Network([64, 256, 16], dtype="float32").weights, None, X, y, TrainConfig())
    assert isinstance(large, cupy_backend.CupyGemmTrainer) and not large.use_graph


def test_lead7_the_single_launch_kernel_near_the_shared_memory_limit(monkeypatch):
    """Static shared memory (offset tables) counts against the opt-in limit beside the dynamic buffer."""
    from sigmanet.backends.cupy import backend as cupy_backend

    monkeypatch.setattr(cupy_backend, "SMALL_LIMIT", 1 << 62)
    monkeypatch.setattr(cupy_backend, "SMALL_ROWS", 1 << 62)
    import cupy

    optin = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)["sharedMemPerBlockOptin"]
    layers, itemsize = [8, 8, 1], 4
    fixed = itemsize * (8 * 8 + 8 + 8 + 1)
    rows = (optin - fixed) // (2 * itemsize * sum(layers))  # dynamic shared memory just under the limit
    tr = get_backend("cupy").trainer(
        sn.Network(layers, dtype="float32").weights,
        None,
        *make_table(rows, 8, 1, dtype="float32"),
        TrainConfig(reduction="mean"),
    )
    tr.run(0, 2)  # must launch (or the strategy must not be chosen), not fail
    _agree_with_numpy(layers, rows, iterations=2)


@pytest.mark.parametrize(
    "rows,layers,strategy",
    [(4, [3, 4, 1], "FusedGpuTrainer"), (2048, [16, 32, 4], "graph"), (1 << 15, [64, 256, 16], "eager")],
)
def test_lead9_no_device_allocation_per_iteration_on_each_strategy(rows, layers, strategy, monkeypatch):
    from sigmanet.backends.cupy import backend as cupy_backend

    if strategy != "FusedGpuTrainer":
        monkeypatch.setattr(cupy_backend, "SMALL_LIMIT", -1)
        monkeypatch.setattr(cupy_backend, "GRAPH_LIMIT", 1 << 62 if strategy == "graph" else -1)
    X, y = make_table(rows, layers[0], layers[-1], seed=0, dtype="float32")
    b = get_backend("cupy")
    tr = b.trainer(sn.Network(layers, seed=0, dtype="float32").weights, None, X, y, TrainConfig())
    tr.run(0, 2)
    if strategy == "FusedGpuTrainer":
        assert type(tr).__name__ == strategy
    else:
        assert tr.use_graph == (strategy == "graph") and (strategy == "eager" or tr.graph is not None)
    assert b.memory_peak(lambda: tr.run(0, 20)) == b.memory_peak(lambda: tr.run(0, 40))


def test_predict_in_row_blocks_on_the_device_equals_numpy():
    X, _ = make_table(70000, 16, 4, dtype="float32")
    net = sn.Network([16, 64, 4], backend="cupy", seed=0, dtype="float32")
    ref = sn.Network([16, 64, 4], backend="numpy", seed=0, dtype="float32")
    np.testing.assert_allclose(net.predict(X), ref.predict(X), rtol=1e-5, atol=1e-7)


def test_graph_with_bias_and_split_weight_gradients_agrees_with_eager():
    """Tall, narrow nets: our weight-gradient GEMM splits the rows into partial sums; bias gradients too."""
    from sigmanet.backends.cupy import backend as cupy_backend

    rows, layers = 200_000, [3, 4, 1]
    X, y = make_table(rows, 3, 1, seed=2, dtype="float64")
    rng = np.random.default_rng(5)
    w = sn.Network(layers, seed=4).weights
    biases = [rng.standard_normal(n) for n in layers[1:]]
    b = get_backend("cupy")
    cfg = TrainConfig(reduction="mean", loss="bce")
    graph = cupy_backend.CupyGemmTrainer(b, w, biases, X, y, cfg, use_graph=True)
    eager = cupy_backend.CupyGemmTrainer(b, w, biases, X, y, cfg, use_graph=False)
    assert graph.g_parts[0].shape[0] > 1 and graph.gb_parts[0].shape[0] > 1  # really split
    e1, e2 = graph.run(0, 7), eager.run(0, 7)
    assert graph.graph is not None and graph.graph_error is None, graph.graph_error
    np.testing.assert_allclose(e1, e2, rtol=1e-9)
    (wg, bg), (we, be) = graph.weights(), eager.weights()
    for a, c in zip(wg + bg, we + be, strict=True):
        np.testing.assert_allclose(a, c, rtol=1e-9, atol=1e-12)


def test_an_interval_longer_than_one_launch_is_split_exactly(monkeypatch):
    """The single-launch kernel counts iterations in 32 bits: long intervals run as several launches."""
    from sigmanet.backends.cupy import backend as cupy_backend

    X, y = tutorial_table()
    w = sn.Network([3, 4, 1], seed=0, init="legacy").weights
    b = get_backend("cupy")
    whole = b.trainer(w, None, X, y, TrainConfig(batch_size=3))
    err_whole = whole.run(5, 50)
    monkeypatch.setattr(cupy_backend, "MAX_LAUNCH_ITERATIONS", 7)
    split = b.trainer(w, None, X, y, TrainConfig(batch_size=3))
    assert isinstance(split, cupy_backend.FusedGpuTrainer)
    assert split.run(5, 50) == err_whole
    np.testing.assert_array_equal(split.weights()[0][0], whole.weights()[0][0])


@pytest.mark.parametrize("tiles", [(1, 1), (8, 8), (8, 1), (1, 8), (2, 4)])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_gemm_tiled_every_tile_and_epilogue_matches_numpy(cp, tiles, dtype):
    """Our graph-path GEMM: every op(A) @ op(B), epilogue and register tile, on shapes that leave ragged edges."""
    from sigmanet.backends.cupy._cuda import kernels

    K_ = kernels(dtype)
    rng = np.random.default_rng(7)
    tol = dict(rtol=1e-12, atol=1e-12) if dtype == "float64" else dict(rtol=2e-5, atol=2e-5)
    for M, N, K in [(37, 70, 129), (300, 5, 17), (1, 140, 600)]:
        A, B = rng.standard_normal((M, K)).astype(dtype), rng.standard_normal((K, N)).astype(dtype)
        want = A.astype(np.float64) @ B
        for ta, tb in [(False, False), (True, False), (False, True)]:
            dA = cp.asarray(A.T.copy() if ta else A)
            dB = cp.asarray(B.T.copy() if tb else B)
            C = cp.full((M, N), np.nan, dtype)
            K_.gemm(dA, dB, C, ta=ta, tb=tb, tiles=tiles)
            np.testing.assert_allclose(C.get(), want, **tol)
            if ta:  # split over K: partials that sgd_update sums into w
                parts = cp.full((3, M, N), np.nan, dtype)
                K_.gemm(dA, dB, parts, ta=True, tiles=tiles)
                np.testing.assert_allclose(parts.get().sum(axis=0), want, **tol)
                W0 = rng.standard_normal((M, N)).astype(dtype)
                W = cp.asarray(W0)
                K_.sgd_update(W, parts, 0.5)
                np.testing.assert_allclose(W.get(), W0 + 0.5 * want, **tol)
                W = cp.asarray(W0)
                K_.gemm(dA, dB, W, ta=True, epilogue="sgd", scale=0.5, tiles=tiles)
                np.testing.assert_allclose(W.get(), W0 + 0.5 * want, **tol)
            elif tb:
                act = rng.random((M, N)).astype(dtype)
                K_.gemm(dA, dB, C, tb=True, epilogue="dsigmoid", E=cp.asarray(act), tiles=tiles)
                np.testing.assert_allclose(C.get(), want * act * (1 - act), **tol)
            else:
                bias = rng.standard_normal(N).astype(dtype)
                K_.gemm(dA, dB, C, epilogue="sigmoid", E=cp.asarray(bias), tiles=tiles)
                np.testing.assert_allclose(C.get(), 1 / (1 + np.exp(-(want + bias))), **tol)
                K_.gemm(dA, dB, C, epilogue="sigmoid", tiles=tiles)
                np.testing.assert_allclose(C.get(), 1 / (1 + np.exp(-want)), **tol)


@pytest.mark.parametrize("layers,batch_size", [([3, 4, 1], None), ([5, 8, 9, 3, 2], 7), ([4, 6, 2], 3)])
def test_the_kernel_compiled_for_a_shape_matches_the_generic_one(layers, batch_size, monkeypatch):
    from sigmanet.backends.cupy import backend as cupy_backend

    X, y = make_table(40, layers[0], layers[-1], seed=3)
    rng = np.random.default_rng(2)
    w = sn.Network(layers, seed=5).weights
    biases = [rng.standard_normal(n) for n in layers[1:]]
    cfg = TrainConfig(reduction="mean", batch_size=batch_size)
    b = get_backend("cupy")
    fixed = b.trainer(w, biases, X, y, cfg)
    monkeypatch.setattr(cupy_backend, "FIXED_SHAPE_WIDTH", 0)
    generic = b.trainer(w, biases, X, y, cfg)
    assert isinstance(fixed, cupy_backend.FusedGpuTrainer) and fixed.fixed_shape == tuple(layers)
    assert isinstance(generic, cupy_backend.FusedGpuTrainer) and generic.fixed_shape is None
    np.testing.assert_allclose(fixed.run(3, 30), generic.run(3, 30), rtol=1e-12)
    (wf, bf), (wg, bg) = fixed.weights(), generic.weights()
    for a, c in zip(wf + bf, wg + bg, strict=True):
        np.testing.assert_allclose(a, c, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("layers", [[8, 48, 40, 3], [6, 20, 12, 2]])
def test_eager_path_with_bias_and_mini_batches_agrees_with_numpy(layers, monkeypatch):
    """cuBLAS GEMMs, the fused epilogues and the bias GEMM (ones.T @ d), full batch and mini-batches."""
    from sigmanet.backends.cupy import backend as cupy_backend

    monkeypatch.setattr(cupy_backend, "SMALL_LIMIT", -1)
    monkeypatch.setattr(cupy_backend, "GRAPH_LIMIT", -1)
    _agree_with_numpy(layers, 300, dtype="float64", iterations=5, bias=True)
    _agree_with_numpy(layers, 300, dtype="float32", iterations=5, batch_size=64)
