"""CUDA sources: every kernels/*.cu compiles with nvcc, and ships inside the wheel.

The CI machine has nvcc but no GPU: compiling every template instance the
CuPy backend uses (float and double) to PTX for sm_90 and an older
architecture makes a broken kernel fail CI, GPU or not.
"""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from sigmanet.backends.cupy._cuda import KERNEL_FILE, compile_options, fixed_shape_name, kernel_dir, name_expressions

ROOT = Path(__file__).resolve().parent.parent
SOURCES = sorted((ROOT / "kernels").glob("*.cu"))


def test_kernel_sources_exist_and_are_found():
    assert SOURCES, "kernels/ holds no .cu file"
    assert (kernel_dir() / KERNEL_FILE).is_file()


def _instances(every_gemm):
    """Every up-front instance, a shape-fixed train_small, and every gemm_tiled (or its extreme tiles)."""
    names = []
    for T in ("float", "double"):
        names += name_expressions(T, all_gemms=True) + [
            fixed_shape_name(T, [3, 4, 1]),
            fixed_shape_name(T, [5, 8, 9, 3, 2]),
        ]
    return [n for n in names if every_gemm or "gemm" not in n or ", 1, 1, " in n or ", 8, 8, " in n]


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not on PATH")
@pytest.mark.parametrize(
    "arch,every_gemm",
    [
        ("sm_90", False),
        pytest.param("sm_80", False, marks=pytest.mark.slow),
        pytest.param("sm_90", True, marks=pytest.mark.slow),
    ],
)
@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.name)
def test_every_kernel_instance_compiles_with_nvcc(tmp_path, source, arch, every_gemm):
    # Taking each instance's address forces nvcc to instantiate and compile it,
    # as NVRTC does at run time for CuPy's name_expressions.
    instances = _instances(every_gemm)
    unit = tmp_path / "unit.cu"
    unit.write_text(
        f'#include "{source}"\n'
        "void sigmanet_instantiate_all() {\n" + "".join(f"    (void)(void*)&{name};\n" for name in instances) + "}\n"
    )
    result = subprocess.run(
        [
            "nvcc",
            "-ptx",
            *compile_options(),
            f"-arch={arch}",
            "-Werror",
            "all-warnings",
            "-o",
            str(tmp_path / "out.ptx"),
            str(unit),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    ptx = (tmp_path / "out.ptx").read_text()
    for kernel in ("train_small", "forward_sigmoid", "output_delta", "hidden_delta", "gemm_tiled"):
        assert kernel in ptx


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
