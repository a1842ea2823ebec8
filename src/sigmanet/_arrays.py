"""What every layer asks of an array and of the machine, in a leaf that imports nothing of sigmanet's.

* :func:`array_namespace`: the array library that owns an array (NumPy or CuPy),
  found from its type alone, so asking never imports CuPy or touches a GPU.
* :func:`from_user` / :class:`Caller`: arrays from any library that speaks
  DLPack (PyTorch, JAX, ...) brought in without a copy where the memory allows
  (a CPU tensor becomes a NumPy view, a CUDA tensor a CuPy view), and results
  handed back as the caller's kind.
* host memory (:func:`available_host_memory`, cgroup limits included) and the
  CPU's name, which the memory checks and the benchmarks read.

Why a leaf: the validation at the public boundary, the backends and the
Network all need these, and a module that imports none of them can never be
part of an import circle.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import numpy as np


def library_of(a: Any) -> str:
    """The top-level package of ``a``'s type: "numpy", "cupy", "torch", "jax", "jaxlib", "dask", "scipy", ..."""
    return type(a).__module__.split(".")[0]


def array_namespace(a: Any) -> Any:
    """The array library that owns ``a``: NumPy, or CuPy for a CuPy array (or CuPy sparse matrix).

    CuPy is imported only when one of its arrays is seen, so asking never
    touches a GPU on a machine that merely has CuPy installed.
    """
    if library_of(a) in ("cupy", "cupyx"):
        import cupy

        return cupy
    return np


def is_dask(a: Any) -> bool:
    """A Dask collection (checked by type, without importing Dask)."""
    return library_of(a) == "dask"


def is_sparse(a: Any) -> bool:
    """A SciPy sparse matrix or array, or a CuPy sparse matrix (checked without importing either)."""
    lib = library_of(a)
    if lib == "scipy":
        import scipy.sparse

        return bool(scipy.sparse.issparse(a))
    if lib == "cupyx":
        import cupyx.scipy.sparse

        return bool(cupyx.scipy.sparse.issparse(a))
    return False


# DLPack device types (dlpack.h): where a foreign array's memory lives.
_DL_CPU, _DL_CUDA, _DL_CUDA_HOST, _DL_CUDA_MANAGED = 1, 2, 3, 13
_NATIVE = ("numpy", "cupy", "cupyx", "dask", "scipy")


class Caller:
    """The kind of array a user passed in, so results go back as that kind.

    ``library`` is "numpy" for NumPy and anything array-like, "cupy", or a
    DLPack producer's package ("torch", "jax"); :meth:`give_back` converts a
    NumPy or CuPy result to it (without a copy where the library allows).
    """

    def __init__(self, library: str = "numpy"):
        self.library = library

    def give_back(self, out: Any) -> Any:
        if self.library == "torch":
            import torch

            return torch.from_dlpack(out)
        if self.library in ("jax", "jaxlib"):
            import jax.dlpack

            try:
                return jax.dlpack.from_dlpack(out)
            except Exception:  # a JAX without this device: one copy through the host
                import jax.numpy as jnp

                return jnp.asarray(np.asarray(out) if array_namespace(out) is np else out.get())
        return out

    def __repr__(self) -> str:
        return f"Caller({self.library!r})"


def from_user(name: str, a: Any) -> tuple[Any, Caller]:
    """``a`` as an array sigmanet handles (NumPy, CuPy, Dask, SciPy sparse), and who passed it.

    Objects with ``__dlpack__`` that are not already NumPy or CuPy arrays
    (PyTorch tensors, JAX arrays) are viewed without a copy: CPU memory as a
    NumPy array, CUDA memory as a CuPy array. The view is never written to.

    Raises
    ------
    TypeError
        If the producer refuses to share its memory (a PyTorch tensor that
        requires grad), naming the argument and what to do.
    """
    lib = library_of(a)
    if lib in _NATIVE or not (hasattr(a, "__dlpack__") and hasattr(a, "__dlpack_device__")):
        return a, Caller("cupy" if lib in ("cupy", "cupyx") else "numpy")
    device_type = int(a.__dlpack_device__()[0])
    try:
        if device_type in (_DL_CUDA, _DL_CUDA_MANAGED):
            import cupy

            return cupy.from_dlpack(a), Caller(lib)
        if device_type in (_DL_CPU, _DL_CUDA_HOST):
            return np.from_dlpack(a), Caller(lib)
    except (RuntimeError, BufferError, TypeError, ValueError) as e:
        hint = " (call .detach() on a tensor that requires grad)" if lib == "torch" else ""
        raise TypeError(f"{name} ({type(a).__name__}) cannot be shared through DLPack: {e}{hint}") from None
    raise TypeError(
        f"{name} is a {type(a).__name__} on DLPack device type {device_type}, which sigmanet cannot read; "
        "move it to the CPU or a CUDA GPU first"
    )


def copy_bytes(a: Any, dtype: Any) -> int:
    """Bytes a conversion to a C-contiguous array of ``dtype`` allocates: none when ``a`` already is one."""
    if isinstance(a, np.ndarray) and a.dtype == dtype and a.flags.c_contiguous:
        return 0
    return int(np.prod(a.shape)) * np.dtype(dtype).itemsize


# -- host memory --


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    if not text or text == "max":
        return None
    try:
        return int(text)
    except ValueError:
        return None


def _cgroup_stat(path: Path, key: str) -> int:
    try:
        for line in path.read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == key:
                return int(value)
    except (OSError, ValueError):
        pass
    return 0


def cgroup_available_memory(
    root: str | os.PathLike[str] = "/sys/fs/cgroup", proc: str = "/proc/self/cgroup"
) -> int | None:
    """Bytes this process's memory cgroup (v2 or v1) still allows, or None where no limit is set.

    The tightest limit along the cgroup's path to the root counts; usage
    leaves out reclaimable page cache (``inactive_file``), as the kernel's
    own "available" figure does. ``root`` and ``proc`` are parameters for the
    tests.
    """
    base = Path(root)
    try:
        lines = Path(proc).read_text().splitlines()
    except OSError:
        return None
    best: int | None = None
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, rel = parts
        rel = rel.lstrip("/")
        if controllers == "":  # cgroup v2: one unified hierarchy
            here = base / rel
            for folder in [here, *here.parents]:
                if not str(folder).startswith(str(base)):
                    break
                limit = _read_int(folder / "memory.max")
                if limit is not None:
                    used = (_read_int(folder / "memory.current") or 0) - _cgroup_stat(
                        folder / "memory.stat", "inactive_file"
                    )
                    free = max(0, limit - max(0, used))
                    best = free if best is None else min(best, free)
        elif "memory" in controllers.split(","):  # cgroup v1
            for folder in (base / "memory" / rel, base / "memory"):
                limit = _read_int(folder / "memory.limit_in_bytes")
                if limit is not None and limit < (1 << 60):  # v1 writes a huge number for "no limit"
                    used = (_read_int(folder / "memory.usage_in_bytes") or 0) - _cgroup_stat(
                        folder / "memory.stat", "total_inactive_file"
                    )
                    free = max(0, limit - max(0, used))
                    best = free if best is None else min(best, free)
                    break
    return best


def available_host_memory() -> int | None:
    """Bytes a fit may still allocate on the host: the smaller of MemAvailable and the cgroup's allowance.

    Falls back to the free physical pages where /proc/meminfo is missing,
    and to None where nothing is known.
    """
    host: int | None = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    host = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError, IndexError):
        pass
    if host is None:
        try:
            host = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            host = None
    group = cgroup_available_memory()
    if group is None:
        return host
    return group if host is None else min(host, group)


@functools.lru_cache(maxsize=1)
def cpu_name() -> str:
    """The CPU's model name and core count, e.g. 'AMD EPYC, 2 cores' (read once a process: a key of
    every numba fit's engine choice)."""
    import platform

    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{name}, {os.cpu_count()} cores"
