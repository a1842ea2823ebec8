"""numba backend specifics: compile cache, threads, strategy choice, no allocation in the loop."""

import json
import os
import subprocess
import sys
import textwrap
import tracemalloc

import numpy as np
import pytest
from helpers import force_strategy
from reference import random_problem

import sigmanet as sn
from sigmanet.backends import TrainConfig, get_backend, numba_backend
from sigmanet.datasets import make_table, tutorial_table

pytestmark = pytest.mark.usefixtures("_backend_numba")

STATS = textwrap.dedent("""
    import json, numpy as np, sigmanet as sn
    from sigmanet.datasets import tutorial_table
    from sigmanet.backends import TrainConfig
    out = {}
    # the seed (narrow: a kernel generated for its sizes) and a 30-wide net (the generic kernel)
    for name, layers, (X, y) in [("specialised", [3, 4, 1], tutorial_table()),
                                 ("generic", [3, 30, 1], tutorial_table())]:
        net = sn.Network(layers, backend="numba", seed=1)
        tr = net._backend.trainer(net.weights, None, X, y, TrainConfig())
        tr.run(0, 10)
        from sigmanet.backends import _numba_kernels as K
        s = (tr.specialised or K.train_small).stats
        out[name] = {"hits": sum(s.cache_hits.values()), "misses": sum(s.cache_misses.values()),
                     "path": s.cache_path}
    print(json.dumps(out))
""")


def run_stats(env):
    out = subprocess.run([sys.executable, "-c", STATS], capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.parametrize("kernel", ["specialised", "generic"])
def test_a_second_process_reuses_the_compile_cache(tmp_path, kernel):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))
    first = run_stats(env)[kernel]
    second = run_stats(env)[kernel]
    assert first["misses"] == 1 and first["hits"] == 0
    assert second["hits"] == 1 and second["misses"] == 0
    assert first["path"].startswith(str(tmp_path))


@pytest.mark.slow
def test_cache_can_be_switched_off(tmp_path):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path), SIGMANET_NUMBA_CACHE="0")
    stats = run_stats(env)
    assert stats["specialised"]["path"] is None and stats["generic"]["path"] is None
    assert not list(tmp_path.rglob("*.nbi"))


def test_narrow_nets_get_a_kernel_specialised_to_their_sizes():
    from sigmanet.backends import _numba_codegen

    src = _numba_codegen.render([3, 4, 1])
    assert "range(3)" in src and "range(4)" in src and "sizes[" not in src  # bounds are literals
    b = get_backend("numba")
    X, y = tutorial_table()
    assert b.trainer(sn.Network([3, 4, 1]).weights, None, X, y, TrainConfig()).specialised is not None
    assert b.trainer(sn.Network([3, 30, 1]).weights, None, X, y, TrainConfig()).specialised is None


@pytest.mark.slow
def test_falls_back_to_no_cache_where_no_folder_is_writable():
    """Simulates numba's "no locator available" (root can write anywhere, so it cannot be produced for real)."""
    code = textwrap.dedent("""
        import numba
        real = numba.njit
        def refusing(*a, **k):
            if k.get("cache"):
                raise RuntimeError("cannot cache function: no locator available for file")
            return real(*a, **k)
        numba.njit = refusing
        import sigmanet as sn
        from sigmanet.datasets import tutorial_table
        h = sn.Network([3, 4, 1], backend="numba", seed=1, init="legacy").fit(*tutorial_table(), iterations=10)
        print(h.errors[0])
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert abs(float(out.stdout.strip()) - 0.4964100319027255) < 1e-12


def test_strategy_is_picked_by_size():
    b = get_backend("numba")
    X, y = tutorial_table()
    w = sn.Network([3, 4, 1], seed=0).weights
    assert isinstance(b.trainer(w, None, X, y, TrainConfig()), numba_backend.FusedTrainer)
    X, y = make_table(16384, 64, 4)  # 285M multiply-adds per step: past BLOCKED_LIMIT, not measured
    w = sn.Network([64, 256, 4], seed=0).weights
    assert 16384 * (64 * 256 + 256 * 4) >= numba_backend.BLOCKED_LIMIT
    assert isinstance(b.trainer(w, None, X, y, TrainConfig()), numba_backend.BlockedTrainer)


def test_threads_option_sets_the_worker_count_and_results_agree(rng, monkeypatch):
    force_strategy(monkeypatch, "numba-blocked")
    X, y = random_problem(rng, 500, [6, 10, 2])
    nets = {t: sn.Network([6, 10, 2], backend="numba", seed=4, threads=t) for t in (1, 2, 3)}
    for t, net in nets.items():
        tr = net._backend.trainer(net.weights, None, X, y, TrainConfig())
        assert len(tr.workers) == t
        net.fit(X, y, iterations=30, reduction="mean")
    for t in (2, 3):
        for a, b in zip(nets[1].weights, nets[t].weights, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-12)


def test_blas_runs_single_threaded_inside_the_workers():
    from threadpoolctl import threadpool_info

    b = get_backend("numba")
    with b.blas_limit(1):
        blas = [lib for lib in threadpool_info() if lib["user_api"] == "blas"]
        assert blas, "threadpoolctl sees no BLAS: the limit would bound nothing"
        assert all(lib["num_threads"] == 1 for lib in blas)


def test_numba_num_threads_sets_the_default_worker_count():
    code = textwrap.dedent("""
        import sigmanet as sn
        from sigmanet.backends import TrainConfig, numba_backend
        from sigmanet.datasets import make_table
        X, y = make_table(4096, 64, 4)
        net = sn.Network([64, 256, 4], backend="numba", seed=0)
        tr = net._backend.trainer(net.weights, None, X, y, TrainConfig())
        print(type(tr).__name__, len(tr.workers))
    """)
    for n in ("1", "3"):
        # the blocked path pinned: at this size the strategy is otherwise measured
        env = dict(os.environ, NUMBA_NUM_THREADS=n, SIGMANET_NUMBA_STRATEGY="blocked")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
        assert out.stdout.split() == ["BlockedTrainer", n]


@pytest.mark.parametrize("strategy", ["fused", "blocked"])
def test_no_allocation_inside_the_training_loop(strategy, monkeypatch):
    force_strategy(monkeypatch, f"numba-{strategy}")
    X, y = make_table(2048, 16, 2)
    net = sn.Network([16, 32, 2], backend="numba", seed=0)
    tr = net._backend.trainer(net.weights, None, X, y, TrainConfig(reduction="mean"))
    tr.run(0, 2)  # compile, start the worker threads
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    tr.run(2, 50)
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    # 50 iterations over 2048 x (16 + 32 + 2) activations would allocate megabytes;
    # what remains is Python bookkeeping (views, futures), a few kB.
    assert peak < 32 * 1024, peak


def test_concurrent_fits_leave_blas_threads_as_they_found_them_and_match_sequential_fits(monkeypatch):
    """Two fits in two threads (numba's blocked path limits BLAS to one thread per worker, the NumPy
    backend's threads= likewise): afterwards every BLAS library has its thread count back, and
    each network's weights equal, bit for bit, the same fit run alone."""
    from concurrent.futures import ThreadPoolExecutor

    from threadpoolctl import threadpool_info

    force_strategy(monkeypatch, "numba-blocked")
    before = {lib["filepath"]: lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"}
    assert before
    X, y = make_table(6000, 32, 4)

    def fit(args):
        backend, threads = args
        net = sn.Network([32, 64, 4], backend=backend, seed=5, threads=threads)
        net.fit(X, y, iterations=20, report_every=2, reduction="mean")
        return net.weights

    jobs = [("numba", None), ("numba", 2), ("numpy", 1), ("numba", None)]
    # One after the other, in one thread: OpenBLAS limited to one thread rounds differently when
    # called from the main thread than from any other (1 ulp; found here), so both runs use threads.
    with ThreadPoolExecutor(1) as pool:
        alone = list(pool.map(fit, jobs))
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(fit, jobs))
    after = {lib["filepath"]: lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"}
    assert {path: after[path] for path in before} == before  # (a library loaded since keeps its own default)
    for a, b in zip(alone, together, strict=True):
        for wa, wb in zip(a, b, strict=True):
            assert np.array_equal(wa, wb)


def test_between_the_limits_the_strategy_is_measured_once_per_shape_and_can_be_pinned(monkeypatch):
    b = get_backend("numba")
    calls = []
    monkeypatch.setattr(numba_backend, "_CHOICES", {})
    monkeypatch.setattr(type(b), "_measure", lambda self, *a: calls.append(1) or "fused")
    X, y = make_table(2000, 16, 4)
    w = sn.Network([16, 32, 4], seed=0).weights  # 2000 x 640 multiply-adds: between the limits
    assert numba_backend.SMALL_LIMIT < 2000 * 640 < numba_backend.BLOCKED_LIMIT
    assert isinstance(b.trainer(w, None, X, y, TrainConfig()), numba_backend.FusedTrainer)
    assert isinstance(b.trainer(w, None, X, y, TrainConfig()), numba_backend.FusedTrainer)
    assert len(calls) == 1  # measured the first time only
    monkeypatch.setenv("SIGMANET_NUMBA_STRATEGY", "blocked")
    assert isinstance(b.trainer(w, None, X, y, TrainConfig()), numba_backend.BlockedTrainer)
    assert len(calls) == 1


def test_the_measurement_trains_copies_and_picks_the_faster(monkeypatch):
    monkeypatch.setattr(numba_backend, "_CHOICES", {})
    X, y = make_table(2000, 16, 4)
    net = sn.Network([16, 32, 4], backend="numba", seed=0)
    before = net.weights
    choice = net._backend.strategy(net.weights, None, X, y, TrainConfig())
    assert choice in numba_backend.STRATEGIES
    assert all(np.array_equal(a, b) for a, b in zip(net.weights, before, strict=True))
