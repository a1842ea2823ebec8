"""A pytest plugin that runs a whole test session on the emulated CuPy (the stand-in of fake_cupy.py).

    PYTHONPATH=tests/cuda_emulation python -m pytest -p sn_emulated_cupy tests/test_cupy.py -k "not lead3"

Every test that asks for the CuPy backend then runs its kernels on this CPU,
so the device tests themselves (tests/test_cupy.py, the cupy engines of the
agreement tests) are exercised before a device session spends its minutes on
them. Tables of a million rows take far too long here: select the small tests.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import fake_cupy

_context = None


def pytest_configure(config):
    global _context
    folder = Path(os.environ.get("SN_EMULATOR_CACHE", Path(tempfile.gettempdir()) / "sigmanet-cuda-emulator"))
    _context = fake_cupy.installed(devices=int(os.environ.get("SN_EMULATOR_DEVICES", "1")),
                                   library=fake_cupy.session_library(folder), build_dir=folder)  # fmt: skip
    _context.__enter__()


def pytest_unconfigure(config):
    if _context is not None:
        _context.__exit__(None, None, None)
