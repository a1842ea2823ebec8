import os
import zlib

import numpy as np
import pytest
from helpers import ENGINES, usable_backend

from sigmanet.backends import registered_backends

ALL_BACKENDS = registered_backends()


@pytest.fixture(params=ALL_BACKENDS)
def backend(request):
    """Every backend; skips (with the reason) only one this machine cannot run."""
    return usable_backend(request.param)


# Fresh random inputs every run; the run's seed is printed in the header, and
# SIGMANET_TEST_SEED=<seed> replays a failing run.
RUN_SEED = int(os.environ.get("SIGMANET_TEST_SEED") or np.random.SeedSequence().entropy % (2**32))


def pytest_report_header(config):
    return f"sigmanet test seed: SIGMANET_TEST_SEED={RUN_SEED}"


@pytest.fixture
def rng(request):
    return np.random.default_rng([RUN_SEED, zlib.crc32(request.node.nodeid.encode())])


@pytest.fixture(params=ENGINES)
def engine(request):
    """A backend with one of its engines pinned ("numba:fused"); skips only a backend this machine cannot run."""
    usable_backend(request.param.split(":")[0])
    return request.param


@pytest.fixture
def _backend_numba():
    return usable_backend("numba")


@pytest.fixture
def _backend_cupy():
    return usable_backend("cupy")


@pytest.fixture(autouse=True)
def _no_auto_env(monkeypatch):
    monkeypatch.delenv("SIGMANET_BACKEND", raising=False)
    monkeypatch.delenv("SIGMANET_NUMBA_STRATEGY", raising=False)
