"""The CUDA kernels, verified on the CPU: kernels/sigmanet.cu compiled by g++ against a CUDA shim.

tests/cuda_emulation/ holds the shim (each block as blockDim threads with real
barriers, warp shuffles exchanged through memory), a ctypes launcher that checks
every argument's width against the kernel's parameters, and a stand-in ``cupy``
module whose RawModule runs the kernels there. With it the CuPy backend's own
code (its wrappers, strategies, graph capture, streams, devices) runs here and
is compared with the NumPy backend: the kernels' math and the backend's wiring
are tested, not the GPU's speed or its memory model (benchmarks/gpu_check.sh
runs the same checks on a device).

The library is built once per session (in pytest's temporary root, reused
while the sources do not change); instances a test needs beyond the prebuilt
list are built when asked for.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pytest

import sigmanet as sn
from sigmanet import optimizers
from sigmanet._plan import LOSS_CODE, OPTIMIZER_CODE, OUTPUT_CODE, TrainConfig, loss_eps
from sigmanet.backends.cupy import _cuda
from sigmanet.backends.numpy_backend import NumpyBackend
from sigmanet.backends.reference import row_losses

sys.path.insert(0, str(Path(__file__).resolve().parent / "cuda_emulation"))
import emulator
import fake_cupy

pytestmark = pytest.mark.skipif(emulator.compiler_missing() is not None, reason=str(emulator.compiler_missing()))

SOURCE = Path(__file__).resolve().parent.parent / "kernels" / "sigmanet.cu"


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    folder = tmp_path_factory.getbasetemp().parent / "sigmanet-cuda-emulator"
    return fake_cupy.session_library(folder), folder


@pytest.fixture
def cp(library):
    lib, folder = library
    with fake_cupy.installed(library=lib, build_dir=folder) as module:
        yield module


def _tol(dtype):
    return dict(rtol=1e-9, atol=1e-11) if np.dtype(dtype) == np.float64 else dict(rtol=1e-4, atol=1e-5)


# -- the layouts the kernels and the wrappers share ------------------------------------------------


def _defines(prefix):
    return {m[1]: int(m[2]) for m in re.finditer(rf"#define {prefix}(\w+) (\d+)", SOURCE.read_text())}


def test_the_source_and_the_wrappers_share_every_code_and_layout():
    assert _defines("SN_CFG_") == {**_cuda.CFG_INDEX, "SIZE": _cuda.CFG_SIZE}
    assert _defines("SN_ACC_") == {**_cuda.ACC_INDEX, "SIZE": _cuda.ACC_SIZE}
    assert _defines("SN_COUNT_") == _cuda.COUNT_INDEX
    assert _defines("SN_EPI_") == {k.upper(): v for k, v in _cuda.EPILOGUES.items()}
    assert _defines("SN_OUT_") == {k.upper(): v for k, v in OUTPUT_CODE.items()}
    assert _defines("SN_LOSS_") == {"MSE": 0, "BCE": 1, "CE": 2} and LOSS_CODE == {"mse": 0, "bce": 1,
                                                                                  "cross_entropy": 2}  # fmt: skip
    assert _defines("SN_OPT_") == {k.upper(): v for k, v in OPTIMIZER_CODE.items()}


def test_a_launch_with_a_wrong_argument_width_or_count_fails_naming_it(cp):
    K = _cuda.kernels("float64")
    a = cp.zeros((4, 3))
    with pytest.raises(emulator.EmulationError, match="argument 3 is 4 bytes, the kernel's parameter 8"):
        K.fn["output_delta"]((1,), (32,), (a, a, a, np.int32(12), np.int32(0), np.uint64(0)))
    with pytest.raises(emulator.EmulationError, match="takes 6 arguments, the launch passed 5"):
        K.fn["output_delta"]((1,), (32,), (a, a, a, np.int64(12), np.int32(0)))


def test_a_shuffle_on_a_partial_warp_is_refused(cp):
    """output_delta reduces with full-warp shuffles: a block of 48 threads leaves warp 1 half empty."""
    K = _cuda.kernels("float64")
    y, a, d, err = cp.zeros((4, 3)), cp.zeros((4, 3)), cp.zeros((4, 3)), cp.zeros(1)
    with pytest.raises(emulator.EmulationError, match="names lanes that do not exist"):
        K.fn["output_delta"]((1,), (48,), (y, a, d, np.int64(12), np.int32(0), err))


def test_numpy_arrays_cannot_reach_a_kernel_or_mix_with_device_arrays(cp):
    K = _cuda.kernels("float64")
    with pytest.raises(emulator.EmulationError, match="NumPy array cannot be a kernel argument"):
        K.fn["hidden_delta"]((1,), (32,), (np.zeros(3), cp.zeros(3), np.int64(3)))
    with pytest.raises(TypeError):
        cp.zeros(3) + np.ones(3)
    with pytest.raises(TypeError, match="Implicit conversion"):
        np.asarray(cp.zeros(3))


BROKEN = r"""
template <typename T>
__global__ void no_barrier(T* out)  // thread 0 writes what all read, with no __syncthreads between
{
    __shared__ T value;
    if (threadIdx.x == 0) value = T(7);
    out[threadIdx.x] = value;
}
template <typename T>
__global__ void divergent_barrier(T* out)  // half the block waits at __syncthreads, the other half at __syncwarp
{
    if (threadIdx.x < 16)
        __syncthreads();
    else
        __syncwarp();
    out[threadIdx.x] = T(1);
}
"""


def test_the_emulator_shows_a_missing_barrier_and_refuses_a_divergent_one(library):
    """The harness's own checks: the threads run in a shuffled order, and a barrier all must reach is checked."""
    lib = emulator.build(BROKEN, ["no_barrier<double>", "divergent_barrier<double>"], (), library[1])

    class Out:
        def __init__(self, a):
            self.a = a

        def __sn_emu_pointer__(self):
            return self.a.ctypes.data

    seen = set()
    for _ in range(3):  # each launch's first block is shuffled the same way: fresh values, same order
        out = np.zeros(64)
        lib.launch("no_barrier<double>", 1, 64, [Out(out)])
        seen |= set(out.tolist())
    assert 7.0 in seen and len(seen) > 1, "some threads read before thread 0 wrote, others after"
    with pytest.raises(emulator.EmulationError, match="barrier that not every live thread reaches"):
        lib.launch("divergent_barrier<double>", 1, 32, [Out(np.zeros(32))])


@pytest.mark.slow
def test_with_os_threads_the_kernels_agree_too(library, rng):
    """Each block's threads as OS threads (true concurrency) on the single launch, the graph's kernels and a GEMM."""
    lib = emulator.build(
        _cuda.kernel_source(),
        ["train_small<double>", _cuda.warp_name("double", [3, 4, 1]), "output_step<double>", "optimizer_step<double>",
         "forward_sigmoid<double>", "hidden_delta<double>", "output_delta<double>", "sgd_update<double>",
         "train_small<float>", "forward_sigmoid<float>", "output_delta<float>", "hidden_delta<float>",
         "sgd_update<float>", "output_step<float>", "optimizer_step<float>",
         _cuda.gemm_name("double", 0, 0, 1, 1, "sigmoid"), _cuda.gemm_name("double", 1, 0, 1, 1, "store")],
        _cuda.compile_options(),
        library[1],
        threads=True,
    )  # fmt: skip
    lib.code = _cuda.kernel_source()
    with fake_cupy.installed(library=lib, build_dir=library[1]) as cp:
        for kernel, layers, rows, batch in (("warp", [3, 4, 1], 4, None), ("generic", [4, 6, 3], 9, 4)):
            _single_launch(cp, rng, kernel, layers, rows, batch, OPTIONS[3], "float64", True, True)
        _gemm_cases(cp, rng, "float64", (1, 1), [(20, 9, 40)])


# -- the epilogues around cuBLAS, and the graph's elementwise kernels ---------------------------------


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_elementwise_epilogues_match_numpy(cp, rng, dtype):
    K, tol = _cuda.kernels(dtype), _tol(dtype)
    m, n = int(rng.integers(1, 40)), int(rng.integers(1, 9))
    z = rng.standard_normal((m, n)).astype(dtype) * 4
    b = rng.standard_normal(n).astype(dtype)
    dz = cp.asarray(z)
    K.forward_sigmoid(dz, cp.asarray(b))
    np.testing.assert_allclose(dz.get(), 1 / (1 + np.exp(-(z + b))), **tol)
    dz = cp.asarray(z)
    K.forward_sigmoid(dz, None)
    np.testing.assert_allclose(dz.get(), 1 / (1 + np.exp(-z)), **tol)
    y, a = rng.random((m, n)).astype(dtype), rng.random((m, n)).astype(dtype)
    for bce in (0, 1):
        d, err = cp.zeros((m, n), dtype), cp.zeros(1)
        K.output_delta(cp.asarray(y), cp.asarray(a), d, bce, err)
        np.testing.assert_allclose(d.get(), (y - a) if bce else (y - a) * a * (1 - a), **tol)
        np.testing.assert_allclose(err.get()[0], np.abs(y - a).sum(), **tol)
    d0 = rng.standard_normal((m, n)).astype(dtype)
    d = cp.asarray(d0)
    K.hidden_delta(d, cp.asarray(a))
    np.testing.assert_allclose(d.get(), d0 * a * (1 - a), **tol)
    w0, parts = rng.standard_normal((m, n)).astype(dtype), rng.standard_normal((3, m, n)).astype(dtype)
    w = cp.asarray(w0)
    K.sgd_update(w, cp.asarray(parts), 0.25)
    np.testing.assert_allclose(w.get(), w0 + 0.25 * parts.sum(axis=0), **tol)


def _targets(rng, m, n, output, dtype):
    if output == "softmax":
        return np.eye(n, dtype=dtype)[rng.integers(0, n, m)]
    if output == "identity":
        return rng.standard_normal((m, n)).astype(dtype)
    return rng.random((m, n)).astype(dtype)


@pytest.mark.parametrize("output,loss", [("sigmoid", "mse"), ("sigmoid", "bce"), ("softmax", "cross_entropy"),
                                         ("identity", "mse")])  # fmt: skip
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_output_step_matches_the_reference_loop(cp, rng, output, loss, dtype):
    """Softmax in place, the delta (weighted), the error, the loss and the weight sums; the counters advance."""
    K, tol = _cuda.kernels(dtype), _tol(dtype)
    m, n = int(rng.integers(1, 50)), int(rng.integers(2, 7))
    z = rng.standard_normal((m, n)).astype(dtype)
    y = _targets(rng, m, n, output, dtype)
    sw = (rng.random(m) + 0.2).astype(dtype)
    a = z.copy()
    if output == "sigmoid":
        a = 1 / (1 + np.exp(-z))
    elif output == "softmax":
        a = np.exp(z - z.max(axis=1, keepdims=True))
        a /= a.sum(axis=1, keepdims=True)
    derivative = output == "sigmoid" and loss == "mse"
    want_d = (y - a) * (a * (1 - a) if derivative else 1) * sw[:, None]
    eps = loss_eps(dtype)
    want = [(np.abs(y - a).sum(axis=1) * sw).sum(), sw.sum(), (row_losses(np, y, a, loss, eps) * sw).sum(), 0.0]
    da = cp.asarray(a if output != "softmax" else z)
    d, acc, counters = cp.zeros((m, n), dtype), cp.zeros(4), cp.asarray(np.array([3, 9], np.int64))
    K.output_step(cp.asarray(y), da, d, cp.asarray(sw), output=OUTPUT_CODE[output], loss=LOSS_CODE[loss],
                  derivative=derivative, eps=eps, acc=acc, counters=counters)  # fmt: skip
    np.testing.assert_allclose(da.get(), a, **tol)
    np.testing.assert_allclose(d.get(), want_d, **tol)
    np.testing.assert_allclose(acc.get(), want, **tol)
    assert counters.get().tolist() == [4, 10]
    K.output_step(cp.asarray(y), cp.asarray(a), d, None, output=0, loss=0, derivative=derivative, eps=eps)
    np.testing.assert_allclose(d.get(), want_d / sw[:, None], **tol)


def _reference_step(config, p, g, slots, lr, r, step, decayed):
    """optimizers.update on one parameter (NumPy)."""
    params, grads = [p.copy()], [g.copy()]
    state = {name: [s.copy()] for name, s in slots.items()}
    cfg = config if decayed else TrainConfig(**{**config.__dict__, "alpha": 0.0})
    optimizers.update(np, cfg, params, grads, state, [np.empty_like(p)], n_weights=1, lr=lr, r=r, step=step)
    return params[0], {k: v[0] for k, v in state.items()}


CONFIGS = [
    TrainConfig(),
    TrainConfig(learning_rate=0.3, optimizer="momentum", momentum=0.8, alpha=0.01),
    TrainConfig(learning_rate=0.3, optimizer="nesterov", schedule="invscaling", power_t=0.4),
    TrainConfig(learning_rate=0.01, optimizer="adam", beta_1=0.8, beta_2=0.99, epsilon=1e-7, alpha=0.1),
]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.optimizer)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_optimizer_step_follows_the_rules_of_optimizers_update(cp, rng, config, dtype):
    """Every rule, the penalty, the schedule from the device's counters, Adam's correction, split partials."""
    K, tol = _cuda.kernels(dtype), _tol(dtype)
    shape = (int(rng.integers(1, 9)), int(rng.integers(1, 9)))
    p0 = rng.standard_normal(shape).astype(dtype)
    parts = rng.standard_normal((int(rng.integers(1, 4)), *shape)).astype(dtype)
    names = optimizers.SLOTS[config.optimizer]
    slots = {name: (rng.random(shape) if name == "v" else rng.standard_normal(shape)).astype(dtype) for name in names}
    n_rows, r, step, j = 37, 1 / 37, int(rng.integers(0, 5)), int(rng.integers(0, 20))
    cfg = cp.asarray(_cuda.settings(config, n_rows, r))
    counters = cp.asarray(np.array([step + 1, j], np.int64))
    for decayed in (True, False):
        p, dslots, sumsq = cp.asarray(p0), {k: cp.asarray(v) for k, v in slots.items()}, cp.zeros(1)
        pair = tuple(dslots[names[i]] if i < len(names) else None for i in range(2))
        K.optimizer_step(p, cp.asarray(parts), pair, decayed=decayed, cfg=cfg, counters=counters, sumsq=sumsq)
        lr = config.learning_rate / ((j * n_rows + 1) ** config.power_t if config.schedule == "invscaling" else 1)
        want_p, want_slots = _reference_step(config, p0, parts.sum(axis=0), slots, lr, r, step + 1, decayed)
        np.testing.assert_allclose(p.get(), want_p, **tol)
        for name in names:
            np.testing.assert_allclose(dslots[name].get(), want_slots[name], **tol)
        np.testing.assert_allclose(sumsq.get()[0], (p0.astype(np.float64) ** 2).sum(), **tol)


# -- gemm_tiled --------------------------------------------------------------------------------------


def _gemm_cases(cp, rng, dtype, tiles, shapes, kernel="tiled"):
    """Every op(A) @ op(B) with each of its epilogues (split partials for the weight gradient), on
    gemm_tiled (tiles: (RM, RN)) or gemm_warp (tiles: a tiling's name)."""
    K, tol = _cuda.kernels(dtype), _tol(dtype)
    tol = dict(rtol=1e-12, atol=1e-12) if dtype == "float64" else dict(rtol=2e-5, atol=2e-5)
    config = TrainConfig(learning_rate=0.5, optimizer="momentum", alpha=0.05)
    cfg = cp.asarray(_cuda.settings(config, 10, 1.0))
    counters = cp.asarray(np.array([1, 0], np.int64))
    for M, N, Kd in shapes:
        A, B = rng.standard_normal((M, Kd)).astype(dtype), rng.standard_normal((Kd, N)).astype(dtype)
        want = A.astype(np.float64) @ B
        for ta, tb in [(False, False), (True, False), (False, True)]:
            dA = cp.asarray(A.T.copy() if ta else A)
            dB = cp.asarray(B.T.copy() if tb else B)
            C = cp.full((M, N), np.nan, dtype)
            K.gemm(dA, dB, C, ta=ta, tb=tb, tiles=tiles, kernel=kernel)
            np.testing.assert_allclose(C.get(), want, **tol)
            if ta:
                parts = cp.full((3, M, N), np.nan, dtype)
                K.gemm(dA, dB, parts, ta=True, tiles=tiles, kernel=kernel)
                np.testing.assert_allclose(parts.get().sum(axis=0), want, **tol)
                W0, V0 = rng.standard_normal((M, N)).astype(dtype), rng.standard_normal((M, N)).astype(dtype)
                W, V = cp.asarray(W0), cp.asarray(V0)
                K.gemm(dA, dB, W, ta=True, epilogue="step", slots=(V, None), decayed=True, cfg=cfg,
                       counters=counters, tiles=tiles, kernel=kernel)  # fmt: skip
                want_w, want_v = _reference_step(config, W0, want.astype(dtype), {"velocity": V0}, 0.5, 1.0, 1, True)
                np.testing.assert_allclose(W.get(), want_w, **tol)
                np.testing.assert_allclose(V.get(), want_v["velocity"], **tol)
            elif tb:
                act = rng.random((M, N)).astype(dtype)
                K.gemm(dA, dB, C, tb=True, epilogue="dsigmoid", E=cp.asarray(act), tiles=tiles, kernel=kernel)
                np.testing.assert_allclose(C.get(), want * act * (1 - act), **tol)
            else:
                bias = rng.standard_normal(N).astype(dtype)
                for epi, f in (("sigmoid", lambda v: 1 / (1 + np.exp(-v))), ("bias", lambda v: v)):
                    K.gemm(dA, dB, C, epilogue=epi, E=cp.asarray(bias), tiles=tiles, kernel=kernel)
                    np.testing.assert_allclose(C.get(), f(want + bias), **tol)
                    K.gemm(dA, dB, C, epilogue=epi, tiles=tiles, kernel=kernel)
                    np.testing.assert_allclose(C.get(), f(want), **tol)


@pytest.mark.parametrize("tiles", [(1, 1), (2, 1)])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_gemm_tiled_every_epilogue_and_transpose_matches_numpy(cp, rng, dtype, tiles):
    _gemm_cases(cp, rng, dtype, tiles, [(int(rng.integers(1, 40)), int(rng.integers(1, 20)), int(rng.integers(1, 40)))])


@pytest.mark.slow
@pytest.mark.parametrize("tiles", [(rm, rn) for rm in _cuda.TILE_FACTORS for rn in _cuda.TILE_FACTORS])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_gemm_tiled_every_tile_matches_numpy(cp, rng, dtype, tiles):
    """Ragged edges in every direction, tiles larger than the matrix, K split into parts."""
    _gemm_cases(cp, rng, dtype, tiles, [(37, 70, 129), (300, 5, 17), (1, 140, 40)])


# -- gemm_warp -------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_gemm_warp_every_epilogue_and_transpose_matches_numpy(cp, rng, dtype):
    """One warp's tiling on a random shape: ragged edges, K over several steps and split."""
    shape = (int(rng.integers(1, 80)), int(rng.integers(1, 40)), int(rng.integers(1, 80)))
    _gemm_cases(cp, rng, dtype, "32x16/1", [shape], kernel="warp")


@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_gemm_warp_every_tiling_matches_numpy(cp, rng, dtype):
    """Every tiling: tiles larger than the matrix, ragged edges in every direction, rows a multiple of
    the vector width (16-byte loads) or not (single loads), K over several steps, split into parts."""
    for tiling in _cuda.warp_tilings("float" if dtype == "float32" else "double"):
        _gemm_cases(cp, rng, dtype, tiling, [(37, 70, 129), (300, 5, 17), (1, 140, 40), (260, 136, 72)], "warp")


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_gemm_warp_loads_one_value_at_a_time_from_misaligned_operands(cp, rng, dtype):
    """An operand 16-byte aligned but for an offset (a view one element in) is read value by value, as
    are rows whose length is no multiple of the vector width: the emulator fails any misaligned
    vector access, as the device would fault on it, so the results show the fallback is taken."""
    K = _cuda.kernels(dtype)
    M, N, Kd = 36, 24, 40  # multiples of every vector width: only the offsets misalign

    def shifted(a):  # a's values in a device buffer one element past an aligned one
        flat = cp.zeros(a.size + 1, dtype)
        view = flat[1:].reshape(a.shape)
        view[...] = cp.asarray(a)
        assert view.data.ptr % 16 != 0
        return view

    A, B = rng.standard_normal((M, Kd)).astype(dtype), rng.standard_normal((Kd, N)).astype(dtype)
    act = rng.random((M, N)).astype(dtype)
    want = A.astype(np.float64) @ B
    tol = dict(rtol=1e-12, atol=1e-12) if dtype == "float64" else dict(rtol=2e-5, atol=2e-5)
    for dA, dB in ((shifted(A), cp.asarray(B)), (cp.asarray(A), shifted(B))):
        C = cp.full((M, N), np.nan, dtype)
        K.gemm(dA, dB, C, tiles="32x16/1", kernel="warp")
        np.testing.assert_allclose(C.get(), want, **tol)
    C = shifted(np.full((M, N), np.nan, dtype))
    K.gemm(cp.asarray(A), cp.asarray(B.T.copy()), C, tb=True, epilogue="dsigmoid", E=shifted(act), tiles="32x16/1",
           kernel="warp")  # fmt: skip
    np.testing.assert_allclose(C.get(), want * act * (1 - act), **tol)


def test_our_gemms_refuse_an_unknown_kernel_or_tiling_before_any_work(cp):
    from sigmanet.backends.cupy.backend import CupyBackend

    K = _cuda.kernels("float64")
    A, B, C = cp.ones((8, 4)), cp.ones((4, 8)), cp.full((8, 8), 7.0)
    fake_cupy.launches().clear()
    for kernel, tiles, match in [("warp ", None, "kernel must be one of"), ("warp", "bogus", "has no double tiling"),
                                 ("warp", "128x128/4", "has no double tiling"), ("tiled", "64x64/4", "tiles are"),
                                 ("tiled", (3, 1), "tiles are")]:  # fmt: skip
        with pytest.raises(ValueError, match=match):
            K.gemm(A, B, C, kernel=kernel, tiles=tiles)
        with pytest.raises(ValueError, match=match):
            K.gemm_splits(8, 8, 1 << 16, kernel=kernel, tiles=tiles)
    assert not fake_cupy.launches() and (C.get() == 7.0).all()
    with pytest.raises(ValueError, match="gemm must be one of"):
        CupyBackend(gemm="fast")


def test_the_emulator_fails_a_misaligned_vector_access(library):
    """The check the fallback test leans on: a 16-byte load from an address that is not aligned."""
    lib, folder = library
    probe = lib.code + (
        "\ntemplate <typename T>\n"
        "__global__ void sn_probe_vec(const T* p, T* out) { out[0] = SN_VEC_LOAD(T, p).v[0]; }\n"
    )
    probe_lib = emulator.build(probe, ["sn_probe_vec<float>"], _cuda.compile_options(), folder)

    class At:  # a host pointer as the kernel's argument
        def __init__(self, a):
            self.a = a

        def __sn_emu_pointer__(self):
            return self.a.ctypes.data

    buf, out = np.arange(8, dtype=np.float32), np.zeros(1, np.float32)
    start = -buf.ctypes.data % 16 // 4  # the first aligned element
    probe_lib.launch("sn_probe_vec<float>", 1, 1, [At(buf[start:]), At(out)])
    assert out[0] == start
    with pytest.raises(emulator.EmulationError, match="misaligned"):
        probe_lib.launch("sn_probe_vec<float>", 1, 1, [At(buf[start + 1 :]), At(out)])


# -- whole engines: the single launch (warp, fixed shape, generic) and the graph, against NumPy -------


def _problem(rng, layers, rows, output, dtype, bias, weighted):
    X = rng.standard_normal((rows, layers[0])).astype(dtype)
    y = _targets(rng, rows, layers[-1], output, dtype)
    w = [(rng.standard_normal((p, q)) * 0.7).astype(dtype) for p, q in zip(layers, layers[1:])]
    b = [(rng.standard_normal(q) * 0.3).astype(dtype) for q in layers[1:]] if bias else None
    sw = (rng.random(rows) * 2 + 0.1).astype(dtype) if weighted else None
    return X, y, w, b, sw


def _optimizer_state(rng, config, w, b):
    """A state with steps taken and non-zero slots: it must be continued, not restarted."""
    params = w + (b or [])
    slots = {name: tuple((np.abs if name == "v" else np.asarray)(rng.standard_normal(p.shape) * 0.01).astype(p.dtype)
                         for p in params) for name in optimizers.SLOTS[config.optimizer]}  # fmt: skip
    return optimizers.OptimizerState(config.optimizer, int(rng.integers(0, 6)), slots)


def _agree(trainer, ref, runs, dtype):
    tol = _tol(dtype)
    for start, n in runs:
        got, want = trainer.run(start, n), ref.run(start, n)
        np.testing.assert_allclose([got.error, got.loss], [want.error, want.loss], **tol)
    assert trainer.step == ref.step
    (wg, bg), (wr, br) = trainer.weights(), ref.weights()
    for a, c in zip(wg + (bg or []), wr + (br or []), strict=True):
        np.testing.assert_allclose(a, c, **tol)
    got_slots, want_slots = trainer.optimizer_arrays(), ref.optimizer_arrays()
    assert set(got_slots) == set(want_slots)
    for name in want_slots:
        for a, c in zip(got_slots[name], want_slots[name], strict=True):
            np.testing.assert_allclose(a, c, **tol)


def _config(rng, output, loss, optimizer, batch_size, **extra):
    reduction = extra.pop("reduction", "mean")
    # a summed gradient is the rows times the mean: the rate shrinks with it, or steps of 75 on 150 rows
    # make the fit chaotic and float32's last bits decide (an NVIDIA kernel and NumPy then differ by 1e-3)
    rate = {"sgd": 0.5, "momentum": 0.2, "nesterov": 0.2, "adam": 0.02}[optimizer] / (100 if reduction == "sum" else 1)
    return TrainConfig(
        learning_rate=rate,
        loss=loss,
        output=output,
        reduction=reduction,
        batch_size=batch_size,
        optimizer=optimizer,
        alpha=extra.pop("alpha", 0.0),
        schedule=extra.pop("schedule", "constant"),
        power_t=0.3,
        average_loss=extra.pop("average_loss", False),
        **extra,
    )


# (kernel, layers, rows, batch_size): train_warp needs one hidden layer and a batch within a warp
SINGLE_LAUNCH = [
    ("warp", [3, 4, 1], 4, None),
    ("warp", [2, 5, 3], 11, 4),
    ("fixed", [2, 5, 3], 11, 4),
    ("fixed", [4, 6, 3], 9, None),
    ("generic", [4, 6, 3], 9, None),
    ("fixed", [5, 8, 9, 3, 2], 13, 5),
    ("generic", [5, 8, 9, 3, 2], 13, 5),
]
OPTIONS = [  # (output, loss, optimizer, extra)
    ("sigmoid", "mse", "sgd", {"reduction": "sum"}),
    ("sigmoid", "bce", "momentum", {"alpha": 0.01, "average_loss": True}),
    ("softmax", "cross_entropy", "nesterov", {"schedule": "invscaling"}),
    ("identity", "mse", "adam", {"alpha": 0.05}),
]


def _single_launch(cp, rng, kernel, layers, rows, batch_size, option, dtype, bias, weighted):
    from sigmanet.backends.cupy.backend import CupyBackend, FusedGpuTrainer

    output, loss, optimizer, extra = option
    config = _config(rng, output, loss, optimizer, batch_size, **dict(extra))
    X, y, w, b, sw = _problem(rng, layers, rows, output, dtype, bias, weighted)
    state = _optimizer_state(rng, config, w, b) if optimizer != "sgd" else None
    fake_cupy.launches().clear()
    tr = CupyBackend(strategy="fused").trainer(w, b, X, y, config, sw, state)
    assert isinstance(tr, FusedGpuTrainer)
    assert tr.warp == _cuda.warp_fits(layers, batch_size or rows), "the warp kernel runs exactly where it fits"
    if kernel != "warp":
        tr.warp = False  # the block kernel, as the device script compares them
    if kernel == "generic":
        tr.fixed_shape = None
    ref = NumpyBackend().trainer(w, b, X, y, config, sw, state)
    _agree(tr, ref, [(0, 6), (6, 5)], dtype)
    names = [launch.name for launch in fake_cupy.launches()]
    expected = {"warp": "train_warp<", "fixed": f"train_small<{'float' if dtype == 'float32' else 'double'}, ",
                "generic": "train_small<"}[kernel]  # fmt: skip
    assert names and all(n.startswith(expected) for n in names), names
    if kernel == "generic":
        assert all(n in ("train_small<float>", "train_small<double>") for n in names)


@pytest.mark.parametrize("kernel,layers,rows,batch_size", SINGLE_LAUNCH)
def test_the_single_launch_agrees_with_numpy(cp, rng, kernel, layers, rows, batch_size):
    """Each kernel on one random combination of the options (float64; every combination: the slow test)."""
    option = OPTIONS[int(rng.integers(len(OPTIONS)))]
    _single_launch(cp, rng, kernel, layers, rows, batch_size, option, "float64", bool(rng.integers(2)),
                   bool(rng.integers(2)))  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("option", OPTIONS, ids=lambda o: f"{o[0]}-{o[2]}")
@pytest.mark.parametrize("kernel,layers,rows,batch_size", SINGLE_LAUNCH)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_the_single_launch_agrees_with_numpy_on_every_option(cp, rng, kernel, layers, rows, batch_size, option, dtype):
    for bias, weighted in ((True, True), (False, False)):
        _single_launch(cp, rng, kernel, layers, rows, batch_size, option, dtype, bias, weighted)


def _graph(cp, rng, layers, rows, option, dtype, bias, weighted):
    from sigmanet.backends.cupy.backend import CupyBackend, CupyGemmTrainer

    output, loss, optimizer, extra = option
    config = _config(rng, output, loss, optimizer, None, **dict(extra))
    X, y, w, b, sw = _problem(rng, layers, rows, output, dtype, bias, weighted)
    state = _optimizer_state(rng, config, w, b) if optimizer != "sgd" else None
    fake_cupy.launches().clear()
    tr = CupyBackend(strategy="graph").trainer(w, b, X, y, config, sw, state)
    assert isinstance(tr, CupyGemmTrainer) and tr.use_graph
    ref = NumpyBackend().trainer(w, b, X, y, config, sw, state)
    _agree(tr, ref, [(0, 3), (3, 2)], dtype)
    assert tr.graph is not None and tr.graph_error is None, tr.graph_error
    names = [launch.name for launch in fake_cupy.launches()]
    assert "matmul" not in str(names) and any(n.startswith("output_step") for n in names)


@pytest.mark.parametrize("layers,rows", [([3, 4, 1], 70), ([4, 6, 3], 40)])
def test_the_graph_agrees_with_numpy(cp, rng, layers, rows):
    """One iteration of our own kernels, captured and replayed, on one random combination of the options."""
    option = OPTIONS[int(rng.integers(len(OPTIONS)))]
    _graph(cp, rng, layers, rows, option, "float64", bool(rng.integers(2)), bool(rng.integers(2)))


@pytest.mark.slow
@pytest.mark.parametrize("option", OPTIONS, ids=lambda o: f"{o[0]}-{o[2]}")
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_the_graph_agrees_with_numpy_on_every_option(cp, rng, option, dtype):
    for bias, weighted in ((True, True), (False, False)):
        _graph(cp, rng, [5, 8, 9, 3], 150, option, dtype, bias, weighted)


@pytest.mark.slow
@pytest.mark.parametrize("option", OPTIONS, ids=lambda o: f"{o[0]}-{o[2]}")
def test_the_eager_engine_agrees_with_numpy_on_every_option(cp, rng, option):
    from sigmanet.backends.cupy.backend import CupyBackend, CupyGemmTrainer

    for batch_size, weighted in ((None, True), (16, False)):
        output, loss, optimizer, extra = option
        config = _config(rng, output, loss, optimizer, batch_size, **dict(extra))
        X, y, w, b, sw = _problem(rng, [4, 6, 3], 40, output, "float64", True, weighted)
        tr = CupyBackend(strategy="eager").trainer(w, b, X, y, config, sw)
        assert isinstance(tr, CupyGemmTrainer) and not tr.use_graph
        _agree(tr, NumpyBackend().trainer(w, b, X, y, config, sw), [(0, 4), (4, 3)], "float64")


def test_a_graph_replay_follows_the_schedule_and_adams_correction_from_the_device(cp, rng):
    """The per-step scalars are not baked in at capture: a later interval continues the counters."""
    from sigmanet.backends.cupy.backend import CupyBackend

    config = TrainConfig(learning_rate=0.05, optimizer="adam", schedule="invscaling", power_t=0.5, reduction="mean")
    X, y, w, b, _ = _problem(rng, [3, 5, 2], 30, "sigmoid", "float64", True, False)
    tr = CupyBackend(strategy="graph").trainer(w, b, X, y, config)
    ref = NumpyBackend().trainer(w, b, X, y, config)
    _agree(tr, ref, [(0, 2), (2, 3), (9, 2)], "float64")  # a gap: the iteration number comes from `start`
    captures = [launch for launch in fake_cupy.launches() if launch.name.startswith("output_step")]
    assert len(captures) == 7  # one capture, replayed every iteration


def test_shuffled_epochs_gather_rows_on_every_single_launch_kernel(cp, rng):
    from sigmanet.backends.cupy.backend import CupyBackend

    for layers, rows, batch in (([3, 4, 1], 8, None), ([4, 6, 3], 12, 5)):
        X, y, w, b, sw = _problem(rng, layers, rows, "sigmoid", "float64", True, True)
        config = TrainConfig(reduction="mean", batch_size=batch, optimizer="momentum", learning_rate=0.3)
        tr = CupyBackend(strategy="fused").trainer(w, b, X, y, config, sw)
        ref = NumpyBackend().trainer(w, b, X, y, config, sw)
        for epoch in range(2):
            order = np.random.default_rng([3, epoch]).permutation(rows)
            tr.set_row_order(order)
            ref.set_row_order(order)
            _agree(tr, ref, [(epoch * 3, 3)], "float64")


def test_the_graph_recaptures_when_the_rows_move_to_their_shuffled_copy(cp, rng):
    """The first set_row_order gives the trainer new buffers: a graph captured before must not read the old."""
    from sigmanet.backends.cupy.backend import CupyBackend

    X, y, w, b, sw = _problem(rng, [3, 5, 2], 30, "sigmoid", "float64", True, True)
    config = TrainConfig(reduction="mean", optimizer="momentum", learning_rate=0.3)
    tr = CupyBackend(strategy="graph").trainer(w, b, X, y, config, sw)
    ref = NumpyBackend().trainer(w, b, X, y, config, sw)
    _agree(tr, ref, [(0, 2)], "float64")
    first = tr.graph
    for epoch in range(2):
        order = np.random.default_rng([5, epoch]).permutation(30)
        tr.set_row_order(order)
        ref.set_row_order(order)
        _agree(tr, ref, [(2 + epoch, 1)], "float64")
    assert tr.graph is not first and tr.graph_error is None


# -- streams and devices ---------------------------------------------------------------------------


@pytest.mark.parametrize("strategy", ["fused", "graph", "eager"])
def test_work_runs_on_the_callers_current_stream_or_the_given_one(cp, rng, strategy):
    from sigmanet.backends.cupy.backend import CupyBackend

    X, y, w, b, _ = _problem(rng, [3, 4, 2], 6, "sigmoid", "float64", True, False)
    config = TrainConfig(reduction="mean")
    mine = cp.cuda.Stream(non_blocking=True)
    with mine:  # the caller's current stream
        tr = CupyBackend(strategy=strategy).trainer(w, b, X, y, config)
        tr.run(0, 3)
    given = cp.cuda.Stream()
    tr2 = CupyBackend(strategy=strategy, stream=given).trainer(w, b, X, y, config)
    tr2.run(0, 3)
    runs = fake_cupy.launches()
    assert runs, "no kernel ran"
    first = [launch.stream for launch in runs[: len(runs) // 2]]
    assert {launch.stream for launch in runs} == {mine.ptr, given.ptr}
    assert first[0] == mine.ptr and runs[-1].stream == given.ptr
    np.testing.assert_allclose(tr.weights()[0][0], tr2.weights()[0][0], rtol=1e-12)


class _TorchLikeStream:
    """What torch.cuda.Stream offers CuPy: its handle as ``cuda_stream``."""

    def __init__(self, handle):
        self.cuda_stream = handle


class _ProtocolStream:
    """The CUDA stream protocol: ``__cuda_stream__()`` gives (version, handle)."""

    def __init__(self, handle):
        self.handle = handle

    def __cuda_stream__(self):
        return (0, self.handle)


@pytest.mark.parametrize("strategy", ["fused", "graph", "eager"])
@pytest.mark.parametrize("kind", ["cupy", "torch", "protocol"])
def test_fit_predict_and_gradients_run_on_a_stream_given_to_them(cp, rng, strategy, kind):
    X, y, _, _, _ = _problem(rng, [3, 4, 2], 6, "sigmoid", "float64", True, False)
    X, y = cp.asarray(X), cp.asarray(y)
    handle = cp.cuda.Stream(non_blocking=True)
    stream = {"cupy": handle, "torch": _TorchLikeStream(handle.ptr), "protocol": _ProtocolStream(handle.ptr)}[kind]
    net = sn.Network([3, 4, 2], backend=f"cupy:{strategy}", seed=0, bias=True)
    ref = sn.Network([3, 4, 2], backend="numpy", seed=0, bias=True)
    seen = len(fake_cupy.launches())
    hist = net.fit(X, y, iterations=5, reduction="mean", stream=stream)
    out = net.predict(X, stream=stream)
    net.error(X, y, stream=stream)
    net.loss_and_gradients(X, y, stream=stream)
    runs = fake_cupy.launches()[seen:]
    assert runs and {launch.stream for launch in runs} == {handle.ptr}
    assert "stream" not in hist.options and "stream" not in net.fit_options
    ref.fit(cp.asnumpy(X), cp.asnumpy(y), iterations=5, reduction="mean")
    np.testing.assert_allclose(cp.asnumpy(out), ref.predict(cp.asnumpy(X)), rtol=1e-9)


def test_a_stream_that_is_not_one_is_refused_before_any_work(cp, rng):
    X, y, _, _, _ = _problem(rng, [3, 4, 2], 6, "sigmoid", "float64", True, False)
    net = sn.Network([3, 4, 2], backend="cupy", seed=0, bias=True)
    before = net.get_state()
    seen = len(fake_cupy.launches())
    for bad in (7, "stream", object()):
        with pytest.raises(TypeError, match="stream must be a CuPy stream"):
            net.fit(cp.asarray(X), cp.asarray(y), iterations=5, stream=bad)
        with pytest.raises(TypeError, match="stream must be a CuPy stream"):
            net.predict(cp.asarray(X), stream=bad)
    assert len(fake_cupy.launches()) == seen and net.iteration == 0
    np.testing.assert_array_equal(net.weights[0], before["weights"][0])


def test_arrays_on_another_device_train_there(library, rng):
    """A CuPy X on device 1 (a Dask chunk on its worker's GPU) trains on device 1, every engine."""
    lib, folder = library
    with fake_cupy.installed(devices=2, library=lib, build_dir=folder) as cp:
        from sigmanet.backends.cupy.backend import CupyBackend

        X, y, w, b, sw = _problem(rng, [3, 4, 2], 6, "sigmoid", "float64", True, True)
        config = TrainConfig(reduction="mean", optimizer="adam", learning_rate=0.05)
        ref = NumpyBackend().trainer(w, b, X, y, config, sw)
        ref.run(0, 4)
        for strategy in ("fused", "graph", "eager"):
            with cp.cuda.Device(1):
                Xd, yd, swd = cp.asarray(X), cp.asarray(y), cp.asarray(sw)
            assert cp.cuda.Device().id == 0
            tr = CupyBackend(strategy=strategy).trainer(w, b, Xd, yd, config, swd)
            tr.run(0, 4)
            np.testing.assert_allclose(tr.weights()[0][0], ref.weights()[0][0], rtol=1e-9)
            g = CupyBackend().gradients(w, b, Xd, yd, config, swd)
            assert np.isfinite(g.loss)
        assert {launch.device for launch in fake_cupy.launches()} == {1}


# -- Dask arrays of CuPy chunks (issue 24 item 4): the chunks train where they live ------------------


def _dask_tables(cp, rng, rows=512, chunk=128, device=0):
    da = pytest.importorskip("dask.array", reason="Dask is not installed (pip install 'sigmanet[dask]')")
    X = rng.standard_normal((rows, 4))
    y = rng.random((rows, 2))
    sw = rng.random(rows) + 0.5
    with cp.cuda.Device(device):
        on_device = [cp.asarray(a) for a in (X, y, sw)]
    chunked = [da.from_array(a, chunks=(chunk,) + ((-1,) if a.ndim == 2 else ()), asarray=False) for a in on_device]
    return (X, y, sw), chunked


def test_dask_arrays_of_cupy_chunks_train_where_they_live_like_in_memory(cp, rng, monkeypatch):
    """Each chunk's gradient is computed by the CuPy backend's kernels on the device holding the chunk,
    summed on the client; the fit equals the in-memory CuPy one. (As dask-cuda lays workers out, one
    process per GPU, the chunks' GPU is each worker's device 0; CuPy's current device is per thread, so
    several GPUs in one process would need each task to enter its chunk's device: see the GPU report.)"""
    import sigmanet as sn
    from sigmanet.backends.cupy.backend import CupyBackend

    (X, y, sw), (Xd, yd, swd) = _dask_tables(cp, rng)
    fit = dict(iterations=4, report_every=2, reduction="mean", optimizer="adam", learning_rate=0.05, warn_stuck=False)
    where = []
    original = CupyBackend.gradients

    def spy(self, *args, **kwargs):
        where.append((args[2].device.id, cp.cuda.Device().id))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(CupyBackend, "gradients", spy)
    net = sn.Network([4, 6, 2], backend="cupy", seed=0, bias=True)
    h = net.fit(Xd, yd, sample_weight=swd, **fit)
    monkeypatch.undo()
    ref = sn.Network([4, 6, 2], backend="cupy", seed=0, bias=True)
    h_ref = ref.fit(cp.asarray(X), cp.asarray(y), sample_weight=cp.asarray(sw), **fit)
    np.testing.assert_allclose(h.errors, h_ref.errors, rtol=1e-9)
    np.testing.assert_allclose(h.losses, h_ref.losses, rtol=1e-9)
    for a, c in zip(net.weights, ref.weights, strict=True):
        np.testing.assert_allclose(a, c, rtol=1e-9, atol=1e-12)
    assert len(where) >= 4 * 4 and set(where) == {(0, 0)}  # every chunk, every iteration, on its device
    assert any(launch.name.startswith("forward_sigmoid") for launch in fake_cupy.launches())  # the fused kernels


@pytest.mark.parametrize("case", ["warn_stuck", "scale_inputs", "class_weight", "balanced"])
def test_dask_arrays_of_cupy_chunks_take_every_fit_option(cp, rng, case):
    """The stuck check, scale_inputs and class_weight on CuPy chunks: each computed in the chunks' own
    library and copied back explicitly (NumPy's implicit conversion of a CuPy array is refused)."""
    import sigmanet as sn

    (X, y, sw), (Xd, yd, swd) = _dask_tables(cp, rng)
    net = sn.Network([4, 6, 2], backend="cupy", seed=0)
    extra = {"warn_stuck": dict(), "scale_inputs": dict(scale_inputs=True, warn_stuck=False),
             "class_weight": dict(class_weight={0: 2.0}, warn_stuck=False),
             "balanced": dict(class_weight="balanced", warn_stuck=False)}[case]  # fmt: skip
    if case in ("class_weight", "balanced"):
        net = sn.Network([4, 6, 1], backend="cupy", seed=0)
        yd = (yd[:, :1] > 0.5).astype(np.float64)
    hist = net.fit(Xd, yd, iterations=2, **extra)
    assert len(hist.errors) == 1 and np.isfinite(hist.errors[0]) and all(np.isfinite(w).all() for w in net.weights)
    if case == "scale_inputs":
        lo, hi = net.input_range
        np.testing.assert_array_equal(lo, X.min(axis=0))
        np.testing.assert_array_equal(hi, X.max(axis=0))


def test_dask_arrays_of_cupy_chunks_predict_as_cupy_and_measure_the_error(cp, rng):
    import sigmanet as sn

    (X, y, sw), (Xd, yd, swd) = _dask_tables(cp, rng)
    net = sn.Network([4, 6, 2], backend="cupy", seed=0)
    net.fit(Xd, yd, iterations=2, warn_stuck=False)
    error = net.error(Xd, yd)
    error = error.compute() if hasattr(error, "compute") else error
    ref = sn.Network([4, 6, 2], backend="cupy", seed=0)
    ref.fit(cp.asarray(X), cp.asarray(y), iterations=2, warn_stuck=False)
    np.testing.assert_allclose(float(error), ref.error(cp.asarray(X), cp.asarray(y)), rtol=1e-12)
    assert isinstance(net.predict(Xd).compute(), cp.ndarray)


@pytest.mark.slow
def test_the_device_script_runs_through_on_the_emulator(library, tmp_path):
    """benchmarks/gpu_check.sh's dry run on tiny sizes (GPU_CHECK_SMALL=1): every step but the tests and
    ncu runs here on the emulated CuPy, so a device session does not spend its minutes on a script bug."""
    import json
    import os
    import subprocess

    root = Path(__file__).resolve().parent.parent
    here = root / "tests" / "cuda_emulation"
    out = tmp_path / "out"
    env = dict(os.environ, GPU_CHECK_SMALL="1", OUT=str(out), PYTHON=sys.executable, SN_EMULATOR_CACHE=str(library[1]),
               PYTHONPATH=f"{here / 'as_cupy'}:{here}")  # fmt: skip
    result = subprocess.run(["bash", str(root / "benchmarks" / "gpu_check.sh")], capture_output=True, text=True,
                            env=env, timeout=1200)  # fmt: skip
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert files == ["bench.log", "checks.log", "crossover.json", "device.json", "gpu-float32/results.json",
                     "gpu-float32/throughput.png", "gpu-mb/results.json"]  # fmt: skip
    checks = (out / "checks.log").read_text()
    assert "warp / block" in checks and "x cuBLAS" in checks and "its bare GEMMs" in checks
    for gemm in ("tiled", "warp"):  # the graph iteration on each of our GEMMs, captured and replayed
        assert f"graph iteration, gemm_{gemm}: " in checks and "not captured" not in checks
    records = json.loads((out / "gpu-float32" / "results.json").read_text())["records"]
    engines = {r["rows"]: r["strategy"] for r in records if r["backend"] == "cupy"}
    assert engines[4] == "fused:warp", engines
    assert json.loads((out / "crossover.json").read_text())["cases"]
