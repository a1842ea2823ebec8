"""`import sigmanet` stays light; the registry resolves names and explains refusals."""

import json
import os
import subprocess
import sys

import pytest

import sigmanet as sn
from sigmanet.backends import get_backend, resolve


def test_import_sigmanet_imports_neither_numba_nor_cupy():
    code = (
        "import sys, json, sigmanet; "
        "print(json.dumps([m for m in ('numba', 'cupy', 'llvmlite', 'threadpoolctl') if m in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


def test_numpy_is_always_available():
    assert "numpy" in sn.available_backends()
    assert sn.backend_status()["numpy"] is None


def test_auto_picks_the_first_usable_of_cupy_numba_numpy():
    usable = sn.available_backends()
    expected = next(n for n in ("cupy", "numba", "numpy") if n in usable)
    assert resolve("auto") == expected
    assert sn.Network([3, 1]).backend == expected


def test_env_var_sets_what_auto_means(monkeypatch):
    monkeypatch.setenv("SIGMANET_BACKEND", "numpy")
    assert sn.Network([3, 1], backend="auto").backend == "numpy"
    monkeypatch.setenv("SIGMANET_BACKEND", "bogus")
    with pytest.raises(sn.BackendUnavailableError, match=r"SIGMANET_BACKEND"):
        sn.Network([3, 1])


def test_unknown_backend_names_the_available_ones():
    with pytest.raises(sn.BackendUnavailableError) as e:
        sn.Network([3, 1], backend="tensorflow")
    assert "tensorflow" in str(e.value) and "numpy" in str(e.value)
    assert isinstance(e.value, ValueError)


def test_unusable_backend_says_why(monkeypatch):
    from sigmanet import backends

    monkeypatch.setattr(backends, "_probe", lambda name: "no CUDA device is usable" if name == "cupy" else None)
    with pytest.raises(sn.BackendUnavailableError, match="no CUDA device is usable"):
        get_backend("cupy")


def test_backend_name_must_be_a_string():
    with pytest.raises(TypeError, match="backend"):
        sn.Network([3, 1], backend=3)


def test_unusable_cupy_is_absent_from_available_backends_and_never_auto():
    reason = sn.backend_status()["cupy"]
    if reason is None:
        pytest.skip("cupy is usable here")
    assert "cupy" not in sn.available_backends()
    assert resolve("auto") != "cupy"
    with pytest.raises(sn.BackendUnavailableError, match="cupy"):
        sn.Network([3, 1], backend="cupy")


def test_import_does_not_initialise_cuda():
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
    code = "import sigmanet, sys; print('cupy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == "False"
