"""Build kernels/*.cu with g++ against ``sn_cuda_shim.h`` and launch its kernels from Python (ctypes).

:func:`build` compiles the CUDA source as C++20 into a shared library with one
``extern "C"`` launcher per kernel instance (a name expression as CuPy's
``RawModule`` takes it, e.g. ``"gemm_tiled<float, 0, 0, 2, 2, 1>"``);
:meth:`Library.launch` runs one over a grid, each block as ``blockDim``
threads, with CuPy's argument convention: each argument is passed at the width
of its NumPy scalar type (a Python int as 64 bits, a float as a double, an
array as its data pointer), and a launch whose count or widths differ from the
kernel's parameters fails with a message instead of reading garbage.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SHIM = HERE / "sn_cuda_shim.h"
CXX = os.environ.get("CXX", "g++")


def compiler_missing() -> str | None:
    """Why the emulator cannot be built here, or None."""
    if shutil.which(CXX) is None:
        return f"no C++ compiler ({CXX}) on PATH: the CUDA emulator compiles the kernels with it"
    return None


class EmulationError(RuntimeError):
    """A launch the emulator refused or a kernel that failed a check (the message says which)."""


def _defines(options) -> list[str]:
    """The -D and -I flags of CuPy's options (the rest are NVRTC's own)."""
    out = []
    for opt in options:
        if opt.startswith(("-D", "-I", "--define-macro=")):
            out.append(opt.replace("--define-macro=", "-D"))
    return out


def _unit(source: Path, names: list[str], first: int) -> str:
    lines = [f'#include "{SHIM}"', f'#include "{source}"', 'extern "C" {']
    for i, name in enumerate(names, first):
        lines.append(
            f"SN_EMU_EXPORT int sn_emu_launch_{i}(const unsigned* g, const unsigned* b, unsigned long long s, "
            f"void* const* a, int n, const int* w) {{ return sn_emu::launch(&{name}, g, b, s, a, n, w); }}"
        )
    lines.append("}")
    return "\n".join(lines) + "\n"


def build(
    source: str | Path, names, options=(), folder: str | Path | None = None, jobs: int = 2, threads: bool = False
) -> Library:
    """Compile ``source`` (a .cu file, or its text) with the instances ``names`` into a library in ``folder``.

    The instances are split over ``jobs`` translation units compiled in parallel. ``threads``: each
    block's threads as OS threads (true concurrency) instead of fibers on one thread (the shim's
    header says when each is worth it). A library is reused while its sources, names and flags match.
    """
    names = list(dict.fromkeys(names))
    folder = Path(folder) if folder is not None else Path(os.environ.get("TMPDIR", "/tmp"))
    folder.mkdir(parents=True, exist_ok=True)
    if not isinstance(source, Path):
        text = str(source)
        source = folder / f"source-{hashlib.sha1(text.encode()).hexdigest()[:12]}.cu"
        if not source.exists():
            source.write_text(text)
    # Every symbol but the launchers stays inside the library (-fvisibility=hidden, no GNU-unique
    # statics), so that two libraries in one process (fibers and threads) never share a variable.
    # -O1: the emulated kernels run about 5x faster than at -O0 (the seed's train_warp: 264 -> 47 us an
    # iteration) for twice the compile time; -ffp-contract=off keeps every product rounded as written.
    flags = ["-std=c++20", "-O1", "-fPIC", "-pthread", "-ffp-contract=off", "-fvisibility=hidden",
             "-fvisibility-inlines-hidden", "-fno-gnu-unique", "-Wall", "-Wno-unknown-pragmas",
             "-Wno-unused-variable", "-Wno-unused-but-set-variable", f"-DSN_EMU_THREADS={int(threads)}",
             *_defines(options)]  # fmt: skip
    key = hashlib.sha1(
        (source.read_text() + SHIM.read_text() + "\n".join(names) + " ".join(flags)).encode()
    ).hexdigest()[:16]
    lib = folder / f"sn_emu_{key}.so"
    if not lib.exists():
        jobs = max(1, min(jobs, len(names)))
        objects, commands = [], []
        for j in range(jobs):
            part = names[j * len(names) // jobs : (j + 1) * len(names) // jobs]
            unit = folder / f"unit_{key}_{j}.cpp"
            unit.write_text(_unit(source, part, j * len(names) // jobs))
            obj = unit.with_suffix(".o")
            objects.append(obj)
            commands.append([CXX, *flags, "-c", str(unit), "-o", str(obj)])
        err_unit = folder / f"unit_{key}_err.cpp"
        err_unit.write_text(
            f'#include "{SHIM}"\n'
            'extern "C" SN_EMU_EXPORT const char* sn_emu_error() { return sn_emu::error_text.c_str(); }\n'
        )
        objects.append(err_unit.with_suffix(".o"))
        commands.append([CXX, *flags, "-c", str(err_unit), "-o", str(objects[-1])])
        with ThreadPoolExecutor(len(commands)) as ex:
            results = list(ex.map(lambda c: subprocess.run(c, capture_output=True, text=True), commands))
        for c, r in zip(commands, results):
            if r.returncode != 0:
                raise EmulationError(f"g++ failed ({' '.join(c)}):\n{r.stderr[-6000:]}")
        tmp = lib.with_suffix(f".{os.getpid()}.tmp")
        r = subprocess.run([CXX, "-shared", "-pthread", "-o", str(tmp), *map(str, objects)], capture_output=True,
                           text=True)  # fmt: skip
        if r.returncode != 0:
            raise EmulationError(f"linking the emulator failed:\n{r.stderr[-4000:]}")
        os.replace(tmp, lib)
    return Library(lib, names)


def _c_type_of(value):
    """The bytes CuPy would pass for one kernel argument, as (ctypes object, width)."""
    if hasattr(value, "__sn_emu_pointer__"):
        return ctypes.c_uint64(value.__sn_emu_pointer__()), 8
    if isinstance(value, np.ndarray):
        raise EmulationError("a NumPy array cannot be a kernel argument (CuPy needs device arrays)")
    if isinstance(value, np.generic):
        buf = ctypes.create_string_buffer(value.tobytes(), value.itemsize)
        return buf, value.itemsize
    if isinstance(value, bool):
        return ctypes.c_bool(value), 1
    if isinstance(value, int):
        return ctypes.c_int64(value), 8
    if isinstance(value, float):
        return ctypes.c_double(value), 8
    raise EmulationError(f"unsupported kernel argument {type(value).__name__} {value!r}")


def _dims(d) -> tuple[int, int, int]:
    d = (d,) if isinstance(d, (int, np.integer)) else tuple(d)
    if not 1 <= len(d) <= 3:
        raise EmulationError(f"grid and block take 1 to 3 dimensions, got {d}")
    return tuple(int(x) for x in d) + (1,) * (3 - len(d))


class Library:
    """The compiled kernels: ``launch(name, grid, block, args, shared_mem)``."""

    def __init__(self, path: Path, names: list[str]):
        self.path = path
        self.cdll = ctypes.CDLL(str(path))
        self.cdll.sn_emu_error.restype = ctypes.c_char_p
        self.index = {_normal(n): i for i, n in enumerate(names)}
        self.names = names

    def has(self, name: str) -> bool:
        return _normal(name) in self.index

    def launch(self, name, grid, block, args, shared_mem=0):
        if not self.has(name):
            raise EmulationError(f"{name} is not compiled into this emulator library")
        fn = getattr(self.cdll, f"sn_emu_launch_{self.index[_normal(name)]}")
        values = [_c_type_of(a) for a in args]
        addresses = [ctypes.cast(ctypes.pointer(v), ctypes.c_void_p) for v, _ in values]
        ptrs = (ctypes.c_void_p * max(1, len(values)))(*addresses)
        widths = (ctypes.c_int * max(1, len(values)))(*[w for _, w in values])
        g = (ctypes.c_uint * 3)(*_dims(grid))
        b = (ctypes.c_uint * 3)(*_dims(block))
        rc = fn(g, b, ctypes.c_ulonglong(int(shared_mem)), ptrs, ctypes.c_int(len(values)), widths)
        if rc != 0:
            raise EmulationError(f"{name}: {self.cdll.sn_emu_error().decode()}")


def _normal(name: str) -> str:
    return re.sub(r"\s+", "", name)
