"""CUDA kernels from ``kernels/*.cu``: found, compiled through CuPy and wrapped.

The sources ship inside the wheel as ``sigmanet/kernels/*.cu`` (and live at
``kernels/`` in a source checkout). Each dtype's module is compiled once per
process through ``cupy.RawModule`` (NVRTC, which CuPy also caches on disk);
``name_expressions`` instantiate the float and double templates. Nothing is
compiled until a CuPy trainer asks for it. CuPy itself is imported inside
:class:`Kernels`, so the names and sources can be listed on a machine without
it (the nvcc compile test does).
"""

from __future__ import annotations

import functools
from importlib import resources
from pathlib import Path

import numpy as np

KERNEL_FILE = "sigmanet.cu"
# Most weight layers the single-launch kernel holds (its per-layer offset
# tables live in static shared memory); passed to the compiler as SN_MAX_LAYERS.
MAX_LAYERS = 16


def compile_options() -> tuple[str, ...]:
    """The compiler flags every build of the kernels gets (NVRTC through CuPy, and nvcc in the tests)."""
    return ("--std=c++17", f"-DSN_MAX_LAYERS={MAX_LAYERS}")


_NAMES = ("forward_sigmoid", "output_delta", "hidden_delta", "sgd_update", "train_small")
_GEMMS = {(0, 0): "gemm_tiled<{T}, 0, 0>", (1, 0): "gemm_tiled<{T}, 1, 0>", (0, 1): "gemm_tiled<{T}, 0, 1>"}


def name_expressions(T: str) -> list[str]:
    """The template instances compiled for C type ``T`` ("float" or "double")."""
    return [f"{n}<{T}>" for n in _NAMES] + [g.format(T=T) for g in _GEMMS.values()]


def kernel_dir() -> Path:
    """Folder holding the .cu sources: inside the installed package, else the repository's kernels/."""
    packaged = resources.files("sigmanet") / "kernels"
    if packaged.is_dir() and (packaged / KERNEL_FILE).is_file():
        return Path(str(packaged))
    return Path(__file__).resolve().parents[3] / "kernels"


def kernel_source() -> str:
    path = kernel_dir() / KERNEL_FILE
    if not path.is_file():
        raise FileNotFoundError(f"CUDA kernel source {KERNEL_FILE} not found in {path.parent}; reinstall sigmanet")
    return path.read_text()


class Kernels:
    """One dtype's compiled kernels, each wrapped to check shapes and dtypes before launching."""

    block_size = 256  # threads per block of the elementwise kernels

    def __init__(self, dtype):
        import cupy

        self.dtype = np.dtype(dtype)
        T = "float" if self.dtype == np.float32 else "double"
        self.module = cupy.RawModule(
            code=kernel_source(), options=compile_options(), name_expressions=name_expressions(T)
        )
        self.fn = {n: self.module.get_function(f"{n}<{T}>") for n in _NAMES}
        self.gemm_fn = {k: self.module.get_function(g.format(T=T)) for k, g in _GEMMS.items()}
        self.scalar = self.dtype.type
        self.sm_count = cupy.cuda.Device().attributes["MultiProcessorCount"]

    def _grid(self, count):
        return (int(min(max(1, -(-count // self.block_size)), 32 * self.sm_count)),)

    def _check(self, *arrays):
        for a in arrays:
            if a.dtype != self.dtype or not a.flags.c_contiguous:
                raise TypeError(f"kernel needs C-contiguous {self.dtype} arrays, got {a.dtype} {a.shape}")

    def forward_sigmoid(self, z, b):
        self._check(z)
        m, n = z.shape
        use_bias = b is not None
        self.fn["forward_sigmoid"](
            self._grid(z.size),
            (self.block_size,),
            (z, b if use_bias else z, np.int64(m), np.int32(n), np.int32(use_bias)),
        )

    def output_delta(self, y, a, d, bce, err=None):
        self._check(y, a, d)
        assert y.shape == a.shape == d.shape
        self.fn["output_delta"](
            self._grid(a.size),
            (self.block_size,),
            (y, a, d, np.int64(a.size), np.int32(bce), err if err is not None else np.uint64(0)),
        )

    def hidden_delta(self, d, a):
        self._check(d, a)
        assert d.shape == a.shape
        self.fn["hidden_delta"](self._grid(a.size), (self.block_size,), (d, a, np.int64(a.size)))

    def sgd_update(self, w, g, scale):
        """w += scale * g; g is w's shape, or (splits, *w.shape) partials from a split :meth:`gemm`."""
        self._check(w, g)
        splits = 1 if g.shape == w.shape else g.shape[0]
        assert g.shape[g.ndim - w.ndim :] == w.shape and g.size == splits * w.size
        self.fn["sgd_update"](
            self._grid(w.size), (self.block_size,), (w, g, self.scalar(scale), np.int64(w.size), np.int32(splits))
        )

    def gemm_splits(self, M, N, K):
        """How many partial sums a (M, N, K) GEMM's K is split into: enough blocks to fill the device.

        A weight gradient's K is the batch's rows: without a split, a 3x4 output
        is one block walking every row. Each part keeps at least 256 rows.
        """
        tiles = -(-M // 16) * -(-N // 16)
        return int(max(1, min(K // 256, -(-4 * self.sm_count // tiles))))

    def gemm(self, A, B, C, ta=False, tb=False):
        """C = op(A) @ op(B) with our tiled kernel (capturable in a CUDA graph, unlike cuBLAS through CuPy).

        C is (M, N), or (splits, M, N): then each part sums a slice of K, and
        :meth:`sgd_update` adds the parts.
        """
        self._check(A, B, C)
        M, N = C.shape[-2:]
        splits = 1 if C.ndim == 2 else C.shape[0]
        K = A.shape[0] if ta else A.shape[1]
        if max(M, N, K) >= 2**31 - 16:
            raise ValueError(f"gemm_tiled indexes with 32-bit ints: ({M}, {N}, {K}) is too large")
        kc = -(-K // (16 * splits)) * 16
        self.gemm_fn[(int(ta), int(tb))](
            ((M + 15) // 16, (N + 15) // 16, splits),
            (16, 16),
            (np.int32(M), np.int32(N), np.int32(K), np.int32(kc), A, B, C),
        )

    def static_shared_bytes(self) -> int:
        """Static shared memory of ``train_small`` (its offset tables), which counts beside the dynamic buffer."""
        return int(self.fn["train_small"].shared_size_bytes)

    def train_small(
        self,
        *,
        X,
        Y,
        W,
        B,
        sizes,
        start,
        iterations,
        batch_size,
        learning_rate,
        bce,
        mean,
        use_bias,
        err,
        block_size,
        shared_bytes,
    ):
        """A report interval in one launch; arguments in the fused kernels' common order (as numba's)."""
        fn = self.fn["train_small"]
        if shared_bytes + fn.shared_size_bytes > 48 * 1024:
            fn.max_dynamic_shared_size_bytes = shared_bytes
        fn(
            (1,),
            (block_size,),
            (
                X,
                Y,
                W,
                B,
                sizes,
                np.int32(len(sizes) - 1),
                np.int32(X.shape[0]),
                np.int64(start),
                np.int32(iterations),
                np.int32(batch_size),
                np.float64(learning_rate),
                np.int32(bce),
                np.int32(mean),
                np.int32(use_bias),
                err,
            ),
            shared_mem=shared_bytes,
        )


@functools.cache
def kernels(dtype_name: str) -> Kernels:
    """The compiled kernels for a dtype: built once per process."""
    return Kernels(dtype_name)
