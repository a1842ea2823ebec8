"""CuPy on a CUDA device: data stays there, each strategy is really taken, every option agrees with NumPy.

Every test here needs a usable CUDA device (``gpu`` marker) and skips, with the
reason, where there is none; benchmarks/gpu_check.sh runs them on a lent GPU.
The same kernels and backend code are checked on the CPU by
tests/test_cuda_emulation.py (an emulator of the CUDA dialect and of CuPy);
agreement through the ``engine`` fixture lives in test_backends_agree.py and
test_properties.py. Strategies are pinned by name (``"cupy:fused"``,
``"cupy:graph"``, ``"cupy:eager"``), and each test asserts the engine it ran.
"""

import contextlib
import threading

import numpy as np
import pytest

import sigmanet as sn
from sigmanet import optimizers
from sigmanet._plan import TrainConfig
from sigmanet.backends import get_backend
from sigmanet.datasets import make_table, tutorial_table

pytestmark = [pytest.mark.gpu, pytest.mark.usefixtures("_backend_cupy")]


@pytest.fixture
def cp():
    import cupy

    return cupy


def _tol(dtype):
    return dict(rtol=1e-9, atol=1e-12) if np.dtype(dtype) == np.float64 else dict(rtol=1e-4, atol=1e-6)


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
    seed = b.trainer(sn.Network([3, 4, 1]).weights, None, X, y, TrainConfig())
    assert isinstance(seed, cupy_backend.FusedGpuTrainer) and seed.warp  # the seed: one warp
    X, y = make_table(256, 16, 4)
    block = b.trainer(sn.Network([16, 32, 4]).weights, None, X, y, TrainConfig())
    assert isinstance(block, cupy_backend.FusedGpuTrainer) and not block.warp
    X, y = make_table(4096, 16, 4)
    medium = b.trainer(sn.Network([16, 32, 4]).weights, None, X, y, TrainConfig())
    assert isinstance(medium, cupy_backend.CupyGemmTrainer) and medium.use_graph
    rows = cupy_backend.GRAPH_LIMIT // (64 * 256 + 256 * 16) + 1024
    X, y = make_table(rows, 64, 16, dtype="float32")
    large = b.trainer(sn.Network([64, 256, 16], dtype="float32").weights, None, X, y, TrainConfig())
    assert isinstance(large, cupy_backend.CupyGemmTrainer) and not large.use_graph


def test_kernels_compile_once_per_dtype():
    from sigmanet.backends.cupy._cuda import kernels

    assert kernels("float32") is kernels("float32")
    assert kernels("float32") is not kernels("float64")


def test_device_name_is_reported():
    assert get_backend("cupy").device()


# -- every option on every engine, each engine asserted ------------------------------------------------

OPTIONS = [
    dict(),
    dict(loss="bce", optimizer="momentum", momentum=0.8, alpha=0.01, average_loss=True),
    dict(output="softmax", loss="cross_entropy", optimizer="nesterov", schedule="invscaling", power_t=0.3),
    dict(output="identity", loss="mse", optimizer="adam", learning_rate=0.02, alpha=0.05),
]


def _problem(rng, layers, rows, output, dtype, bias, weighted):
    X = rng.standard_normal((rows, layers[0])).astype(dtype)
    if output == "softmax":
        y = np.eye(layers[-1], dtype=dtype)[rng.integers(0, layers[-1], rows)]
    elif output == "identity":
        y = rng.standard_normal((rows, layers[-1])).astype(dtype)
    else:
        y = rng.random((rows, layers[-1])).astype(dtype)
    w = [(rng.standard_normal((p, q)) * 0.7).astype(dtype) for p, q in zip(layers, layers[1:])]
    b = [(rng.standard_normal(q) * 0.3).astype(dtype) for q in layers[1:]] if bias else None
    sw = (rng.random(rows) * 2 + 0.1).astype(dtype) if weighted else None
    return X, y, w, b, sw


def _agree(tr, ref, runs, dtype):
    tol = _tol(dtype)
    for start, n in runs:
        got, want = tr.run(start, n), ref.run(start, n)
        np.testing.assert_allclose([got.error, got.loss], [want.error, want.loss], **tol)
    assert tr.step == ref.step
    (wg, bg), (wr, br) = tr.weights(), ref.weights()
    for a, c in zip(wg + (bg or []), wr + (br or []), strict=True):
        np.testing.assert_allclose(a, c, **tol)
    got, want = tr.optimizer_arrays(), ref.optimizer_arrays()
    assert set(got) == set(want)
    for name in want:
        for a, c in zip(got[name], want[name], strict=True):
            np.testing.assert_allclose(a, c, **tol)


ENGINES = [  # (pinned strategy, layers, rows, batch_size, what must run)
    ("fused", [3, 4, 1], 4, None, "warp"),
    ("fused", [2, 5, 3], 37, 4, "warp"),
    ("fused", [5, 8, 9, 3, 2], 41, 7, "block"),
    ("fused", [6, 70, 3], 50, None, "generic"),
    ("graph", [5, 8, 9, 3], 3000, None, "graph"),
    ("graph", [3, 4, 1], 20_000, None, "graph"),
    ("eager", [5, 8, 9, 3], 3000, 256, "eager"),
]


@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: o.get("optimizer", "sgd"))
@pytest.mark.parametrize("strategy,layers,rows,batch_size,kind", ENGINES)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_every_engine_agrees_with_numpy_on_every_option(rng, strategy, layers, rows, batch_size, kind, options, dtype):
    from sigmanet.backends.cupy import backend as cupy_backend

    cfg = TrainConfig(**{"learning_rate": 0.3, "reduction": "mean", "batch_size": batch_size, **options})
    for bias, weighted in ((True, True), (False, False)):
        X, y, w, b, sw = _problem(rng, layers, rows, cfg.output, dtype, bias, weighted)
        params = w + (b or [])
        state = optimizers.OptimizerState(
            cfg.optimizer, 3, {k: tuple(np.abs(rng.standard_normal(p.shape) * 0.01).astype(dtype) for p in params)
                               for k in optimizers.SLOTS[cfg.optimizer]})  # fmt: skip
        tr = get_backend(f"cupy:{strategy}").trainer(w, b, X, y, cfg, sw, state)
        if kind in ("warp", "block", "generic"):
            assert isinstance(tr, cupy_backend.FusedGpuTrainer) and tr.warp == (kind == "warp")
            assert (tr.fixed_shape is None) == (kind == "generic")
        else:
            assert isinstance(tr, cupy_backend.CupyGemmTrainer) and tr.use_graph == (kind == "graph")
        ref = get_backend("numpy").trainer(w, b, X, y, cfg, sw, state)
        _agree(tr, ref, [(0, 5), (5, 4)], dtype)
        if kind == "graph":
            assert tr.graph is not None and tr.graph_error is None, tr.graph_error


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_the_warp_kernel_equals_the_block_kernel_on_the_seed(dtype):
    X, y = tutorial_table(dtype)
    w = sn.Network([3, 4, 1], seed=1, init="legacy", dtype=dtype).weights
    warp = get_backend("cupy:fused").trainer(w, None, X, y, TrainConfig())
    block = get_backend("cupy:fused").trainer(w, None, X, y, TrainConfig())
    block.warp = False
    assert warp.warp
    e1, e2 = warp.run(0, 3000), block.run(0, 3000)
    np.testing.assert_allclose(e1.error, e2.error, **_tol(dtype))
    np.testing.assert_allclose(warp.weights()[0][0], block.weights()[0][0], **_tol(dtype))


def test_the_graph_follows_the_schedule_across_intervals_without_recapture(rng):
    cfg = TrainConfig(learning_rate=0.05, optimizer="adam", schedule="invscaling", reduction="mean")
    X, y, w, b, _ = _problem(rng, [16, 32, 4], 4096, "sigmoid", "float64", True, False)
    tr = get_backend("cupy:graph").trainer(w, b, X, y, cfg)
    ref = get_backend("numpy").trainer(w, b, X, y, cfg)
    tr.run(0, 1)
    ref.run(0, 1)
    graph = tr.graph
    _agree(tr, ref, [(1, 3), (10, 4)], "float64")  # a gap: the iteration number comes from `start`
    assert tr.graph is graph


# -- streams (issue 26 item 4) and devices (issue 24 item 4) ----------------------------------------


class _Recorder:
    """Wraps a callable, noting the current stream's pointer at each call."""

    def __init__(self, fn, seen):
        self.fn, self.seen = fn, seen

    def __call__(self, *args, **kwargs):
        import cupy

        self.seen.append(cupy.cuda.get_current_stream().ptr)
        return self.fn(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.fn, name)


def _record_streams(cp, monkeypatch) -> list[int]:
    """The list that every kernel launch and matmul from here on appends its current stream to."""
    from sigmanet.backends.cupy import _cuda

    seen: list[int] = []
    K = _cuda.kernels("float64", cp.cuda.Device().id)
    for name in list(K.fn):
        monkeypatch.setitem(K.fn, name, _Recorder(K.fn[name], seen))
    real_instance = K.instance
    monkeypatch.setattr(K, "instance", lambda name: _Recorder(real_instance(name), seen))
    monkeypatch.setattr(cp, "matmul", _Recorder(cp.matmul, seen))
    return seen


@pytest.mark.parametrize("strategy", ["fused", "graph", "eager"])
def test_work_goes_to_the_callers_current_stream_or_the_given_one(cp, strategy, monkeypatch):
    from sigmanet.backends.cupy.backend import CupyBackend

    X, y = make_table(2048 if strategy != "fused" else 64, 8, 2, seed=0)
    w = sn.Network([8, 16, 2], seed=0).weights
    seen = _record_streams(cp, monkeypatch)
    for where in ("current", "given"):
        seen.clear()
        stream = cp.cuda.Stream(non_blocking=True)
        backend = CupyBackend(strategy=strategy, stream=stream if where == "given" else None)
        with stream if where == "current" else contextlib.nullcontext():
            tr = backend.trainer(w, None, X, y, TrainConfig(reduction="mean"))
            tr.run(0, 3)
        if strategy != "graph":
            assert seen and set(seen) == {stream.ptr}, (where, seen)
            continue
        assert tr.graph is not None, tr.graph_error
        launched = []
        tr.graph = _GraphRecorder(tr.graph, launched)
        with stream if where == "current" else contextlib.nullcontext():
            tr.run(3, 2)
        assert launched == [stream.ptr] * 2


@pytest.mark.parametrize("strategy", ["fused", "eager"])
@pytest.mark.parametrize("kind", ["cupy", "torch"])
def test_fit_and_predict_run_on_a_stream_given_to_them(cp, strategy, kind, monkeypatch):
    if kind == "torch":
        torch = pytest.importorskip("torch")
        if not torch.cuda.is_available():
            pytest.skip("PyTorch sees no CUDA device")
        stream = torch.cuda.Stream()
        handle = stream.cuda_stream
    else:
        stream = cp.cuda.Stream(non_blocking=True)
        handle = stream.ptr
    X, y = make_table(2048 if strategy != "fused" else 64, 8, 2, seed=0)
    seen = _record_streams(cp, monkeypatch)
    net = sn.Network([8, 16, 2], backend=f"cupy:{strategy}", seed=0)
    net.fit(cp.asarray(X), cp.asarray(y), iterations=3, reduction="mean", stream=stream)
    out = net.predict(cp.asarray(X), stream=stream)
    assert seen and set(seen) == {handle}, seen
    ref = sn.Network([8, 16, 2], backend="numpy", seed=0)
    ref.fit(X, y, iterations=3, reduction="mean")
    np.testing.assert_allclose(cp.asnumpy(out), ref.predict(X), rtol=1e-9)


class _GraphRecorder:
    def __init__(self, graph, launched):
        self.graph, self.launched = graph, launched

    def launch(self, stream=None):
        self.launched.append(stream.ptr)
        self.graph.launch(stream)


def test_arrays_of_another_device_train_there(cp):
    if cp.cuda.runtime.getDeviceCount() < 2:
        pytest.skip("one CUDA device here: the placement is tested on the CPU emulator with two")
    X, y = tutorial_table()
    with cp.cuda.Device(1):
        Xd, yd = cp.asarray(X), cp.asarray(y)
    net = sn.Network([3, 4, 1], backend="cupy", seed=1, init="legacy")
    net.fit(Xd, yd, iterations=50)
    ref = sn.Network([3, 4, 1], backend="numpy", seed=1, init="legacy")
    ref.fit(X, y, iterations=50)
    np.testing.assert_allclose(net.weights[0], ref.weights[0], rtol=1e-9)


def test_dask_arrays_of_cupy_chunks_train_on_their_gpu_and_agree_with_in_memory_cupy(cp):
    """One worker on this GPU (dask-cuda's layout: one per GPU), CuPy chunks, a distributed cluster."""
    da = pytest.importorskip("dask.array", reason="Dask is not installed here (benchmarks/gpu_check.sh carries it)")
    distributed = pytest.importorskip("distributed", reason="distributed is not installed here")
    X, y = make_table(4096, 8, 2, seed=4, dtype="float32")
    sw = np.random.default_rng(1).random(4096).astype("float32") + 0.5
    Xd = da.from_array(cp.asarray(X), chunks=(1024, -1), asarray=False)
    yd = da.from_array(cp.asarray(y), chunks=(1024, -1), asarray=False)
    swd = da.from_array(cp.asarray(sw), chunks=(1024,), asarray=False)
    fit = dict(iterations=6, report_every=2, reduction="mean", optimizer="adam", learning_rate=0.05)
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0") as lc:
        with distributed.Client(lc):
            net = sn.Network([8, 16, 2], backend="cupy", seed=0, dtype="float32", bias=True)
            h = net.fit(Xd, yd, sample_weight=swd, **fit)
    ref = sn.Network([8, 16, 2], backend="cupy", seed=0, dtype="float32", bias=True)
    h_ref = ref.fit(cp.asarray(X), cp.asarray(y), sample_weight=cp.asarray(sw), **fit)
    np.testing.assert_allclose(h.errors, h_ref.errors, rtol=1e-4)
    np.testing.assert_allclose(h.losses, h_ref.losses, rtol=1e-4)
    for a, c in zip(net.weights, ref.weights, strict=True):
        np.testing.assert_allclose(a, c, rtol=1e-4, atol=1e-6)


# -- checks for the leads of shared/GPU-REVIEW.md (each fails where the lead is real) --


def _agree_with_numpy(layers, rows, dtype="float32", iterations=3, bias=False, backend="cupy", **fit):
    X, y = make_table(rows, layers[0], layers[-1], seed=1, dtype=dtype)
    ref = sn.Network(layers, backend="numpy", seed=3, dtype=dtype, bias=bias)
    net = sn.Network(layers, backend=backend, seed=3, dtype=dtype, bias=bias)
    h_ref = ref.fit(X, y, iterations=iterations, report_every=1, reduction="mean", **fit)
    h = net.fit(X, y, iterations=iterations, report_every=1, reduction="mean", **fit)
    tol = dict(rtol=1e-4, atol=1e-6) if dtype == "float32" else dict(rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(h.errors, h_ref.errors, **tol)
    np.testing.assert_allclose(h.losses, h_ref.losses, **tol)
    for a, b in zip(net.weights, ref.weights, strict=True):
        np.testing.assert_allclose(a, b, **tol)


def _graph_trainer(rows, layers, dtype="float32"):
    X, y = make_table(rows, layers[0], layers[-1], seed=1, dtype=dtype)
    w = sn.Network(layers, seed=3, dtype=dtype).weights
    return get_backend("cupy:graph").trainer(w, None, X, y, TrainConfig(reduction="mean"))


def test_the_first_graph_replay_sees_the_uploaded_data():
    """A multi-MB X is uploaded asynchronously; the replay's stream must wait for it."""
    _agree_with_numpy([64, 8, 1], 1 << 18, backend="cupy:graph")


def test_the_graph_path_works_past_65535_row_tiles():
    """gemm_tiled puts rows on grid.x: above 1,048,560 rows grid.y would pass CUDA's 65535 limit."""
    tr = _graph_trainer((1 << 20) + 4096, [3, 4, 1])
    tr.run(0, 2)
    assert tr.graph is not None and tr.graph_error is None, tr.graph_error


@pytest.mark.parametrize("layers,rows", [([3, 1], 4), ([5, 8, 2], 37), ([4, 16, 9, 3], 200), ([16, 32, 4], 2048)])
def test_the_graph_engine_really_captures_a_graph(layers, rows):
    tr = _graph_trainer(rows, layers)
    tr.run(0, 2)
    assert tr.graph is not None and tr.graph_error is None, tr.graph_error


@pytest.mark.parametrize(
    "rows,layers,dtype",
    [(1 << 20, [3, 4, 1], "float64"), (4096, [64, 256, 16], "float32"), (999, [5, 13, 3], "float64")],
)
def test_the_graph_on_gemm_warp_agrees_with_numpy(rows, layers, dtype):
    """The graph iteration with gemm_warp for every GEMM: split tall narrow gradients, 16-byte rows, ragged ones."""
    from sigmanet.backends.cupy.backend import CupyBackend

    X, y = make_table(rows, layers[0], layers[-1], seed=2, dtype=dtype)
    rng = np.random.default_rng(6)
    w = sn.Network(layers, seed=4, dtype=dtype).weights
    biases = [rng.standard_normal(n).astype(dtype) for n in layers[1:]]
    cfg = TrainConfig(reduction="mean", optimizer="nesterov", learning_rate=0.5, alpha=0.001)
    graph = CupyBackend(strategy="graph", gemm="warp").trainer(w, biases, X, y, cfg)
    ref = get_backend("numpy").trainer(w, biases, X, y, cfg)
    e1, e2 = graph.run(0, 4), ref.run(0, 4)
    assert graph.graph is not None and graph.graph_error is None, graph.graph_error
    tol = dict(rtol=1e-4, atol=1e-6) if dtype == "float32" else dict(rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose([e1.error, e1.loss], [e2.error, e2.loss], **tol)
    for a, c in zip(sum(graph.weights(), []), sum(ref.weights(), []), strict=True):
        np.testing.assert_allclose(a, c, **tol)


def test_tall_narrow_nets_on_the_graph_agree_with_eager():
    """1M x 3-4-1 (issue 24 item 3): the split weight gradients, biases too."""
    rows, layers = 1 << 20, [3, 4, 1]
    X, y = make_table(rows, 3, 1, seed=2, dtype="float64")
    rng = np.random.default_rng(5)
    w = sn.Network(layers, seed=4).weights
    biases = [rng.standard_normal(n) for n in layers[1:]]
    cfg = TrainConfig(reduction="mean", loss="bce")
    graph = get_backend("cupy:graph").trainer(w, biases, X, y, cfg)
    eager = get_backend("cupy:eager").trainer(w, biases, X, y, cfg)
    assert graph.g_parts[0].shape[0] > 1 and graph.gb_parts[0].shape[0] > 1  # really split
    e1, e2 = graph.run(0, 7), eager.run(0, 7)
    assert graph.graph is not None and graph.graph_error is None, graph.graph_error
    np.testing.assert_allclose([e1.error, e1.loss], [e2.error, e2.loss], rtol=1e-9)
    (wg, bg), (we, be) = graph.weights(), eager.weights()
    for a, c in zip(wg + bg, we + be, strict=True):
        np.testing.assert_allclose(a, c, rtol=1e-9, atol=1e-12)


def test_the_single_launch_kernel_near_the_shared_memory_limit(cp):
    """Static shared memory (offset tables) counts against the opt-in limit beside the dynamic buffer."""
    optin = cp.cuda.runtime.getDeviceProperties(cp.cuda.Device().id)["sharedMemPerBlockOptin"]
    layers, itemsize = [8, 8, 1], 4
    fixed = itemsize * (8 * 8 + 8 + 8 + 1)
    rows = (optin - fixed) // (2 * itemsize * sum(layers))  # dynamic shared memory just under the limit
    tr = get_backend("cupy:fused").trainer(
        sn.Network(layers, dtype="float32").weights,
        None,
        *make_table(rows, 8, 1, dtype="float32"),
        TrainConfig(reduction="mean"),
    )
    tr.run(0, 2)  # must launch (or the strategy must not be chosen), not fail
    _agree_with_numpy(layers, rows, iterations=2, backend="cupy:fused")


@pytest.mark.parametrize(
    "rows,layers,strategy", [(4, [3, 4, 1], "fused"), (2048, [16, 32, 4], "graph"), (1 << 15, [64, 256, 16], "eager")]
)
def test_no_device_allocation_per_iteration_on_each_strategy(rows, layers, strategy):
    from sigmanet.backends.cupy import backend as cupy_backend

    X, y = make_table(rows, layers[0], layers[-1], seed=0, dtype="float32")
    b = get_backend(f"cupy:{strategy}")
    cfg = TrainConfig(optimizer="adam", learning_rate=0.01, alpha=0.01, average_loss=True)
    tr = b.trainer(sn.Network(layers, seed=0, dtype="float32").weights, None, X, y, cfg)
    tr.run(0, 2)
    if strategy == "fused":
        assert isinstance(tr, cupy_backend.FusedGpuTrainer)
    else:
        assert tr.use_graph == (strategy == "graph") and (strategy == "eager" or tr.graph is not None)
    assert b.memory_peak(lambda: tr.run(0, 20)) == b.memory_peak(lambda: tr.run(0, 40))


def test_predict_in_row_blocks_on_the_device_equals_numpy():
    X, _ = make_table(70000, 16, 4, dtype="float32")
    net = sn.Network([16, 64, 4], backend="cupy", seed=0, dtype="float32")
    ref = sn.Network([16, 64, 4], backend="numpy", seed=0, dtype="float32")
    np.testing.assert_allclose(net.predict(X), ref.predict(X), rtol=1e-5, atol=1e-7)


def test_an_interval_longer_than_one_launch_is_split_exactly(monkeypatch):
    """The single-launch kernel counts iterations in 32 bits: long intervals run as several launches."""
    from sigmanet.backends.cupy import backend as cupy_backend

    X, y = tutorial_table()
    w = sn.Network([3, 4, 1], seed=0, init="legacy").weights
    cfg = TrainConfig(batch_size=3, average_loss=True, optimizer="momentum", learning_rate=0.5)
    whole = get_backend("cupy:fused").trainer(w, None, X, y, cfg)
    s_whole = whole.run(5, 50)
    monkeypatch.setattr(cupy_backend, "MAX_LAUNCH_ITERATIONS", 7)
    split = get_backend("cupy:fused").trainer(w, None, X, y, cfg)
    s_split = split.run(5, 50)
    np.testing.assert_array_equal(s_split.values[:2], s_whole.values[:2])  # the first step's error
    np.testing.assert_allclose(s_split.values, s_whole.values, rtol=1e-13)  # losses summed per launch, then added
    np.testing.assert_array_equal(split.weights()[0][0], whole.weights()[0][0])


def _our_gemms():
    """(dtype, kernel, tiles): gemm_tiled's extreme register tiles and every tiling of gemm_warp."""
    from sigmanet.backends.cupy._cuda import warp_tilings

    cases = []
    for dtype, T in (("float64", "double"), ("float32", "float")):
        cases += [(dtype, "tiled", t) for t in [(1, 1), (8, 8), (8, 1), (1, 8), (2, 4)]]
        cases += [(dtype, "warp", t) for t in warp_tilings(T)]
    return cases


@pytest.mark.parametrize("dtype,kernel,tiles", _our_gemms())
def test_our_gemms_match_numpy_on_every_tile_and_epilogue(cp, dtype, kernel, tiles):
    """The graph path's GEMMs: every op(A) @ op(B), epilogue and tile, on shapes that leave ragged edges
    and one whose rows all take 16-byte loads and stores (gemm_warp's vector path)."""
    from sigmanet.backends.cupy._cuda import kernels, settings

    K_ = kernels(dtype)
    rng = np.random.default_rng(7)
    tol = dict(rtol=1e-12, atol=1e-12) if dtype == "float64" else dict(rtol=2e-5, atol=2e-5)
    cfg = cp.asarray(settings(TrainConfig(learning_rate=0.5), 10, 1.0))
    counters = cp.asarray(np.array([1, 0], np.int64))
    for M, N, K in [(37, 70, 129), (300, 5, 17), (1, 140, 600), (256, 64, 96)]:
        A, B = rng.standard_normal((M, K)).astype(dtype), rng.standard_normal((K, N)).astype(dtype)
        want = A.astype(np.float64) @ B
        for ta, tb in [(False, False), (True, False), (False, True)]:
            dA = cp.asarray(A.T.copy() if ta else A)
            dB = cp.asarray(B.T.copy() if tb else B)
            C = cp.full((M, N), np.nan, dtype)
            K_.gemm(dA, dB, C, ta=ta, tb=tb, tiles=tiles, kernel=kernel)
            np.testing.assert_allclose(C.get(), want, **tol)
            if ta:  # split over K: partials that optimizer_step sums into w
                parts = cp.full((3, M, N), np.nan, dtype)
                K_.gemm(dA, dB, parts, ta=True, tiles=tiles, kernel=kernel)
                np.testing.assert_allclose(parts.get().sum(axis=0), want, **tol)
                W0 = rng.standard_normal((M, N)).astype(dtype)
                W = cp.asarray(W0)
                K_.optimizer_step(W, parts, (None, None), decayed=True, cfg=cfg, counters=counters)
                np.testing.assert_allclose(W.get(), W0 + 0.5 * want, **tol)
                W = cp.asarray(W0)
                K_.gemm(dA, dB, W, ta=True, epilogue="step", cfg=cfg, counters=counters, tiles=tiles, kernel=kernel)
                np.testing.assert_allclose(W.get(), W0 + 0.5 * want, **tol)
            elif tb:
                act = rng.random((M, N)).astype(dtype)
                K_.gemm(dA, dB, C, tb=True, epilogue="dsigmoid", E=cp.asarray(act), tiles=tiles, kernel=kernel)
                np.testing.assert_allclose(C.get(), want * act * (1 - act), **tol)
            else:
                bias = rng.standard_normal(N).astype(dtype)
                K_.gemm(dA, dB, C, epilogue="sigmoid", E=cp.asarray(bias), tiles=tiles, kernel=kernel)
                np.testing.assert_allclose(C.get(), 1 / (1 + np.exp(-(want + bias))), **tol)
                K_.gemm(dA, dB, C, epilogue="bias", E=cp.asarray(bias), tiles=tiles, kernel=kernel)
                np.testing.assert_allclose(C.get(), want + bias, **tol)


@pytest.mark.parametrize("layers,batch_size", [([3, 4, 1], None), ([5, 8, 9, 3, 2], 7), ([4, 6, 2], 3)])
def test_the_kernel_compiled_for_a_shape_matches_the_generic_one(layers, batch_size):
    X, y = make_table(40, layers[0], layers[-1], seed=3)
    rng = np.random.default_rng(2)
    w = sn.Network(layers, seed=5).weights
    biases = [rng.standard_normal(n) for n in layers[1:]]
    cfg = TrainConfig(reduction="mean", batch_size=batch_size, optimizer="nesterov", learning_rate=0.3)
    fixed = get_backend("cupy:fused").trainer(w, biases, X, y, cfg)
    generic = get_backend("cupy:fused").trainer(w, biases, X, y, cfg)
    fixed.warp = generic.warp = False
    generic.fixed_shape = None
    assert fixed.fixed_shape == tuple(layers)
    np.testing.assert_allclose(fixed.run(3, 30).values, generic.run(3, 30).values, rtol=1e-12)
    (wf, bf), (wg, bg) = fixed.weights(), generic.weights()
    for a, c in zip(wf + bf, wg + bg, strict=True):
        np.testing.assert_allclose(a, c, rtol=1e-12, atol=1e-14)


def test_shuffled_mini_batches_gather_on_the_device_and_agree_with_numpy():
    """xp.take on CuPy (issue 24 item 3), on the single launch and the eager engine."""
    for layers, rows in (([5, 8, 2], 200), ([16, 64, 4], 4000)):
        _agree_with_numpy(layers, rows, dtype="float64", iterations=6, batch_size=64, shuffle=True)


def test_a_sparse_first_layer_agrees_with_numpy():
    sp = pytest.importorskip("scipy.sparse")
    X = sp.random(500, 30, density=0.1, format="csr", random_state=0, dtype=np.float64)
    y = np.random.default_rng(0).random((500, 2))
    for backend in ("cupy:fused", "cupy:graph", "cupy:eager"):
        net = sn.Network([30, 8, 2], backend=backend, seed=0)
        ref = sn.Network([30, 8, 2], backend="numpy", seed=0)
        h, h_ref = (n.fit(X, y, iterations=5, report_every=1, reduction="mean") for n in (net, ref))
        np.testing.assert_allclose(h.errors, h_ref.errors, rtol=1e-9)


def test_a_second_thread_with_its_own_stream_trains_independently(cp):
    """Streams are per thread in CuPy: two fits on two threads, each on its own stream, both exact."""
    X, y = make_table(3000, 8, 2, seed=0)
    ref = sn.Network([8, 16, 2], backend="numpy", seed=0)
    ref.fit(X, y, iterations=10, reduction="mean")
    nets = [sn.Network([8, 16, 2], backend="cupy", seed=0) for _ in range(2)]

    def fit(net):
        with cp.cuda.Stream(non_blocking=True):
            net.fit(X, y, iterations=10, reduction="mean")

    threads = [threading.Thread(target=fit, args=(n,)) for n in nets]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for net in nets:
        np.testing.assert_allclose(net.weights[0], ref.weights[0], rtol=1e-9)
