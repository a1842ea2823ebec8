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
# gemm_tiled's epilogues (SN_EPI_* in the source), and which op(A) @ op(B) each goes with
EPILOGUES = {"store": 0, "sigmoid": 1, "dsigmoid": 2, "sgd": 3}
_GEMM_EPILOGUES = {(0, 0): ("store", "sigmoid"), (0, 1): ("store", "dsigmoid"), (1, 0): ("store", "sgd")}
TILE_FACTORS = (1, 2, 4, 8)  # each thread computes RM x RN outputs of a (16 RM) x (16 RN) tile


def gemm_name(T: str, ta: int, tb: int, rm: int, rn: int, epilogue: str) -> str:
    """The template instance of gemm_tiled for these options."""
    return f"gemm_tiled<{T}, {ta}, {tb}, {rm}, {rn}, {EPILOGUES[epilogue]}>"


def name_expressions(T: str, all_gemms: bool = False) -> list[str]:
    """The template instances compiled up front for C type ``T`` ("float" or "double").

    gemm_tiled's instances are compiled when first used (:meth:`Kernels.gemm`);
    ``all_gemms`` adds every one of them (the nvcc compile test).
    """
    names = [f"{n}<{T}>" for n in _NAMES]
    if all_gemms:
        names += [
            gemm_name(T, ta, tb, rm, rn, epi)
            for (ta, tb), epis in _GEMM_EPILOGUES.items()
            for epi in epis
            for rm in TILE_FACTORS
            for rn in TILE_FACTORS
        ]
    return names


MAX_FIXED_LAYERS = 4  # train_small's compile-time shapes (SnShape in the source) go up to 4 layers


def fixed_shape_name(T: str, sizes) -> str:
    """train_small's instance with the layer sizes n_0..n_L fixed at compile time."""
    if not 1 <= len(sizes) - 1 <= MAX_FIXED_LAYERS:
        raise ValueError(f"a fixed shape has 1 to {MAX_FIXED_LAYERS} layers, got sizes {list(sizes)}")
    return f"train_small<{T}, {len(sizes) - 1}, {', '.join(str(int(n)) for n in sizes)}>"


def tile_factor(n: int) -> int:
    """The largest of TILE_FACTORS whose 16-wide tile side ``n`` fills."""
    return max(f for f in TILE_FACTORS if f == 1 or n >= 16 * f)


def kernel_dir() -> Path:
    """Folder holding the .cu sources: inside the installed package, else the repository's kernels/."""
    packaged = resources.files("sigmanet") / "kernels"
    if packaged.is_dir() and (packaged / KERNEL_FILE).is_file():
        return Path(str(packaged))
    return Path(__file__).resolve().parents[4] / "kernels"


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
        self.T = T
        self.fn = {n: self.module.get_function(f"{n}<{T}>") for n in _NAMES}
        self.lazy: dict = {}  # instances compiled at first use: gemm_tiled's, train_small's per shape
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

    def gemm_tiles(self, M, N, max_splits=1):
        """(RM, RN) for an (M, N) output: big register tiles where they are full, smaller ones where
        the grid (times ``max_splits`` parts of K) would otherwise leave multiprocessors idle."""
        rm, rn = tile_factor(M), tile_factor(N)
        want = self.sm_count if max_splits == 1 else 2 * self.sm_count
        while (rm > 1 or rn > 1) and -(-M // (16 * rm)) * -(-N // (16 * rn)) * max_splits < want:
            if rm >= rn:
                rm //= 2
            else:
                rn //= 2
        return rm, rn

    def gemm_splits(self, M, N, K):
        """How many partial sums a weight gradient's (M, N, K) GEMM splits K into.

        K is the batch's rows: without a split a 3x4 output is one block walking
        a million rows, one 16-row step after another (measured on an H100: the
        graph iteration of 1M x 3-4-1 took 1.6x the eager one). Enough parts
        for several blocks per multiprocessor, each at least 64 rows, the
        partials at most 2^20 elements (sgd_update reads them all).
        """
        max_splits = max(1, K // 64)
        rm, rn = self.gemm_tiles(M, N, max_splits)
        tiles = -(-M // (16 * rm)) * -(-N // (16 * rn))
        return int(max(1, min(max_splits, -(-8 * self.sm_count // tiles), (1 << 20) // (M * N))))

    def instance(self, name):
        """A template instance compiled at its first use (NVRTC; CuPy also caches it on disk)."""
        if name not in self.lazy:
            import cupy

            module = cupy.RawModule(code=kernel_source(), options=compile_options(), name_expressions=[name])
            self.lazy[name] = module.get_function(name)
        return self.lazy[name]

    def gemm(self, A, B, C, ta=False, tb=False, epilogue="store", E=None, scale=1.0, tiles=None, compile_only=False):
        """C = op(A) @ op(B) through gemm_tiled, then the epilogue (see the SN_EPI_* in the source).

        Our own kernel, so a whole iteration can be captured in a CUDA graph
        (CuPy refuses cuBLAS during capture). With ``epilogue="store"`` C may be
        (splits, M, N): each part sums a slice of K, and :meth:`sgd_update`
        adds the parts. ``E``: the bias for "sigmoid" (or None), the
        activations for "dsigmoid"; ``scale``: the step for "sgd"; ``tiles``:
        (RM, RN) instead of :meth:`gemm_tiles`' choice (the tests try them all);
        ``compile_only``: compile the instance and launch nothing (before a
        graph capture, which must not load modules).
        """
        self._check(A, B, C)
        M, N = C.shape[-2:]
        splits = 1 if C.ndim == 2 else C.shape[0]
        K = A.shape[0] if ta else A.shape[1]
        assert (A.shape[1] if ta else A.shape[0]) == M and (B.shape[0] if tb else B.shape[1]) == N
        assert (B.shape[1] if tb else B.shape[0]) == K and (splits == 1 or epilogue == "store")
        if max(M, N, K) >= 2**31 - 256:
            raise ValueError(f"gemm_tiled indexes with 32-bit ints: ({M}, {N}, {K}) is too large")
        if E is not None:
            self._check(E)
        rm, rn = tiles or self.gemm_tiles(M, N, max(1, K // 64) if splits > 1 else 1)
        kc = -(-K // (16 * splits)) * 16
        fn = self.instance(gemm_name(self.T, int(ta), int(tb), rm, rn, epilogue))
        if compile_only:
            return
        fn(
            ((M + 16 * rm - 1) // (16 * rm), (N + 16 * rn - 1) // (16 * rn), splits),
            (16, 16),
            (
                np.int32(M),
                np.int32(N),
                np.int32(K),
                np.int32(kc),
                A,
                B,
                C,
                E if E is not None else np.uint64(0),
                self.scalar(scale),
            ),
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
        fixed_shape=None,
    ):
        """A report interval in one launch; arguments in the fused kernels' common order (as numba's).

        ``fixed_shape``: the layer sizes (on the host, equal to ``sizes``) to
        run the instance compiled for (:func:`fixed_shape_name`), whose loops
        unroll; None: the instance that reads them at run time.
        """
        fn = self.instance(fixed_shape_name(self.T, fixed_shape)) if fixed_shape else self.fn["train_small"]
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
