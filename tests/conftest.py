import importlib
import os
import sys
import zlib

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))

import sigmanet as sn  # noqa: E402

ALL_BACKENDS = ["numpy", "numba", "cupy"]


def _usable(name):
    return sn.backend_status()[name]


@pytest.fixture(params=ALL_BACKENDS)
def backend(request):
    """Every backend; skips (with the reason) only one this machine cannot run."""
    return request.getfixturevalue(f"_backend_{request.param}")


# Fresh random inputs every run; the run's seed is printed in the header, and
# SIGMANET_TEST_SEED=<seed> replays a failing run.
RUN_SEED = int(os.environ.get("SIGMANET_TEST_SEED") or np.random.SeedSequence().entropy % (2**32))


def pytest_report_header(config):
    return f"sigmanet test seed: SIGMANET_TEST_SEED={RUN_SEED}"


@pytest.fixture
def rng(request):
    return np.random.default_rng([RUN_SEED, zlib.crc32(request.node.nodeid.encode())])


# Every (backend, strategy) pair a fit can run through, and the module
# attributes patched to force it (strategies are picked by size thresholds).
ENGINES = {
    "numpy": {},
    "numba-fused": {("numba_backend", "SMALL_LIMIT"): 1 << 62},
    # the fused kernel for any width, never one generated for the sizes
    "numba-generic": {("numba_backend", "SMALL_LIMIT"): 1 << 62, ("_numba_codegen", "MAX_WIDTH"): 0},
    # smallest chunks (16 rows), so test tables span several workers
    "numba-blocked": {("numba_backend", "SMALL_LIMIT"): -1, ("numba_backend", "CHUNK_BYTES"): 1},
    "cupy-fused": {("cupy_backend", "SMALL_LIMIT"): 1 << 62},
    "cupy-graph": {("cupy_backend", "SMALL_LIMIT"): -1, ("cupy_backend", "GRAPH_LIMIT"): 1 << 62},
    "cupy-eager": {("cupy_backend", "SMALL_LIMIT"): -1, ("cupy_backend", "GRAPH_LIMIT"): -1},
}


@pytest.fixture(params=list(ENGINES))
def engine(request, monkeypatch):
    """A backend name, with its strategy forced; skips only a backend this machine cannot run."""
    backend = request.getfixturevalue(f"_backend_{request.param.partition('-')[0]}")
    for (module, attr), value in ENGINES[request.param].items():
        monkeypatch.setattr(importlib.import_module(f"sigmanet.backends.{module}"), attr, value)
    return backend


def _make_backend_fixture(name):
    @pytest.fixture(name=f"_backend_{name}")
    def fixture():
        reason = _usable(name)
        if reason is not None:
            if name == "cupy":
                pytest.skip(f"cupy backend not usable here: {reason}")
            pytest.fail(f"{name} backend must be usable on every machine: {reason}")
        return name

    return fixture


_backend_numpy = _make_backend_fixture("numpy")
_backend_numba = _make_backend_fixture("numba")
_backend_cupy = _make_backend_fixture("cupy")


@pytest.fixture(autouse=True)
def _no_auto_env(monkeypatch):
    monkeypatch.delenv("SIGMANET_BACKEND", raising=False)
