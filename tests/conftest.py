import os
import sys
import zlib

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))

import sigmanet as sn  # noqa: E402

CPU_BACKENDS = ["numpy", "numba"]
ALL_BACKENDS = ["numpy", "numba", "cupy"]


def _usable(name):
    return sn.backend_status()[name]


@pytest.fixture(params=ALL_BACKENDS)
def backend(request):
    """Every backend; skips (with the reason) only one this machine cannot run."""
    reason = _usable(request.param)
    if reason is not None:
        if request.param == "cupy":
            pytest.skip(f"cupy backend not usable here: {reason}")
        pytest.fail(f"{request.param} backend must be usable on every machine: {reason}")
    return request.param


# Fresh random inputs every run; the run's seed is printed in the header, and
# SIGMANET_TEST_SEED=<seed> replays a failing run.
RUN_SEED = int(os.environ.get("SIGMANET_TEST_SEED") or np.random.SeedSequence().entropy % (2**32))


def pytest_report_header(config):
    return f"sigmanet test seed: SIGMANET_TEST_SEED={RUN_SEED}"


@pytest.fixture
def rng(request):
    return np.random.default_rng([RUN_SEED, zlib.crc32(request.node.nodeid.encode())])


@pytest.fixture(autouse=True)
def _no_auto_env(monkeypatch):
    monkeypatch.delenv("SIGMANET_BACKEND", raising=False)
