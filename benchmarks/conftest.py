"""pytest-benchmark suite: backends x sizes x dtypes, grouped by size.

    python -m pytest benchmarks --benchmark-autosave       # saves the run under .benchmarks/
    python -m pytest benchmarks --benchmark-compare        # against the last saved run
    SIGMANET_BENCH_SMOKE=1 python -m pytest benchmarks --benchmark-disable   # CI: runs each case once

Sizes: SIGMANET_BENCH_SIZES=4,1024,65536 overrides the default list.
"""

import os

import pytest

import sigmanet as sn
from sigmanet import bench
from sigmanet.backends import registered_backends

SMOKE = os.environ.get("SIGMANET_BENCH_SMOKE", "") not in ("", "0")
SIZES = [int(s) for s in os.environ.get("SIGMANET_BENCH_SIZES", "").split(",") if s] or (
    [4, 256] if SMOKE else [4, 1024, 16384, 65536, 262144]
)


def pytest_generate_tests(metafunc):
    if "rows" in metafunc.fixturenames:
        metafunc.parametrize("rows", SIZES)
    if "backend_name" in metafunc.fixturenames:
        metafunc.parametrize("backend_name", registered_backends())


@pytest.fixture
def usable(backend_name):
    reason = sn.backend_status()[backend_name]
    if reason is not None:
        if backend_name in ("numpy", "numba"):
            pytest.fail(f"{backend_name} must be usable: {reason}")
        pytest.skip(f"{backend_name} backend not usable here: {reason}")
    return backend_name


@pytest.fixture
def rounds():
    """(rounds, warm-up rounds): one bare round in smoke mode."""
    return (1, 0) if SMOKE else (5, 1)


@pytest.fixture
def case():
    """Data, weights and layers for a size, built outside the timed function."""

    def make(rows, dtype):
        import numpy as np

        layers = bench.layers_for(rows)
        X, y = bench.dataset(rows, layers, dtype)
        return layers, X, y, bench.init_weights(layers, np.dtype(dtype), 0, "glorot")

    return make
