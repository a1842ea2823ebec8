"""Embedding a network in other numerical code (issue 26).

* the compiled predict: called from @njit loops (and prange, and threads) it equals net.predict,
  allocates nothing per call, is a snapshot; its CUDA leg compiles to PTX here and runs on the
  CUDA simulator (and on a real GPU where one is usable);
* loss_and_gradients: central finite differences for every output layer and loss, the fit's own
  step, NumPy, numba and Dask agreeing, the Network method agreeing with the functional;
* arrays from any library through DLPack (PyTorch, JAX): no copy where the memory allows, the
  caller's kind back, read-only inputs never written;
* a good guest: no threads beyond the caller's limits, and importing or fitting changes no
  process-wide setting, prints nothing, warns once per cause.
"""

import os
import re
import subprocess
import sys
import textwrap
import threading
import warnings

import numba
import numpy as np
import pytest
from helpers import ENGINES

import sigmanet as sn
from sigmanet.embedding import STACK_BYTES, compiled_predict, scratch_size

CPU_ENGINES = [e for e in ENGINES if e.split(":")[0] in ("numpy", "numba")]
SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")


def _data(rng, n, layers, output):
    """Inputs on a range the network is given, and targets its output layer can reach."""
    X = rng.uniform(-3.0, 5.0, size=(n, layers[0]))
    if output == "softmax":
        y = np.eye(layers[-1])[rng.integers(0, layers[-1], n)]
    elif output == "identity":
        y = rng.normal(size=(n, layers[-1]))
    else:
        y = rng.integers(0, 2, size=(n, layers[-1])).astype(float)
    return X, y


def _trained(rng, backend="numpy", layers=(3, 5, 4, 2), output="sigmoid", bias=True, dtype="float64", scaled=True):
    """A network a few steps into training on ``backend``, with biases and an input range."""
    net = sn.Network(list(layers), backend=backend, dtype=dtype, seed=3, bias=bias, output=output)
    X, y = _data(rng, 64, layers, output)
    if bias:  # biases away from zero, so a kernel that dropped them would show
        net.set_weights(net.weights, [rng.normal(scale=0.5, size=n) for n in layers[1:]])
    if scaled:
        net.set_input_range(np.full(layers[0], -3.0), np.r_[np.full(layers[0] - 1, 5.0), -3.0])  # a constant column
    net.fit(X, y, iterations=5, learning_rate=0.5, reduction="mean", warn_stuck=False)
    return net, X


@numba.njit
def _each_row(f, X, out):
    """The caller's own compiled loop: one call per row."""
    for i in range(X.shape[0]):
        f(X[i], out[i])


@numba.njit
def _repeat(f, x, out, n):
    for _ in range(n):
        f(x, out)
    return out[0]


@numba.njit(parallel=True)
def _each_row_parallel(f, X, out):
    for i in numba.prange(X.shape[0]):
        f(X[i], out[i])


# -- the compiled predict ----------------------------------------------------------------------


# numpy's weights in the default run; the numba engines' (the same numbers, by other arithmetic) in CI's slow run
@pytest.mark.parametrize(
    "engine", [e if e == "numpy" else pytest.param(e, marks=pytest.mark.slow) for e in CPU_ENGINES]
)
def test_compiled_predict_in_an_njit_loop_equals_predict_on_each_engines_weights(engine, rng):
    net, X = _trained(rng, backend=engine)
    f = net.compiled_predict()
    out = np.full((X.shape[0], 2), np.nan)
    _each_row(f, X, out)
    np.testing.assert_allclose(out, net.predict(X), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize(
    "output, dtype, layers",
    [
        pytest.param("softmax", "float64", (4, 6, 3), marks=pytest.mark.slow),
        pytest.param("identity", "float64", (2, 7, 5, 3), marks=pytest.mark.slow),
        pytest.param("softmax", "float32", (4, 6, 3), marks=pytest.mark.slow),
        ("sigmoid", "float32", (3, 4, 1)),
    ],
)  # fmt: skip  (each compiles a network's predict: about a second)
def test_compiled_predict_applies_the_output_layer_in_the_networks_dtype(output, dtype, layers, rng):
    net, X = _trained(rng, layers=layers, output=output, dtype=dtype)
    f = compiled_predict(net)
    block = np.empty((X.shape[0], layers[-1]), dtype)
    f(X.astype(dtype), block)  # a block at once, from Python
    rows = np.empty_like(block)
    _each_row(f, X.astype(dtype), rows)
    tol = 1e-12 if dtype == "float64" else 2e-6
    np.testing.assert_allclose(block, net.predict(X), rtol=tol, atol=tol)
    np.testing.assert_array_equal(rows, block)
    if output == "softmax":
        np.testing.assert_allclose(block.sum(axis=1), 1.0, rtol=10 * tol)


def test_compiled_predict_without_bias_or_range_is_the_seeds_forward_pass():
    X = np.array([[0, 0, 1], [0, 1, 1], [1, 0, 1], [1, 1, 1]], float)
    net = sn.Network([3, 4, 1], backend="numpy", seed=1, init="legacy")
    net.fit(X, np.array([[0], [1], [1], [0]]), iterations=2000)
    W0, W1 = net.weights
    expected = 1 / (1 + np.exp(-(1 / (1 + np.exp(-X @ W0)) @ W1)))
    out = np.empty((4, 1))
    net.compiled_predict()(X, out)
    np.testing.assert_allclose(out, expected, rtol=1e-13)


@pytest.mark.slow  # compiles a network's predict: about a second
def test_compiled_predict_reads_strided_views_and_fills_outputs_of_another_dtype(rng):
    net, X = _trained(rng)
    f = net.compiled_predict()
    wide = np.zeros((X.shape[0], 9))
    wide[:, ::3] = X  # x a strided view
    out = np.zeros((2, X.shape[0]), np.float32).T  # out a transposed view, float32
    f(wide[:, ::3], out)
    np.testing.assert_allclose(out, net.predict(X), rtol=1e-6)
    row = np.empty(2)
    f(X[7], row)
    np.testing.assert_allclose(row, net.predict(X[7:8])[0], rtol=1e-12)


def test_compiled_predict_is_a_snapshot_that_later_training_leaves_alone(rng):
    net, X = _trained(rng)
    f = net.compiled_predict()
    before = net.predict(X)
    X2, y2 = _data(rng, 64, net.layers, "sigmoid")
    net.fit(X2, y2, iterations=50, learning_rate=2.0)
    net.set_input_range(None, None)
    assert np.abs(net.predict(X) - before).max() > 1e-3  # the network did change
    out = np.empty_like(before)
    _each_row(f, X, out)
    np.testing.assert_allclose(out, before, rtol=1e-12)
    assert "snapshot" in f.__doc__ and "iteration 5" in f.__doc__


def _allocations(run):
    """NRT allocations (arrays and their meminfos) while ``run()`` executes; the counter's state is restored."""
    from numba.core.runtime import _nrt_python, rtsys

    was = _nrt_python.memsys_stats_enabled()
    _nrt_python.memsys_enable_stats()
    try:
        before = rtsys.get_allocation_stats()
        run()
        after = rtsys.get_allocation_stats()
    finally:
        if not was:
            _nrt_python.memsys_disable_stats()
    return (after.alloc - before.alloc) + (after.mi_alloc - before.mi_alloc)


@pytest.mark.slow  # compiles a network's predict: about a second
def test_compiled_predict_allocates_nothing_per_call(rng):
    net, X = _trained(rng)
    f = net.compiled_predict()
    block, row = np.empty((X.shape[0], 2)), np.empty(2)
    _repeat(f, X[0], row, 1)
    _repeat(f, X, block, 1)  # compiled for both forms before counting
    # Entering compiled code from Python wraps each array it is given (a few meminfos); what the calls
    # inside the loop allocate would grow with their number.
    once = _allocations(lambda: (_repeat(f, X[0], row, 1), _repeat(f, X, block, 1)))
    many = _allocations(lambda: (_repeat(f, X[0], row, 2001), _repeat(f, X, block, 201)))
    assert many == once
    # the counter does count what compiled code allocates per call
    probe = numba.njit(lambda n: np.zeros(n).sum())
    probe(3)
    assert _allocations(lambda: probe(3)) > 0


def test_compiled_predict_is_safe_from_many_threads_at_once(rng):
    net, X = _trained(rng)
    f = net.compiled_predict()
    Xs = [np.ascontiguousarray(rng.uniform(-3, 5, size=(2000, 3))) for _ in range(4)]
    outs = [np.empty((2000, 2)) for _ in Xs]
    _each_row(f, Xs[0], outs[0])  # compiled once, before the threads start
    start = threading.Barrier(len(Xs))

    def work(i):
        start.wait()
        for _ in range(20):
            _each_row(f, Xs[i], outs[i])  # nogil: the threads do run at once

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(Xs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for Xi, out in zip(Xs, outs):
        np.testing.assert_allclose(out, net.predict(Xi), rtol=1e-12)


@pytest.mark.slow
def test_compiled_predict_under_prange_equals_predict(rng):
    net, _ = _trained(rng, layers=(3, 40, 30, 2), output="softmax")
    X = rng.uniform(-3, 5, size=(5000, 3))
    out = np.full((5000, 2), np.nan)
    _each_row_parallel(net.compiled_predict(), X, out)
    np.testing.assert_allclose(out, net.predict(X), rtol=1e-12)


@pytest.mark.slow  # compiles a network's predict: about a second
def test_compiled_predict_with_the_callers_scratch_for_wide_networks(rng):
    wide = sn.Network([3, STACK_BYTES // 16 + 1, 2], backend="numpy", seed=0, bias=True)
    with pytest.raises(ValueError, match="scratch=True"):
        wide.compiled_predict()
    net, X = _trained(rng)
    f = net.compiled_predict(scratch=True)
    out = np.empty((X.shape[0], 2))
    f(X, out, np.empty(scratch_size(net)))
    np.testing.assert_allclose(out, net.predict(X), rtol=1e-12)
    assert scratch_size(net) == 2 * max(net.layers[1:])
    for bad in (np.empty(scratch_size(net) - 1), np.empty(scratch_size(net), np.float32)):
        with pytest.raises(ValueError, match="scratch must be"):
            f(X, out, bad)


def test_compiled_predict_refuses_wrong_shapes_and_options(rng):
    net, X = _trained(rng)
    f = net.compiled_predict()
    with pytest.raises(ValueError, match="3 inputs and out 2 outputs"):
        f(np.ones(4), np.ones(2))
    with pytest.raises(ValueError, match="3 inputs and out 2 outputs"):
        f(np.ones((5, 3)), np.ones((5, 1)))
    with pytest.raises(ValueError, match="as many rows"):
        f(np.ones((5, 3)), np.ones((4, 2)))
    with pytest.raises(ValueError, match="both be 1-D"):
        f(np.ones(3), np.ones((1, 2)))
    with pytest.raises(ValueError, match="target"):
        net.compiled_predict(target="tpu")
    with pytest.raises(TypeError, match="scratch"):
        net.compiled_predict(scratch="yes")
    with pytest.raises(TypeError, match="Network"):
        compiled_predict(object())
    with pytest.raises(TypeError):
        net.compiled_predict(threads=2)


def test_compiled_predict_refuses_integer_or_read_only_outputs_and_lists_saying_so(rng):
    """Found by a review: an int64 out was filled with truncated probabilities (0 for 0.098), and a list
    or a read-only out failed deep inside numba's typing without saying which argument."""
    net, X = _trained(rng)
    read_only = np.empty(2)
    read_only.flags.writeable = False
    for f in (net.compiled_predict(), net.compiled_predict(scratch=True)):
        extra = () if f.py_func.__code__.co_argcount == 2 else (np.empty(64),)
        for x, out, message in (
            (X[0], np.empty(2, np.int64), "out must be a NumPy array of floats, got array(int64"),
            (list(X[0]), np.empty(2), "x must be a NumPy array of numbers, got reflected list"),
            (X[0], read_only, "out must be writable, got readonly array"),
        ):
            with (
                warnings.catch_warnings(),  # numba's note on reflected lists, for the list x
                pytest.raises(numba.core.errors.TypingError, match=re.escape(f"compiled_predict's f: {message}")),
            ):
                warnings.simplefilter("ignore", numba.core.errors.NumbaPendingDeprecationWarning)
                f(x, out, *extra)
        for x in (np.array([1, 0, 2]), np.array([True, False, True])):  # inputs of any numbers, as predict takes
            out = np.empty(2)
            f(x, out, *extra)
            np.testing.assert_allclose(out, net.predict(x[None].astype(float))[0], rtol=1e-12)


# -- the CUDA leg ------------------------------------------------------------------------------


@pytest.mark.parametrize("cc", [pytest.param(c, marks=pytest.mark.slow) for c in ((9, 0), (8, 0))])  # ~1 s each
def test_cuda_device_function_compiles_to_ptx_without_a_gpu(cc, rng):
    cuda = pytest.importorskip("numba.cuda")
    from numba import float32, float64

    try:
        from numba.cuda.cudadrv import nvvm

        nvvm.NVVM()
    except Exception as e:  # the toolkit's NVVM is what compiles; without it nothing can be checked here
        pytest.skip(f"no CUDA NVVM library to compile with here: {e}")
    for dtype, t in (("float64", float64), ("float32", float32)):
        net, _ = _trained(rng, dtype=dtype, output="softmax", layers=(3, 5, 3))
        g = net.compiled_predict(target="cuda")
        row = g.py_func.__globals__["row"]  # the device function's body (the wrapper adds the local buffer)
        ptx, _ = cuda.compile_ptx(row.py_func, (t[:], t[:], t[::1]), device=True, cc=cc)
        assert ".func" in ptx and f".target sm_{cc[0]}{cc[1]}" in ptx
    with pytest.raises(ValueError, match="constant memory"):
        sn.Network([64, 128, 10], backend="numpy").compiled_predict(target="cuda")


def test_cuda_device_function_runs_on_the_cuda_simulator(tmp_path):
    pytest.importorskip("numba.cuda")
    script = textwrap.dedent(
        """
        import numpy as np
        import sigmanet as sn
        from numba import cuda

        rng = np.random.default_rng(0)
        for output, dtype in (("softmax", "float64"), ("sigmoid", "float32"), ("identity", "float64")):
            net = sn.Network([3, 5, 4, 2], backend="numpy", seed=1, bias=True, output=output, dtype=dtype)
            net.set_weights(net.weights, [rng.normal(size=n) for n in (5, 4, 2)])
            net.set_input_range(-np.ones(3), 2 * np.ones(3))
            g = net.compiled_predict(target="cuda")

            @cuda.jit
            def kernel(X, out):
                i = cuda.grid(1)
                if i < X.shape[0]:
                    g(X[i], out[i])

            X = rng.uniform(-1, 2, size=(40, 3)).astype(dtype)
            out = np.full((40, 2), np.nan, dtype)
            kernel[2, 32](X, out)
            tol = 1e-12 if dtype == "float64" else 1e-5
            np.testing.assert_allclose(out, net.predict(X), rtol=tol, atol=tol)
        print("simulated ok")
        """
    )
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1", PYTHONPATH=SRC)
    r = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "simulated ok" in r.stdout


def _cuda_usable():
    try:
        from numba import cuda

        return cuda.is_available(), "numba.cuda finds no usable CUDA device"
    except Exception as e:
        return False, f"numba.cuda cannot load: {e}"


@pytest.mark.gpu
def test_cuda_device_function_on_a_gpu_equals_predict(rng):
    usable, reason = _cuda_usable()
    if not usable:
        pytest.skip(reason)
    from numba import cuda

    def kernel_for(g):
        @cuda.jit
        def kernel(X, out):
            i = cuda.grid(1)
            if i < X.shape[0]:
                g(X[i], out[i])

        return kernel

    for dtype in ("float64", "float32"):
        net, X = _trained(rng, dtype=dtype, output="softmax", layers=(3, 16, 8, 3))
        kernel = kernel_for(net.compiled_predict(target="cuda"))
        X = rng.uniform(-3, 5, size=(10000, 3)).astype(dtype)
        d_out = cuda.device_array((10000, 3), dtype)
        kernel[(10000 + 127) // 128, 128](cuda.to_device(X), d_out)
        tol = 1e-12 if dtype == "float64" else 1e-5
        np.testing.assert_allclose(d_out.copy_to_host(), net.predict(X), rtol=tol, atol=tol)


# -- loss and gradients ------------------------------------------------------------------------

GRADIENT_CASES = [("sigmoid", "mse"), ("sigmoid", "bce"), ("softmax", "cross_entropy"), ("identity", "mse")]


def _problem(rng, output, layers=(3, 5, 3), n=40):
    """Weights, biases, data and sample weights for a gradient check (outputs well inside (0, 1))."""
    ws = [rng.normal(scale=0.7, size=(p, q)) for p, q in zip(layers[:-1], layers[1:])]
    bs = [rng.normal(scale=0.3, size=q) for q in layers[1:]]
    X = rng.uniform(-1, 1, size=(n, layers[0]))
    if output == "softmax":
        y = np.eye(layers[-1])[rng.integers(0, layers[-1], n)]
    elif output == "identity":
        y = rng.normal(size=(n, layers[-1]))
    else:
        y = rng.uniform(0, 1, size=(n, layers[-1]))  # soft targets: bce's gradient is y - out there too
    return ws, bs, X, y, rng.uniform(0.2, 2.0, size=n)


def _flat(ws, bs):
    return np.concatenate([a.ravel() for a in ws + bs])


def _unflat(theta, ws, bs):
    out, at = [], 0
    for a in ws + bs:
        out.append(theta[at : at + a.size].reshape(a.shape))
        at += a.size
    return out[: len(ws)], out[len(ws) :]


@pytest.mark.parametrize("reduction", ["sum", "mean"])
@pytest.mark.parametrize("output, loss", GRADIENT_CASES)
def test_gradients_agree_with_central_differences(output, loss, reduction, rng):
    ws, bs, X, y, sw = _problem(rng, output)
    kw = dict(backend="numpy", output=output, loss=loss, reduction=reduction, alpha=0.3, sample_weight=sw)
    value, gw, gb = sn.loss_and_gradients(ws, bs, X, y, **kw)
    theta = _flat(ws, bs)

    def objective(t):
        return sn.loss_and_gradients(*_unflat(t, ws, bs), X, y, **kw)[0]

    fd = np.empty_like(theta)
    for i in range(theta.size):
        h = 1e-5 * max(1.0, abs(theta[i]))
        up, down = theta.copy(), theta.copy()
        up[i] += h
        down[i] -= h
        fd[i] = (objective(up) - objective(down)) / (2 * h)
    g = _flat(gw, gb)
    np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-6 * np.abs(fd).max())
    assert value == pytest.approx(objective(theta), rel=1e-15)
    assert all(a.dtype == np.float64 for a in gw + gb)


def test_gradients_agree_with_central_differences_for_class_weights_and_no_bias(rng):
    ws, _, X, _, _ = _problem(rng, "sigmoid", layers=(3, 4, 1))
    y = rng.integers(0, 2, size=(X.shape[0], 1)).astype(float)
    kw = dict(backend="numpy", loss="bce", reduction="mean", class_weight="balanced")
    value, gw, gb = sn.loss_and_gradients(ws, None, X, y, **kw)
    assert gb is None
    theta = _flat(ws, [])
    fd = np.empty_like(theta)
    for i in range(theta.size):
        up, down = theta.copy(), theta.copy()
        up[i] += 1e-5
        down[i] -= 1e-5
        fd[i] = (sn.loss_and_gradients(_unflat(up, ws, [])[0], None, X, y, **kw)[0]
                 - sn.loss_and_gradients(_unflat(down, ws, [])[0], None, X, y, **kw)[0]) / 2e-5  # fmt: skip
    np.testing.assert_allclose(_flat(gw, []), fd, rtol=1e-6, atol=1e-6 * np.abs(fd).max())


@pytest.mark.parametrize("output, loss", GRADIENT_CASES)
def test_gradients_agree_across_numpy_numba_and_dask(output, loss, rng):
    import dask

    from sigmanet.datasets import as_dask

    ws, bs, X, y, sw = _problem(rng, output, layers=(4, 6, 3), n=300)
    kw = dict(output=output, loss=loss, reduction="mean", alpha=0.1)
    ref = sn.loss_and_gradients(ws, bs, X, y, backend="numpy", sample_weight=sw, **kw)
    got = {"numba": sn.loss_and_gradients(ws, bs, X, y, backend="numba", sample_weight=sw, **kw)}
    with dask.config.set(scheduler="threads"):  # Dask's local scheduler, whatever client another test left
        got["dask"] = sn.loss_and_gradients(
            ws, bs, as_dask(X, 70), as_dask(y, 70), backend="numpy", sample_weight=as_dask(sw, 70), **kw
        )
    for name, (value, gw, gb) in got.items():
        assert value == pytest.approx(ref[0], rel=1e-9), name
        for a, b in zip(gw + gb, ref[1] + ref[2]):
            np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12, err_msg=name)
            assert isinstance(a, np.ndarray)


@pytest.mark.parametrize("backend", ["numpy", "numba:fused"])  # an engine pinned: no strategy measured
def test_the_network_method_is_the_functional_at_its_weights_with_its_fit_options(backend, rng):
    net = sn.Network([3, 5, 2], backend=backend, seed=2, bias=True, output="sigmoid")
    X, y = _data(rng, 80, net.layers, "sigmoid")
    sw = rng.uniform(0.5, 1.5, size=80)
    net.fit(X, y, iterations=3, loss="bce", reduction="mean", alpha=0.2, scale_inputs=True, warn_stuck=False)
    lo, hi = net.input_range
    Xs = (X - lo) / np.where(hi > lo, hi - lo, 1.0)
    value, gw, gb = net.loss_and_gradients(X, y, sample_weight=sw)  # loss, reduction, alpha: the stored ones
    ref = sn.loss_and_gradients(
        net.weights, net.biases, Xs, y, backend="numpy", loss="bce", reduction="mean", alpha=0.2, sample_weight=sw
    )
    assert value == pytest.approx(ref[0], rel=1e-9)
    for a, b in zip(gw + gb, ref[1] + ref[2]):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
    given = net.loss_and_gradients(X, y, alpha=0.0, reduction="sum")  # options given override the stored ones
    plain = sn.loss_and_gradients(net.weights, net.biases, Xs, y, backend="numpy", loss="bce")
    assert given[0] == pytest.approx(plain[0], rel=1e-9)
    with pytest.raises(TypeError, match="learning_rate"):
        net.loss_and_gradients(X, y, learning_rate=1.0)


@pytest.mark.parametrize("backend", ["numpy", "numba:fused"])
@pytest.mark.parametrize("output, loss", GRADIENT_CASES)
def test_the_gradient_is_the_one_a_fit_steps_along(output, loss, backend, rng):
    """One plain SGD step of fit moves the weights by -learning_rate * gradient, and reports the loss."""
    net = sn.Network([3, 5, 3], backend=backend, seed=4, bias=True, output=output)
    X, y = _data(rng, 50, net.layers, output)
    sw = rng.uniform(0.5, 1.5, size=50)
    opts = dict(loss=loss, reduction="mean", alpha=0.05, sample_weight=sw)
    value, gw, gb = net.loss_and_gradients(X, y, **opts)
    w0, b0 = net.weights, net.biases
    hist = net.fit(X, y, iterations=1, learning_rate=0.3, warn_stuck=False, **opts)
    for new, old, g in zip(net.weights + net.biases, w0 + b0, gw + gb):
        np.testing.assert_allclose(new, old - 0.3 * g, rtol=1e-10, atol=1e-13)
    assert hist.losses[0] == pytest.approx(value, rel=1e-10)


def test_loss_and_gradients_refuses_bad_weights_before_any_work(rng):
    ws, bs, X, y, _ = _problem(rng, "sigmoid")
    with pytest.raises(ValueError, match="weights\\[1\\] has 4 rows"):
        sn.loss_and_gradients([ws[0], np.ones((4, 3))], None, X, y)
    with pytest.raises(ValueError, match="biases must hold"):
        sn.loss_and_gradients(ws, bs[:1], X, y)
    with pytest.raises(ValueError, match="reduction"):
        sn.loss_and_gradients(ws, bs, X, y, reduction="avg")
    # found by a review: these were accepted (NaN loss, a dropped imaginary part, strings parsed as numbers)
    cases = [
        ([ws[0] * np.nan, ws[1]], None, ValueError, r"weights\[0\] must be finite real numbers"),
        (
            [ws[0], ws[1].astype(complex)],
            None,
            ValueError,
            r"weights\[1\] must be finite real numbers, got dtype complex",
        ),
        ([ws[0].astype(str), ws[1]], None, ValueError, r"weights\[0\] must be finite real numbers, got dtype <U"),
        ([ws[0].astype(np.float16), ws[1]], None, ValueError, r"weights\[0\] has dtype float16"),
        (ws, [bs[0], bs[1] * np.inf], ValueError, r"biases\[1\] must be finite real numbers"),
        (None, None, TypeError, "weights must be a sequence of 2-D arrays"),
        ("ab", None, TypeError, "weights must be a sequence of 2-D arrays"),
        (ws, 5, TypeError, "biases must be a sequence of 1-D arrays, or None"),
    ]
    for weights, biases, exc, match in cases:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # refused, not warned about
            with pytest.raises(exc, match=match):
                sn.loss_and_gradients(weights, biases, X, y)
    listed = sn.loss_and_gradients(ws, bs, X, y)  # any iterable of parameters, generators included
    generated = sn.loss_and_gradients((w for w in ws), iter(bs), X, y)
    assert listed[0] == generated[0] and all(np.array_equal(a, b) for a, b in zip(listed[1], generated[1]))


# -- arrays from any library (DLPack) ----------------------------------------------------------


def _table(rng, n=120):
    X = rng.uniform(-2, 4, size=(n, 3))
    y = rng.integers(0, 2, size=(n, 1)).astype(float)
    return X, y, rng.uniform(0.5, 1.5, size=n)


def test_a_torch_tensor_is_viewed_without_a_copy_and_results_return_as_tensors_sharing_memory():
    torch = pytest.importorskip("torch", reason="PyTorch is not installed (pip install torch, the CPU build)")
    from sigmanet._arrays import from_user
    from sigmanet.backends import get_backend

    t = torch.rand(50, 3, dtype=torch.float64)
    view, caller = from_user("X", t)
    assert isinstance(view, np.ndarray) and caller.library == "torch"
    assert view.ctypes.data == t.data_ptr()  # the tensor's own memory
    be = get_backend("numpy")
    assert be.to_device(view, np.float64).ctypes.data == t.data_ptr()  # dtype and layout allow: no copy
    out = np.random.default_rng(0).random((4, 2))
    back = be.to_user(out, caller)
    assert isinstance(back, torch.Tensor) and back.dtype == torch.float64
    assert back.data_ptr() == out.ctypes.data  # the result handed over, not copied
    # where the dtype or the layout does not allow, one copy into the network's dtype (the tensor untouched)
    for other in (t.float(), torch.rand(3, 50, dtype=torch.float64).T):
        v, _ = from_user("X", other)
        assert not np.shares_memory(be.to_device(v, np.float64), v)
    with pytest.raises(TypeError, match=r"X \(Tensor\).*detach"):
        from_user("X", torch.rand(4, 3, dtype=torch.float64, requires_grad=True))


@pytest.mark.parametrize("backend", ["numpy", "numba:fused"])
def test_torch_tensors_in_give_torch_tensors_out_through_fit_predict_error_and_gradients(backend, rng):
    torch = pytest.importorskip("torch", reason="PyTorch is not installed (pip install torch, the CPU build)")
    X, y, sw = _table(rng)
    Xt, yt, swt = (torch.from_numpy(a.copy()) for a in (X, y, sw))
    kept = [a.clone() for a in (Xt, yt, swt)]
    a = sn.Network([3, 4, 1], backend=backend, seed=5, bias=True)
    b = sn.Network([3, 4, 1], backend=backend, seed=5, bias=True)
    opts = dict(iterations=30, batch_size=40, shuffle=True, scale_inputs=True, reduction="mean", warn_stuck=False)
    a.fit(X, y, sample_weight=sw, **opts)
    b.fit(Xt, yt, sample_weight=swt, **opts)
    for u, w in zip(a.weights, b.weights):
        np.testing.assert_array_equal(u, w)
    p = b.predict(Xt)
    assert isinstance(p, torch.Tensor) and p.dtype == torch.float64 and p.shape == (120, 1)
    np.testing.assert_array_equal(p.numpy(), a.predict(X))
    assert b.error(Xt, yt) == a.error(X, y)
    value, gw, gb = sn.loss_and_gradients(b.weights, b.biases, Xt, yt, backend=backend, sample_weight=swt)
    ref = sn.loss_and_gradients(a.weights, a.biases, X, y, backend=backend, sample_weight=sw)
    assert value == ref[0] and all(isinstance(g, torch.Tensor) for g in gw + gb)
    for g, r in zip(gw + gb, ref[1] + ref[2]):
        np.testing.assert_array_equal(g.numpy(), r)
    for before, after in zip(kept, (Xt, yt, swt)):
        assert torch.equal(before, after)  # inputs never written


def test_a_float64_tensor_is_trained_on_and_predicted_without_a_copy_of_it():
    torch = pytest.importorskip("torch", reason="PyTorch is not installed (pip install torch, the CPU build)")
    import tracemalloc

    y = torch.rand(20000, 1, dtype=torch.float64)
    peaks = {}
    for dtype in (torch.float64, torch.float32):
        X = torch.rand(20000, 50, dtype=dtype)
        net = sn.Network([50, 2, 1], backend="numpy", seed=0)
        net.fit(X[:10], y[:10], iterations=1, warn_stuck=False)  # first-call costs out of the way
        tracemalloc.start()
        try:
            net.fit(X, y, iterations=2, warn_stuck=False)
            net.predict(X)
            peaks[dtype] = tracemalloc.get_traced_memory()[1] / (20000 * 50 * 8)
        finally:
            tracemalloc.stop()
    assert peaks[torch.float64] < 0.5  # no copy of X: activations of 2 units and the output only
    assert peaks[torch.float32] > 0.9  # the control: a float32 tensor is converted once, and that shows


@pytest.mark.slow  # a fresh process or a library import: over a second
def test_jax_arrays_are_accepted_and_jax_arrays_returned(rng):
    pytest.importorskip("jax", reason="JAX is not installed (pip install jax jaxlib)")
    import jax
    import jax.numpy as jnp

    X, y, sw = _table(rng)
    Xj, yj, swj = (jnp.asarray(a) for a in (X, y, sw))  # float32 unless jax_enable_x64
    net = sn.Network([3, 4, 1], backend="numpy", seed=5, bias=True)
    ref = sn.Network([3, 4, 1], backend="numpy", seed=5, bias=True)
    opts = dict(iterations=20, scale_inputs=True, reduction="mean", warn_stuck=False)
    net.fit(Xj, yj, sample_weight=swj, **opts)  # JAX's memory is read-only: a write would raise here
    ref.fit(*(np.asarray(a) for a in (Xj, yj)), sample_weight=np.asarray(swj), **opts)
    for u, w in zip(net.weights, ref.weights):
        np.testing.assert_array_equal(u, w)
    p = net.predict(Xj)
    assert isinstance(p, jax.Array) and p.shape == (120, 1)
    np.testing.assert_allclose(np.asarray(p), ref.predict(np.asarray(Xj)), rtol=1e-6)
    value, gw, gb = sn.loss_and_gradients(net.weights, net.biases, Xj, yj, backend="numba")
    assert all(isinstance(g, jax.Array) for g in gw + gb)
    assert value == pytest.approx(sn.loss_and_gradients(net.weights, net.biases, np.asarray(Xj), np.asarray(yj))[0])


@pytest.mark.parametrize(
    "engine", [pytest.param(e, marks=pytest.mark.slow) if e == "numba:specialised" else e for e in CPU_ENGINES]
)
def test_read_only_inputs_are_never_written_on_any_engine(engine, rng):
    X, y, sw = _table(rng)
    kept = [a.copy() for a in (X, y, sw)]
    for a in (X, y, sw):
        a.flags.writeable = False
    net = sn.Network([3, 4, 1], backend=engine, seed=5, bias=True)
    net.fit(X, y, iterations=12, batch_size=40, shuffle=True, scale_inputs=True, sample_weight=sw,
            class_weight="balanced", warn_stuck=False)  # fmt: skip
    net.predict(X)
    net.error(X, y)
    net.loss_and_gradients(X, y, sample_weight=sw)
    out = np.empty((X.shape[0], 1))
    _each_row(net.compiled_predict(), X, out)
    for before, after in zip(kept, (X, y, sw)):
        np.testing.assert_array_equal(before, after)


# -- a good guest ------------------------------------------------------------------------------


def _run(script, **env):
    r = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        env=dict(os.environ, PYTHONPATH=SRC, **env),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    return r


def _blas_counts():
    from threadpoolctl import threadpool_info

    return sorted({lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"})


def test_sigmanets_small_products_inside_a_fit_run_on_one_blas_thread_and_public_calls_on_the_callers(monkeypatch, rng):
    """Inside a fit, sigmanet's own small products (the estimator's validation predict after each
    epoch, the saturation and stuck checks on 256 rows after the fit) run BLAS on one thread: any
    multi-threaded OpenBLAS call leaves its threads spinning for about 0.1 s, beside the next numba
    fit's own. A public predict or diagnose leaves the caller's count alone (a limit holds for the
    whole process, so it would reach the caller's other threads), and so does everything afterwards."""
    from threadpoolctl import threadpool_limits

    import sigmanet.backends.reference as reference
    from sigmanet.sklearn import SigmaNetClassifier

    seen = []
    real_activate, real_exp = reference.activate, np.exp

    def activate(*args):
        seen.append(("predict", tuple(_blas_counts())))
        return real_activate(*args)

    def exp(z, *args, **kwargs):
        seen.append(("check", tuple(_blas_counts())))
        return real_exp(z, *args, **kwargs)

    def during(fn):
        seen.clear()
        monkeypatch.setattr(reference, "activate", activate)
        monkeypatch.setattr(np, "exp", exp)
        try:
            fn()
        finally:
            monkeypatch.undo()
        return sorted(set(seen))

    X, y = rng.random((300, 64)), rng.random((300, 10))
    labels = rng.integers(0, 3, 300)
    net = sn.Network([64, 32, 10], backend="numba:fused", seed=0, bias=True)
    hist = net.fit(X, y, iterations=2, warn_stuck=False)
    clf = SigmaNetClassifier(backend="numba:fused", hidden_layer_sizes=(8,), max_iter=3, early_stopping=True,
                             random_state=0)  # fmt: skip
    with threadpool_limits(2):
        if _blas_counts() != [2]:
            pytest.skip("BLAS cannot run two threads here: nothing to limit")
        public = during(lambda: (net.predict(X), net.diagnose(X, hist)))
        in_fits = during(lambda: (quiet_fit(clf, X, labels), net.fit(X, y, iterations=2, warn_stuck=True)))
        after = _blas_counts()
    assert public == [("check", (2,)), ("predict", (2,))], public
    assert in_fits == [("check", (1,)), ("predict", (1,))], in_fits
    assert after == [2]


def quiet_fit(est, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return est.fit(X, y)


_THREADS = """
    import json, os, sys
    import numba
    import numpy as np
    from threadpoolctl import threadpool_limits

    if sys.argv[1] == "numba has loaded its BLAS":
        import scipy.linalg.cython_blas  # what numba's first compile in a process imports (numba.np.linalg)
    import sigmanet as sn

    def tasks():
        return set(os.listdir("/proc/self/task"))

    rng = np.random.default_rng(0)
    X, y = rng.random((4096, 64)), rng.random((4096, 16))
    report = {}

    def fit_and_count(name, net, compiled=False):
        before, seen = tasks(), set()
        def callback(iteration, error):
            seen.update(tasks())  # during the fit, between its report intervals
        net.fit(X, y, iterations=4, report_every=1, reduction="mean", callback=callback, warn_stuck=False)
        net.predict(X)
        if compiled:
            out = np.empty((X.shape[0], 16))
            net.compiled_predict()(X, out)
        seen.update(tasks())
        report[name] = sorted(seen - before)

    numba.set_num_threads(1)
    with threadpool_limits(1):
        fit_and_count("limits, compiled", sn.Network([64, 256, 16], backend="numba:compiled", seed=0), True)
        fit_and_count("limits, numpy", sn.Network([64, 256, 16], backend="numpy", seed=0))
    numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    fit_and_count("threads=1", sn.Network([64, 256, 16], backend="numba:compiled", seed=0, threads=1))
    fit_and_count("control: no limit", sn.Network([64, 256, 16], backend="numba:compiled", seed=0))
    report["numba threads"] = numba.config.NUMBA_NUM_THREADS
    print(json.dumps(report))
"""


def _threads_started(process):
    import json

    r = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_THREADS), process],
        env=dict(os.environ, PYTHONPATH=SRC),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    report = json.loads(r.stdout)
    if report["numba threads"] > 1:
        assert report["control: no limit"], "the unlimited fit started no thread: the count cannot see them"
    return report


_LIMITED = ("limits, compiled", "limits, numpy", "threads=1")


@pytest.mark.slow  # a fresh process or a library import: over a second
@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="counts threads through Linux's /proc/self/task")
def test_a_fit_under_the_callers_limits_starts_no_thread():
    """threadpoolctl's limit of 1 and numba.set_num_threads(1), or threads=1: the fit, predict and the
    compiled predict run in the caller's thread alone; without limits the same fit does start threads
    (where the machine has more than one core), so the count can see them."""
    report = _threads_started("numba has loaded its BLAS")
    for case in _LIMITED:
        assert report[case] == [], f"{case}: the fit started threads {report[case]}"


@pytest.mark.slow
@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="counts threads through Linux's /proc/self/task")
def test_the_first_numba_fit_of_a_process_under_limits_starts_no_thread():
    """A process's first numba compile imports scipy.linalg.cython_blas, whose OpenBLAS starts its thread
    pool at load, sized by the cores: the numba backend loads it within the caller's limit first."""
    report = _threads_started("first numba use")
    for case in _LIMITED:
        assert report[case] == [], f"{case}: the fit started threads {report[case]}"


_SETTINGS = """
    import json, os, signal, sys, warnings
    import numba
    import numpy as np
    import threadpoolctl

    def settings():
        threads = numba.get_num_threads()  # (starts numba's threading layer, which threadpoolctl then lists)
        return {
            "numba threads": threads,
            "blas": {lib["filepath"]: lib["num_threads"] for lib in threadpoolctl.threadpool_info()},
            "numpy errors": np.geterr(),
            "numpy print": repr(np.get_printoptions()),
            "warning filters": [repr(f) for f in warnings.filters],
            "showwarning": repr(warnings.showwarning),
            "random state": repr(np.random.get_state()),
            "environment": dict(os.environ),
            "SIGINT": repr(signal.getsignal(signal.SIGINT)),
            "excepthook": repr(sys.excepthook),
        }

    np.random.seed(1234)
    np.random.random(3)  # a state the user set, mid-stream
    start = settings()
    import sigmanet as sn
    imported = settings()
    rng = np.random.default_rng(0)
    X, y = rng.random((300, 3)), rng.random((300, 1))
    for backend in ("numpy", "numba:compiled", "numba:fused"):
        net = sn.Network([3, 8, 1], backend=backend, bias=True)
        net.fit(X, y, iterations=20, batch_size=50, shuffle=True, scale_inputs=True, reduction="mean")
        net.predict(X)
        net.error(X, y)
        net.loss_and_gradients(X, y)
    net.compiled_predict()(X, np.empty((300, 1)))
    sn.available_backends()
    fitted = settings()
    # a library loaded later (SciPy's OpenBLAS, by numba's first compile) is new, not changed
    for now in (imported, fitted):
        now["blas"] = {path: n for path, n in now["blas"].items() if path in start["blas"]}
    changed = {
        when: sorted(k for k in start if start[k] != now[k]) for when, now in (("import", imported), ("fit", fitted))
    }
    print(json.dumps(changed))
"""


@pytest.mark.slow  # a fresh process or a library import: over a second
def test_importing_and_fitting_change_no_process_wide_setting_and_print_nothing():
    import json

    r = _run(_SETTINGS)
    assert json.loads(r.stdout) == {"import": [], "fit": []}
    assert r.stdout.count("\n") == 1 and r.stderr == ""  # nothing printed besides the test's own line


@pytest.mark.slow  # a fresh process or a library import: over a second
def test_nothing_warns_or_prints_in_a_healthy_fit_and_a_stuck_fit_warns_once_per_cause(rng, capfd):
    X, y, sw = _table(rng, 200)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")  # a repeated warning would show as many times as it was issued
        for backend in ("numpy", "numba:fused"):
            net = sn.Network([3, 6, 1], backend=backend, seed=0, bias=True)
            net.fit(X, y, iterations=100, report_every=25, scale_inputs=True, reduction="mean", sample_weight=sw)
            net.predict(X)
            net.loss_and_gradients(X, y)
            net.compiled_predict()(X, np.empty((200, 1)))
        assert [str(w.message) for w in seen] == []
        causes = {}
        for cause, kw in (
            ("saturated", dict(X=X * 1e4, learning_rate=1.0)),  # unscaled inputs pin the sigmoid units
            ("frozen", dict(X=X, learning_rate=1e-300)),  # the error cannot move
        ):
            seen.clear()
            net = sn.Network([3, 6, 1], backend="numba:fused", seed=0)
            net.fit(kw["X"], y, iterations=100, report_every=25, learning_rate=kw["learning_rate"])
            causes[cause] = [w.message.cause for w in seen if isinstance(w.message, sn.StuckWarning)]
            assert len(seen) == 1, [str(w.message) for w in seen]
    assert causes == {"saturated": ["saturated"], "frozen": ["frozen"]}
    assert capfd.readouterr() == ("", "")


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_a_stream_on_a_cpu_network_or_a_dask_array_is_refused_naming_it_before_any_work(backend, rng):
    """stream= puts CuPy work on a CUDA stream (tests/test_cuda_emulation.py checks it runs there);
    where no stream applies it is refused, the network untouched, not silently ignored."""
    X = rng.random((20, 3))
    y = rng.random((20, 1))
    net = sn.Network([3, 4, 1], backend=backend, seed=0)
    before = [w.copy() for w in net.weights]
    calls = [
        lambda: net.fit(X, y, iterations=5, stream=object()),
        lambda: net.predict(X, stream=object()),
        lambda: net.error(X, y, stream=object()),
        lambda: net.loss_and_gradients(X, y, stream=object()),
        lambda: sn.loss_and_gradients(net.weights, None, X, y, backend=backend, stream=object()),
    ]
    for call in calls:
        with pytest.raises(ValueError, match=f"stream= is for the CuPy backend; this network runs on '{backend}'"):
            call()
    assert net.iteration == 0 and all(np.array_equal(a, b) for a, b in zip(before, net.weights))
    da = pytest.importorskip("dask.array")
    with pytest.raises(ValueError, match="stream= applies to in-memory arrays"):
        net.fit(da.from_array(X, chunks=10), da.from_array(y, chunks=10), iterations=5, stream=object())


# -- the documentation and the benchmark run -------------------------------------------------------


@pytest.mark.slow
def test_the_docstring_examples_of_the_embedding_module_run():
    import doctest

    import sigmanet.embedding

    result = doctest.testmod(sigmanet.embedding, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.slow
def test_the_embedding_benchmark_runs_with_tiny_counts(tmp_path):
    """A smoke run (no timing is asserted: figures come from a quiet machine)."""
    import importlib.util
    import json

    path = os.path.join(os.path.dirname(SRC), "benchmarks", "embedding_predict.py")
    spec = importlib.util.spec_from_file_location("embedding_predict", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    r = module.main(["--calls", "100", "--rows", "5", "--repeats", "1", "--json", str(tmp_path / "r.json")])
    assert json.loads((tmp_path / "r.json").read_text()) == r
    assert r["max_abs_difference_from_predict"] < 1e-12 and r["cpu"]
