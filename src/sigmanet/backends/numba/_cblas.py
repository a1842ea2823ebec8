"""NumPy's own OpenBLAS ``cblas_?gemm``, found at run time, for the compiled engine.

Why NumPy's: numba's ``np.dot`` goes to SciPy's OpenBLAS, a second library
with its own thread pool beside NumPy's (two pools at 2 threads each made the
GEMMs 70x slower here), and it cannot fuse the update into the product. NumPy's
bundled OpenBLAS exports ``scipy_cblas_sgemm64_`` / ``scipy_cblas_dgemm64_``
(64-bit integers); the compiled loop calls it through its address
(``step._gemm_call``), so it stays cacheable on disk. Where NumPy's BLAS does
not export the symbols (a NumPy built against another BLAS), :func:`available`
says why and the backend keeps its loop engines.
"""

from __future__ import annotations

import ctypes
import functools

import numpy as np


@functools.cache
def _library() -> ctypes.CDLL | None:
    from threadpoolctl import threadpool_info

    paths = [
        lib["filepath"]
        for lib in threadpool_info()
        if lib.get("internal_api") == "openblas" and "numpy.libs" in lib["filepath"]
    ]
    return ctypes.CDLL(paths[0]) if paths else None


@functools.cache
def gemm_address(dtype_name: str) -> int:
    """The address of NumPy's OpenBLAS ``cblas_{s,d}gemm`` (64-bit integer interface), or 0 where it has none."""
    lib = _library()
    name = "scipy_cblas_sgemm64_" if dtype_name == "float32" else "scipy_cblas_dgemm64_"
    if lib is None or not hasattr(lib, name):
        return 0
    return int(ctypes.cast(getattr(lib, name), ctypes.c_void_p).value or 0)


def available(dtype) -> str | None:
    """None when the compiled engine can run for ``dtype``, else why not."""
    if gemm_address(np.dtype(dtype).name) == 0:
        return "NumPy's BLAS does not export scipy_cblas_?gemm64_ (NumPy built against another BLAS)"
    return None
