"""CUDA sources: every kernels/*.cu compiles with nvcc, ships inside the wheel; the device script dry-runs.

The CI machine has nvcc but no GPU: compiling every template instance the
CuPy backend uses (float and double) to PTX for sm_90 and sm_80 makes a broken
kernel fail CI, GPU or not (tests/test_cuda_emulation.py runs their math on the
CPU). benchmarks/gpu_check.sh, the one call a device session makes, must stop
at once where CuPy is absent and stay within its time budget.
"""

import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from sigmanet.backends.cupy._cuda import (
    KERNEL_FILE,
    WARP_TILES,
    compile_options,
    fixed_shape_name,
    kernel_dir,
    name_expressions,
    warp_name,
)

ROOT = Path(__file__).resolve().parent.parent
SOURCES = sorted((ROOT / "kernels").glob("*.cu"))


def test_kernel_sources_exist_and_are_found():
    assert SOURCES, "kernels/ holds no .cu file"
    assert (kernel_dir() / KERNEL_FILE).is_file()


def _instances(every_gemm):
    """Every up-front instance, shape-fixed train_small and train_warp, every gemm_tiled and gemm_warp (or
    their extreme tiles)."""
    names = []
    for T in ("float", "double"):
        names += name_expressions(T, all_gemms=True) + [
            fixed_shape_name(T, [3, 4, 1]),
            fixed_shape_name(T, [5, 8, 9, 3, 2]),
            warp_name(T, [3, 4, 1]),
            warp_name(T, [8, 32, 8]),
        ]
    extremes = [", 1, 1, ", ", 8, 8, "] + [", ".join(map(str, WARP_TILES[t])) for t in ("128x128/4", "32x16/1")]
    return [n for n in names if every_gemm or "gemm" not in n or any(e in n for e in extremes)]


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not on PATH")
@pytest.mark.parametrize(
    "arch,every_gemm",
    [  # every instance for the Hopper cards the device tool lends; the extremes for Ampere (sm_90's set holds them)
        pytest.param("sm_80", False, marks=pytest.mark.slow),
        pytest.param("sm_90", True, marks=pytest.mark.slow),
    ],
)
@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.name)
def test_every_kernel_instance_compiles_with_nvcc(tmp_path, source, arch, every_gemm):
    # Taking each instance's address forces nvcc to instantiate and compile it,
    # as NVRTC does at run time for CuPy's name_expressions. The instances are
    # split over one nvcc process a core (nvcc compiles one unit on one core).
    instances = _instances(every_gemm)
    parts = max(1, min(os.cpu_count() or 1, 4))
    runs = []
    for k in range(parts):
        unit = tmp_path / f"unit{k}.cu"
        unit.write_text(
            f'#include "{source}"\n'
            "void sigmanet_instantiate_all() {\n"
            + "".join(f"    (void)(void*)&{name};\n" for name in instances[k::parts])
            + "}\n"
        )
        command = ["nvcc", "-ptx", *compile_options(), f"-arch={arch}", "-Werror", "all-warnings",
                   "-o", str(unit.with_suffix(".ptx")), str(unit)]  # fmt: skip
        runs.append(subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    for run in runs:
        _, err = run.communicate()
        assert run.returncode == 0, err
    ptx = "".join((tmp_path / f"unit{k}.ptx").read_text() for k in range(parts))
    for kernel in ("train_small", "train_warp", "forward_sigmoid", "output_delta", "hidden_delta", "gemm_tiled",
                   "gemm_warp", "output_step", "optimizer_step", "sgd_update"):  # fmt: skip
        assert kernel in ptx
    assert ptx.count(".entry ") == len(instances)


@pytest.mark.slow
def test_the_wheel_ships_the_kernels(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    wheel = next(tmp_path.glob("sigmanet-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    for source in SOURCES:
        assert f"sigmanet/kernels/{source.name}" in names
    assert "sigmanet/py.typed" in names


GPU_CHECK = ROOT / "benchmarks" / "gpu_check.sh"


def test_the_device_script_stops_at_once_where_cupy_is_absent(tmp_path):
    """Dry run: a `cupy` that fails to import (as on this machine) ends the script before any step."""
    shadow = tmp_path / "shadow" / "cupy"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('no CuPy in this test')\n")
    out = tmp_path / "out"
    env = dict(os.environ, OUT=str(out), PYTHON=sys.executable, PYTHONPATH=str(shadow.parent))
    result = subprocess.run(["bash", str(GPU_CHECK)], capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 3, result.stdout + result.stderr
    assert "CuPy is not importable" in result.stderr and "runs on the lent GPU machine" in result.stderr
    assert "==" not in result.stdout  # no step began
    assert out.is_dir() and not any(out.iterdir())


def test_the_device_script_fits_its_six_minutes():
    """Every step is bounded (`bounded N`, a timeout); the bounds add up to at most six minutes (360 s)."""
    text = GPU_CHECK.read_text()
    bounds = [int(n) for n in re.findall(r"^\s*bounded (\d+) ", text, re.M)]
    assert len(bounds) >= 8 and sum(bounds) <= 360, bounds
    lines = text.splitlines()
    steps = [  # a command of its own (not the continuation of one) running Python or pytest
        line
        for before, line in zip([""] + lines, lines)
        if re.match(r'^\s*"\$\{?(PY|PYTEST)', line) and not before.endswith("\\")
    ]
    assert not steps, f"steps without a timeout: {steps}"
