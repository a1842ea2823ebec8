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
    from sigmanet.backends import cupy_backend

    b = get_backend("cupy")
    X, y = tutorial_table()
    assert isinstance(b.trainer(sn.Network([3, 4, 1]).weights, None, X, y, TrainConfig()),
                      cupy_backend.FusedGpuTrainer)
    X, y = make_table(1 << 16, 64, 16)
    big = b.trainer(sn.Network([64, 256, 16]).weights, None, X, y, TrainConfig())
    assert isinstance(big, cupy_backend.CupyGemmTrainer)


def test_graph_capture_succeeds_and_matches_eager(monkeypatch):
    from sigmanet.backends import cupy_backend

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


@pytest.mark.parametrize("rows,layers", [(4, [3, 4, 1]), (2048, [16, 32, 4]), (1 << 15, [64, 256, 16])])
def test_no_device_allocation_per_iteration(rows, layers):
    X, y = make_table(rows, layers[0], layers[-1], seed=0, dtype="float32")
    b = get_backend("cupy")
    tr = b.trainer(sn.Network(layers, seed=0, dtype="float32").weights, None, X, y, TrainConfig())
    tr.run(0, 2)
    assert b.memory_peak(lambda: tr.run(0, 20)) == b.memory_peak(lambda: tr.run(0, 40))


def test_kernels_compile_once_per_dtype():
    from sigmanet.backends._cuda import kernels

    assert kernels("float32") is kernels("float32")
    assert kernels("float32") is not kernels("float64")


def test_device_name_is_reported():
    assert get_backend("cupy").device()
