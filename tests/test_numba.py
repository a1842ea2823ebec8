"""numba backend specifics: one loop compiled into every engine, the compile cache, threads, the
engine's choice (measured robustly, cached on disk), no allocation in the loop."""

import json
import os
import subprocess
import sys
import textwrap
import tracemalloc

import numpy as np
import pytest
from reference import random_problem

import sigmanet as sn
from sigmanet.backends import TrainConfig, get_backend
from sigmanet.backends.numba import strategy as numba_strategy
from sigmanet.datasets import make_table, tutorial_table

pytestmark = pytest.mark.usefixtures("_backend_numba")

STATS = textwrap.dedent("""
    import json, numpy as np, sigmanet as sn
    from sigmanet.datasets import tutorial_table
    from sigmanet.backends import TrainConfig
    from sigmanet.backends.numba import step
    out = {}
    for name, backend in [("specialised", "numba:specialised"), ("fused", "numba:fused")]:
        net = sn.Network([3, 4, 1], backend=backend, seed=1)
        tr = net._backend.trainer(net.weights, None, *tutorial_table(), TrainConfig())
        tr.run(0, 10)
        s = tr.kernel.stats
        out[name] = {"hits": sum(s.cache_hits.values()), "misses": sum(s.cache_misses.values()),
                     "path": s.cache_path}
    print(json.dumps(out))
""")


def run_stats(env):
    out = subprocess.run([sys.executable, "-c", STATS], capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_a_second_process_reuses_the_compile_cache(tmp_path):
    """Both engines from one pair of processes (each process compiles both: 15 s or more apiece)."""
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path), SIGMANET_CACHE_DIR=str(tmp_path / "sigmanet"))
    first, second = run_stats(env), run_stats(env)
    for kernel in ("specialised", "fused"):
        assert first[kernel]["misses"] == 1 and first[kernel]["hits"] == 0, kernel
        assert second[kernel]["hits"] == 1 and second[kernel]["misses"] == 0, kernel
    assert first["specialised"]["path"].startswith(str(tmp_path))


@pytest.mark.slow
def test_cache_can_be_switched_off(tmp_path):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path), SIGMANET_CACHE_DIR=str(tmp_path), SIGMANET_NUMBA_CACHE="0")
    stats = run_stats(env)
    assert stats["specialised"]["path"] is None and stats["fused"]["path"] is None
    assert not list(tmp_path.rglob("*.nbi"))


def test_the_specialised_engine_is_the_one_loop_partially_evaluated():
    """The generated kernel is step.interval_loop with the sizes and options folded in: no piece is
    defined there, the layer loops are unrolled, and code for other options (BLAS, sparse X) is gone."""
    from sigmanet.backends.numba import _specialise

    flags = dict(output=0, loss=1, derivative=False, use_bias=True, weighted=False, optimizer=3, track_all=False,
                 gathered=False, sparse=False, invscaling=False, mean=True)  # fmt: skip
    src = _specialise.render([3, 4, 1], flags)
    assert src.count("def ") == 1 and "def train(" in src  # one function: no second copy of any piece
    assert "sizes[" not in src and "for k in" not in src  # the layers unrolled, their sizes constants
    assert "_gemm_call" not in src and "_csr_" not in src and "prange" not in src  # other engines' code folded
    assert "update_one(" in src and "sigmoid_inplace(" in src  # the per-element pieces, called
    assert "n_rows = Y.shape[0]" in src and "batch_size" in src  # rows read at run time ...
    tiny = _specialise.render([3, 4, 1], flags, rows=4)
    assert "n_rows = 4" in tiny and "batch_size <" not in tiny  # ... or, for a tiny full batch, constants
    with pytest.raises(ValueError, match="rows"):
        _specialise.render([3, 4, 1], flags, rows=_specialise.ROWS_LIMIT + 1)
    sparse = _specialise.render([3, 4, 1], dict(flags, sparse=True))
    assert "_csr_forward" in sparse and "_csr_gradient" in sparse
    b = get_backend("numba")
    X, y = tutorial_table()
    assert b.trainer(sn.Network([3, 4, 1]).weights, None, X, y, TrainConfig()).engine == "specialised"
    assert b.trainer(sn.Network([3, 30, 1]).weights, None, X, y, TrainConfig()).engine == "fused"


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
        h = sn.Network([3, 4, 1], backend="numba:fused", seed=1, init="legacy").fit(*tutorial_table(), iterations=10)
        print(h.errors[0])
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert abs(float(out.stdout.strip()) - 0.4964100319027255) < 1e-12


def test_the_engine_is_picked_by_size_at_the_ends():
    b = get_backend("numba")
    X, y = tutorial_table()
    assert b.trainer(sn.Network([3, 4, 1], seed=0).weights, None, X, y, TrainConfig()).engine == "specialised"
    X, y = make_table(4096, 64, 4)  # 75M multiply-adds per step: past LARGE_LIMIT, not measured
    w = sn.Network([64, 256, 4], seed=0).weights
    assert 4096 * (64 * 256 + 256 * 4) >= numba_strategy.LARGE_LIMIT
    assert b.trainer(w, None, X, y, TrainConfig()).engine == "compiled"


def test_threads_split_the_rows_and_results_agree(rng):
    X, y = random_problem(rng, 500, [6, 10, 2])
    nets = {t: sn.Network([6, 10, 2], backend="numba:compiled", seed=4, threads=t) for t in (1, 2, 3)}
    for t, net in nets.items():
        tr = net._backend.trainer(net.weights, None, X, y, TrainConfig())
        assert tr.T == t and tr.engine == "compiled"
        net.fit(X, y, iterations=30, reduction="mean")
    for t in (2, 3):
        for a, b in zip(nets[1].weights, nets[t].weights, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-12)


def test_blas_runs_single_threaded_inside_the_call():
    from threadpoolctl import threadpool_info

    b = get_backend("numba")
    with b.blas_limit(1):
        blas = [lib for lib in threadpool_info() if lib["user_api"] == "blas"]
        assert blas, "threadpoolctl sees no BLAS: the limit would bound nothing"
        assert all(lib["num_threads"] == 1 for lib in blas)


def test_a_callers_limits_bound_the_threads():
    import numba
    from threadpoolctl import threadpool_limits

    b = get_backend("numba")
    full = b.thread_count(10**6)
    assert full == min(numba.get_num_threads(), full)
    with threadpool_limits(1):
        assert b.thread_count(10**6) == 1
    old = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        assert b.thread_count(10**6) == 1
    finally:
        numba.set_num_threads(old)


@pytest.mark.slow  # a fresh process
def test_numba_num_threads_sets_the_default_thread_count():
    code = textwrap.dedent("""
        import sigmanet as sn
        from sigmanet.backends import TrainConfig
        from sigmanet.datasets import make_table
        X, y = make_table(4096, 64, 4)
        net = sn.Network([64, 256, 4], backend="numba:compiled", seed=0)
        tr = net._backend.trainer(net.weights, None, X, y, TrainConfig())
        print(tr.engine, tr.T)
    """)
    for n in ("1", "2"):  # (BLAS's own count, the cores by default, bounds it too)
        env = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}  # (Dask's nanny sets them)
        env["NUMBA_NUM_THREADS"] = n
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
        assert out.stdout.split() == ["compiled", n]


@pytest.mark.parametrize("engine", ["fused", "compiled"])
def test_no_allocation_inside_the_training_loop(engine):
    X, y = make_table(2048, 16, 2)
    net = sn.Network([16, 32, 2], backend=f"numba:{engine}", seed=0)
    tr = net._backend.trainer(net.weights, None, X, y, TrainConfig(reduction="mean"))
    tr.run(0, 2)  # compile
    tr.run(0, 2)  # the BLAS-limit registry rescans the libraries once after the compile's imports
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    tr.run(2, 50)
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    # 50 iterations over 2048 x (16 + 32 + 2) activations would allocate megabytes;
    # what remains is Python bookkeeping (the call's tuples, the report), a few kB.
    assert peak < 32 * 1024, peak


def _blas_counts():
    """Each loaded BLAS library's thread count, by path."""
    from threadpoolctl import threadpool_info

    return {lib["filepath"]: lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"}


def test_concurrent_fits_leave_blas_threads_as_they_found_them_and_match_sequential_fits():
    """Fits in several threads (numba's compiled engine limits BLAS to one thread, the NumPy backend's
    threads= likewise): afterwards every BLAS library has its thread count back, and each network's
    weights equal, bit for bit, the same fit run alone."""
    from concurrent.futures import ThreadPoolExecutor

    before = _blas_counts()
    assert before
    X, y = make_table(3000, 32, 4)

    def fit(args):
        backend, threads = args
        net = sn.Network([32, 64, 4], backend=backend, seed=5, threads=threads)
        net.fit(X, y, iterations=20, report_every=2, reduction="mean")
        return net.weights

    jobs = [("numba:compiled", None), ("numba:compiled", 2), ("numpy", 1), ("numba:fused", None)]
    with ThreadPoolExecutor(1) as pool:
        alone = list(pool.map(fit, jobs))
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(fit, jobs))
    after = _blas_counts()
    assert {path: after[path] for path in before} == before  # (a library loaded since keeps its own default)
    for a, b in zip(alone, together, strict=True):
        for wa, wb in zip(a, b, strict=True):
            assert np.array_equal(wa, wb)


def test_a_fit_in_a_thread_that_lives_on_leaves_the_callers_own_blas_limits_working():
    """threadpoolctl (3.8+) lets one thread at a time change OpenBLAS's count: a fit that claimed that
    right from a worker thread would leave the caller's own threadpool_limits doing nothing while the
    worker lives. The fit's limit goes past the claim, so the caller's limit still takes."""
    from concurrent.futures import ThreadPoolExecutor

    from threadpoolctl import threadpool_limits

    def fit():
        sn.Network([32, 64, 4], backend="numba:compiled", seed=5).fit(X, y, iterations=4)

    X, y = make_table(3000, 32, 4)
    before = _blas_counts()
    with ThreadPoolExecutor(1) as pool:  # its thread stays alive until the block ends
        pool.submit(fit).result()
        assert {path: n for path, n in _blas_counts().items() if path in before} == before
        with threadpool_limits(1, user_api="blas"):
            assert set(_blas_counts().values()) == {1}
        assert {path: n for path, n in _blas_counts().items() if path in before} == before


# -- the engine's choice between the limits --


class FakeClock:
    """perf_counter for strategy.measure: each candidate's run advances it by its cost x iterations."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_the_measurement_keeps_each_candidates_minimum_over_interleaved_rounds(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(numba_strategy.time, "perf_counter", clock)
    runs = {"fast": 0, "slow": 0}

    def candidate(name, cost):
        def run(n):
            runs[name] += 1
            load = 50.0 if name == "fast" and runs[name] == 3 else 1.0  # one round slowed by another process
            clock.now += cost * n * load

        return run

    choice = numba_strategy.measure({"slow": candidate("slow", 2e-3), "fast": candidate("fast", 1e-3)}, rounds=3)
    assert choice == "fast"  # the minimum ignores the round a transient load slowed 50x
    assert runs["fast"] >= 4 and runs["slow"] >= 4  # warm-up, sizing, and three rounds each


def test_between_the_limits_the_choice_is_measured_once_then_read_from_disk(tmp_path, monkeypatch):
    monkeypatch.setenv("SIGMANET_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(numba_strategy, "_MEMORY", {})
    calls = []
    monkeypatch.setattr(numba_strategy, "measure", lambda candidates, rounds=3: calls.append(1) or "compiled")
    X, y = make_table(2000, 16, 4)
    w = sn.Network([16, 32, 4], seed=0).weights  # 2000 x 640 multiply-adds: between the limits
    assert numba_strategy.SMALL_LIMIT < 2000 * 640 < numba_strategy.LARGE_LIMIT
    b = get_backend("numba")
    assert b.trainer(w, None, X, y, TrainConfig()).engine == "compiled"
    assert len(calls) == 1
    saved = json.loads((tmp_path / numba_strategy.CACHE_FILE).read_text())
    assert list(saved.values()) == ["compiled"] and "sizes=16-32-4" in next(iter(saved))
    monkeypatch.setattr(numba_strategy, "_MEMORY", {})  # a new process: only the file remembers
    assert b.trainer(w, None, X, y, TrainConfig()).engine == "compiled"
    assert len(calls) == 1  # read back, not measured again
    monkeypatch.setenv("SIGMANET_NUMBA_STRATEGY", "fused")
    assert get_backend("numba").trainer(w, None, X, y, TrainConfig()).engine == "fused"
    assert len(calls) == 1


def test_a_choice_already_made_builds_no_candidate_trainer(tmp_path, monkeypatch):
    """Once the engine for a shape is known (this process, or the cache file), a fit builds one trainer:
    its own. The candidates' trainers (each a copy of X) are built only to be measured."""
    monkeypatch.setenv("SIGMANET_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(numba_strategy, "_MEMORY", {})
    X, y = make_table(2000, 16, 4)
    w = sn.Network([16, 32, 4], seed=0).weights  # between the limits: measured
    b = get_backend("numba")
    built = []
    real = type(b)._build
    monkeypatch.setattr(type(b), "_build", lambda self, engine, *a: built.append(engine) or real(self, engine, *a))
    first = b.trainer(w, None, X, y, TrainConfig()).engine
    assert len(built) == 3 and built[-1] == first  # two measured candidates, then the fit's own
    built.clear()
    assert b.trainer(w, None, X, y, TrainConfig()).engine == first
    assert built == [first]
    monkeypatch.setattr(numba_strategy, "_MEMORY", {})  # a new process: the file remembers
    built.clear()
    assert b.trainer(w, None, X, y, TrainConfig()).engine == first
    assert built == [first]


def test_the_measurement_trains_copies(tmp_path, monkeypatch):
    monkeypatch.setenv("SIGMANET_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(numba_strategy, "_MEMORY", {})
    X, y = make_table(2000, 16, 4)
    net = sn.Network([16, 32, 4], backend="numba", seed=0)
    before = net.weights
    trainer = net._backend.trainer(net.weights, None, X, y, TrainConfig())
    assert trainer.engine in ("fused", "compiled")
    assert all(np.array_equal(a, b) for a, b in zip(net.weights, before, strict=True))
    assert all(np.array_equal(a, b) for a, b in zip(trainer.weights()[0], before, strict=True))


def test_an_unknown_pinned_engine_is_refused_naming_the_engines(monkeypatch):
    monkeypatch.setenv("SIGMANET_NUMBA_STRATEGY", "bogus")
    with pytest.raises(sn.BackendUnavailableError, match=r"SIGMANET_NUMBA_STRATEGY='bogus'.*fused"):
        sn.Network([3, 4, 1], backend="numba")
    with pytest.raises(sn.BackendUnavailableError, match="no strategy 'blocked'.*compiled"):
        sn.Network([3, 4, 1], backend="numba:blocked")


def test_the_loops_options_are_unpacked_in_the_order_the_engines_build_them():
    import ast
    import inspect

    from sigmanet.backends.numba import step

    tree = ast.parse(
        inspect.getsource(step.interval_loop.py_func if hasattr(step.interval_loop, "py_func") else step.interval_loop)
    )
    unpack = next(
        n
        for n in ast.walk(tree)
        if isinstance(n, ast.Assign) and isinstance(n.value, ast.Name) and n.value.id == "options"
    )
    assert tuple(e.id for e in unpack.targets[0].elts) == step.OPTIONS
