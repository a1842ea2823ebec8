"""CUDA kernels from ``kernels/*.cu``: found, compiled through CuPy and wrapped.

The sources ship inside the wheel as ``sigmanet/kernels/*.cu`` (and live at
``kernels/`` in a source checkout). Each dtype's module is compiled once per
process through ``cupy.RawModule`` (NVRTC, which CuPy also caches on disk);
``name_expressions`` instantiate the float and double templates. Nothing is
compiled until a CuPy trainer asks for it. CuPy itself is imported inside
:class:`Kernels`, so the names and sources can be listed on a machine without
it (the nvcc compile test does), and the wrappers run unchanged on the CPU
emulator of ``tests/cuda_emulation`` (a stand-in ``cupy`` module).

The numbers the kernels read besides their arrays follow one layout, written
here and in the source: the settings block (:func:`settings`, ``SN_CFG_*``),
the step counters (``SN_COUNT_*``) and the accumulators (``SN_ACC_*``); a test
checks that the two agree.
"""

from __future__ import annotations

import functools
from importlib import resources
from pathlib import Path

import numpy as np

from ..._plan import OPTIMIZER_CODE, TrainConfig, n_batches

KERNEL_FILE = "sigmanet.cu"
# Most weight layers the single-launch kernel holds (its per-layer offset
# tables live in static shared memory); passed to the compiler as SN_MAX_LAYERS.
MAX_LAYERS = 16

# The settings block's slots (SN_CFG_* in the source), doubles in device memory.
CFG_INDEX = {
    "LR": 0,
    "INVSCALING": 1,
    "POWER_T": 2,
    "ROWS": 3,
    "BATCHES": 4,
    "OPTIMIZER": 5,
    "MOMENTUM": 6,
    "BETA1": 7,
    "BETA2": 8,
    "EPSILON": 9,
    "ALPHA": 10,
    "R": 11,
}
CFG_SIZE = 12
COUNT_INDEX = {"STEP": 0, "ITERATION": 1}  # the step counters (long long)
ACC_INDEX = {"ERROR": 0, "WEIGHT": 1, "LOSS": 2, "SQUARES": 3}  # the graph's accumulators (double)
ACC_SIZE = 4


def compile_options() -> tuple[str, ...]:
    """The compiler flags every build of the kernels gets (NVRTC through CuPy, and nvcc in the tests)."""
    return ("--std=c++17", f"-DSN_MAX_LAYERS={MAX_LAYERS}")


def settings(config: TrainConfig, n_rows: int, r: float = 1.0) -> np.ndarray:
    """The settings block the kernels read (SN_CFG_* in the source): the rate, its schedule, the
    optimizer's constants, the L2 penalty and a full batch's reduction factor ``r``."""
    out = np.zeros(CFG_SIZE, np.float64)
    values = {
        "LR": config.learning_rate * config.lr_scale,
        "INVSCALING": float(config.schedule == "invscaling"),
        "POWER_T": config.power_t,
        "ROWS": float(n_rows),
        "BATCHES": float(n_batches(n_rows, config.batch_size)),
        "OPTIMIZER": float(OPTIMIZER_CODE[config.optimizer]),
        "MOMENTUM": config.momentum,
        "BETA1": config.beta_1,
        "BETA2": config.beta_2,
        "EPSILON": config.epsilon,
        "ALPHA": config.alpha,
        "R": r,
    }
    for name, value in values.items():
        out[CFG_INDEX[name]] = value
    return out


_NAMES = (
    "forward_sigmoid",
    "output_delta",
    "hidden_delta",
    "sgd_update",
    "output_step",
    "optimizer_step",
    "train_small",
)
# gemm_tiled's epilogues (SN_EPI_* in the source), and which op(A) @ op(B) each goes with
EPILOGUES = {"store": 0, "sigmoid": 1, "dsigmoid": 2, "step": 3, "bias": 4}
_GEMM_EPILOGUES = {(0, 0): ("store", "sigmoid", "bias"), (0, 1): ("store", "dsigmoid"), (1, 0): ("store", "step")}
TILE_FACTORS = (1, 2, 4, 8)  # each thread computes RM x RN outputs of a (16 RM) x (16 RN) tile


def gemm_name(T: str, ta: int, tb: int, rm: int, rn: int, epilogue: str) -> str:
    """The template instance of gemm_tiled for these options."""
    return f"gemm_tiled<{T}, {ta}, {tb}, {rm}, {rn}, {EPILOGUES[epilogue]}>"


# gemm_warp's tilings (its comment in the source): (BM, BN, BK, WM, WN, WNITER, TM, TN), the block's
# tile, K's step, a warp's tile, its sub-tiles along N and a lane's outputs in each sub-tile, named
# "BMxBN/warps". Wide outputs (the layers' GEMMs) take the widest: 64x256/4 reads a 256-wide
# layer's input once (X in X.W1, X and dH in the weight gradient Xt.dH); 128x128/4 is the warp-tiled
# kernel's tiling in siboehm's public SGEMM work-log, 128x128/8 the classic 256 threads of 8 x 8
# outputs (DefTruth's CUDA-Learn-Notes sgemm_t_8x8 kernels: 85-90% of cuBLAS on an L20, by its
# README); 16 columns fit a net's narrow outputs; 32x16/1 the tiny weight gradients of tall narrow
# nets. Which one is fastest on each shape is the device's to say (gpu_check.sh sweeps them).
_WARP_TILINGS = (
    (64, 256, 16, 32, 128, 4, 8, 4),
    (128, 128, 16, 64, 64, 4, 8, 4),
    (128, 128, 16, 64, 32, 2, 8, 4),
    (128, 64, 16, 64, 32, 2, 8, 4),
    (64, 64, 16, 32, 32, 2, 4, 4),
    (256, 16, 16, 64, 16, 1, 8, 4),
    (128, 16, 16, 32, 16, 1, 4, 4),
    (32, 16, 16, 32, 16, 1, 4, 4),
)
WARP_TILES = {f"{t[0]}x{t[1]}/{(t[0] // t[3]) * (t[1] // t[4])}": t for t in _WARP_TILINGS}
# Tilings whose float64 accumulators would crowd the registers (ptxas: 254 a lane for 128x64/4) or
# whose two buffers pass the 48 KB of static shared memory
_WARP_FLOAT_ONLY = ("64x256/4", "128x128/4", "128x128/8", "128x64/4", "256x16/4")
GEMM_KERNELS = ("tiled", "warp")


def warp_tilings(T: str) -> list[str]:
    """gemm_warp's tilings for C type ``T``."""
    return [t for t in WARP_TILES if T == "float" or t not in _WARP_FLOAT_ONLY]


def warp_gemm_name(T: str, ta: int, tb: int, tiling: str, epilogue: str) -> str:
    """The template instance of gemm_warp for these options."""
    return f"gemm_warp<{T}, {ta}, {tb}, {EPILOGUES[epilogue]}, {', '.join(map(str, WARP_TILES[tiling]))}>"


def warp_threads(tiling: str) -> int:
    """Threads per block of gemm_warp with this tiling: 32 a warp."""
    bm, bn, _, wm, wn, *_ = WARP_TILES[tiling]
    return (bm // wm) * (bn // wn) * 32


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
        names += [
            warp_gemm_name(T, ta, tb, tiling, epi)
            for (ta, tb), epis in _GEMM_EPILOGUES.items()
            for epi in epis
            for tiling in warp_tilings(T)
        ]
    return names


MAX_FIXED_LAYERS = 4  # train_small's compile-time shapes (SnShape in the source) go up to 4 layers


def fixed_shape_name(T: str, sizes) -> str:
    """train_small's instance with the layer sizes n_0..n_L fixed at compile time."""
    if not 1 <= len(sizes) - 1 <= MAX_FIXED_LAYERS:
        raise ValueError(f"a fixed shape has 1 to {MAX_FIXED_LAYERS} layers, got sizes {list(sizes)}")
    return f"train_small<{T}, {len(sizes) - 1}, {', '.join(str(int(n)) for n in sizes)}>"


WARP_MAX_WIDTH = 8  # train_warp keeps a row's inputs, outputs and their slots in registers (no spills to 8)


def warp_group(hidden: int) -> int:
    """Lanes per batch row in train_warp: the hidden width rounded up to a power of two."""
    return 1 << max(0, int(hidden) - 1).bit_length()


def warp_fits(sizes, rows: int) -> bool:
    """Whether train_warp runs a net of these layer sizes on batches of ``rows`` rows: one hidden
    layer, the batch's rows times its lanes per row within one warp, narrow inputs and outputs."""
    if len(sizes) != 3 or rows < 1:
        return False
    n0, n1, n2 = (int(n) for n in sizes)
    return n1 <= 32 and rows * warp_group(n1) <= 32 and n0 <= WARP_MAX_WIDTH and n2 <= WARP_MAX_WIDTH


def warp_name(T: str, sizes) -> str:
    """train_warp's instance for layer sizes (n_0, n_1, n_2)."""
    if len(sizes) != 3:
        raise ValueError(f"train_warp takes one hidden layer, got sizes {list(sizes)}")
    return f"train_warp<{T}, {', '.join(str(int(n)) for n in sizes)}>"


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


_NULL = np.uint64(0)  # a null pointer argument


def _ptr(a):
    return _NULL if a is None else a


class Kernels:
    """One dtype's compiled kernels, each wrapped to check shapes and dtypes before launching.

    Every launch goes to the current CuPy stream (the trainers enter theirs).
    """

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
            if a is not None and (a.dtype != self.dtype or not a.flags.c_contiguous):
                raise TypeError(f"kernel needs C-contiguous {self.dtype} arrays, got {a.dtype} {a.shape}")

    @staticmethod
    def _check_typed(a, dtype, size, what):
        if a.dtype != dtype or a.size < size or not a.flags.c_contiguous:
            raise TypeError(f"{what} must be a C-contiguous {np.dtype(dtype)} array of {size}, got {a.dtype} {a.shape}")

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
            (y, a, d, np.int64(a.size), np.int32(bce), _ptr(err)),
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

    def output_step(self, y, a, d, sw, *, output, loss, derivative, eps, acc=None, counters=None):
        """The output layer of a batch (softmax in place for output 1), its delta ``sw * (y - a)``
        (times ``a (1 - a)`` with ``derivative``), the batch's sums into ``acc`` (ACC_INDEX) and the
        step counters' advance (``counters``, or None: neither)."""
        self._check(y, a, d, sw)
        assert y.shape == a.shape == d.shape and (sw is None or sw.shape == (a.shape[0],))
        if acc is not None:
            self._check_typed(acc, np.float64, ACC_SIZE, "acc")
        if counters is not None:
            self._check_typed(counters, np.int64, 2, "counters")
        m, n = a.shape
        self.fn["output_step"](
            (int(min(max(1, -(-m // self.block_size)), 32 * self.sm_count)),),
            (self.block_size,),
            (y, a, d, _ptr(sw), np.int64(m), np.int32(n), np.int32(output), np.int32(loss),
             np.int32(derivative), np.float64(eps), _ptr(acc), _ptr(counters)),
        )  # fmt: skip

    def optimizer_step(self, p, g, slots, *, decayed, cfg, counters, sumsq=None):
        """p's step by the optimizer's rule from its ascent sum g (p's shape, or (splits, *p.shape)
        partials); ``slots``: (s0, s1) arrays of p's shape or None; scalars from ``cfg``/``counters``;
        ``sumsq``: a float64 array whose first element receives sum p**2 before the step, or None."""
        s0, s1 = slots
        self._check(p, g, s0, s1)
        self._check_typed(cfg, np.float64, CFG_SIZE, "cfg")
        self._check_typed(counters, np.int64, 2, "counters")
        splits = 1 if g.shape == p.shape else g.shape[0]
        assert g.shape[g.ndim - p.ndim :] == p.shape and g.size == splits * p.size
        self.fn["optimizer_step"](
            self._grid(p.size),
            (self.block_size,),
            (p, g, np.int32(splits), _ptr(s0), _ptr(s1), np.int64(p.size), np.int32(decayed), cfg, counters,
             _ptr(sumsq)),
        )  # fmt: skip

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

    def warp_tiling(self, M, N, max_splits=1):
        """gemm_warp's tiling (WARP_TILES) for an (M, N) output: the widest for its width whose rows
        the output half fills, narrower where the grid (times ``max_splits`` parts of K) would
        otherwise leave multiprocessors idle."""
        if N >= 256:
            wide = ("64x256/4", "128x128/8", "128x64/4", "64x64/4")
        elif N > 64:
            wide = ("128x128/8", "128x64/4", "64x64/4")
        else:
            wide = ("128x64/4", "64x64/4") if N > 16 else ("256x16/4", "128x16/4")
        order = [t for t in wide + ("32x16/1",) if t in warp_tilings(self.T)]
        want = self.sm_count if max_splits == 1 else 2 * self.sm_count
        for t in order[:-1]:
            bm, bn = WARP_TILES[t][:2]
            if bm < 2 * M and -(-M // bm) * -(-N // bn) * max_splits >= want:
                return t
        return order[-1]

    def _tiling(self, M, N, max_splits, kernel, tiles):
        """(BM, BN, BK, threads, the instance's name from (ta, tb, epilogue)) of ``kernel`` with ``tiles``
        (None: its own choice) for an (M, N) output; an unknown kernel or tiling is refused here."""
        if kernel == "warp":
            tiling = tiles or self.warp_tiling(M, N, max_splits)
            if tiling not in warp_tilings(self.T):
                raise ValueError(f"gemm_warp has no {self.T} tiling {tiling!r}: one of {warp_tilings(self.T)}")
            bm, bn, bk = WARP_TILES[tiling][:3]
            return bm, bn, bk, (warp_threads(tiling),), lambda *o: warp_gemm_name(self.T, o[0], o[1], tiling, o[2])
        if kernel == "tiled":
            pair = isinstance(tiles, tuple) and len(tiles) == 2 and set(tiles) <= set(TILE_FACTORS)
            if tiles is not None and not pair:
                raise ValueError(f"gemm_tiled's tiles are (RM, RN) from {TILE_FACTORS}, got {tiles!r}")
            rm, rn = tiles or self.gemm_tiles(M, N, max_splits)
            return 16 * rm, 16 * rn, 16, (16, 16), lambda *o: gemm_name(self.T, o[0], o[1], rm, rn, o[2])
        raise ValueError(f"kernel must be one of {GEMM_KERNELS}, got {kernel!r}")

    def gemm_splits(self, M, N, K, kernel="tiled", tiles=None):
        """How many partial sums a weight gradient's (M, N, K) GEMM splits K into.

        K is the batch's rows: without a split a 3x4 output is one block walking
        a million rows, one 16-row step after another (measured on an H100: the
        graph iteration of 1M x 3-4-1 took 1.6x the eager one). Enough parts
        for several blocks per multiprocessor, each at least 64 rows, the
        partials at most 2^20 elements (optimizer_step reads them all).
        ``kernel``: for gemm_tiled's ("tiled") or gemm_warp's ("warp") tiles;
        ``tiles``: those :meth:`gemm` is given (None: its own choice).
        """
        max_splits = max(1, K // 64)
        bm, bn, *_ = self._tiling(M, N, max_splits, kernel, tiles)
        tiles = -(-M // bm) * -(-N // bn)
        return int(max(1, min(max_splits, -(-8 * self.sm_count // tiles), (1 << 20) // (M * N))))

    def instance(self, name):
        """A template instance compiled at its first use (NVRTC; CuPy also caches it on disk)."""
        self.compile([name])
        return self.lazy[name]

    def compile(self, names):
        """The template instances ``names`` not compiled yet, in one NVRTC run (a sweep of tilings)."""
        todo = [n for n in dict.fromkeys(names) if n not in self.lazy]
        if todo:
            import cupy

            module = cupy.RawModule(code=kernel_source(), options=compile_options(), name_expressions=todo)
            self.lazy.update({n: module.get_function(n) for n in todo})

    def gemm(
        self,
        A,
        B,
        C,
        ta=False,
        tb=False,
        epilogue="store",
        E=None,
        slots=(None, None),
        decayed=False,
        cfg=None,
        counters=None,
        tiles=None,
        compile_only=False,
        kernel="tiled",
    ):
        """C = op(A) @ op(B) through gemm_tiled or gemm_warp, then the epilogue (SN_EPI_* in the source).

        Our own kernel, so a whole iteration can be captured in a CUDA graph
        (CuPy refuses cuBLAS during capture). With ``epilogue="store"`` C may be
        (splits, M, N): each part sums a slice of K, and :meth:`optimizer_step`
        adds the parts. ``E``: the bias for "sigmoid" and "bias" (or None), the
        activations for "dsigmoid". "step" updates the parameter C by the
        optimizer's rule: ``slots`` its (s0, s1) or None, ``decayed`` whether
        alpha applies (a weight), ``cfg`` and ``counters`` the settings and
        step counters. ``kernel``: "tiled" (gemm_tiled) or "warp"
        (gemm_warp). ``tiles``: gemm_tiled's (RM, RN) instead of
        :meth:`gemm_tiles`' choice, or gemm_warp's tiling (a WARP_TILES key)
        instead of :meth:`warp_tiling`'s (the tests try them all);
        ``compile_only``: compile the instance and launch nothing (before a
        graph capture, which must not load modules).
        """
        self._check(A, B, C, E, *slots)
        M, N = C.shape[-2:]
        splits = 1 if C.ndim == 2 else C.shape[0]
        K = A.shape[0] if ta else A.shape[1]
        assert (A.shape[1] if ta else A.shape[0]) == M and (B.shape[0] if tb else B.shape[1]) == N
        assert (B.shape[1] if tb else B.shape[0]) == K and (splits == 1 or epilogue == "store")
        if epilogue == "step":
            self._check_typed(cfg, np.float64, CFG_SIZE, "cfg")
            self._check_typed(counters, np.int64, 2, "counters")
        name, grid, block, kc = self.gemm_plan(M, N, K, splits, ta, tb, epilogue, tiles, kernel)
        fn = self.instance(name)
        if compile_only:
            return
        fn(
            grid,
            block,
            (np.int32(M), np.int32(N), np.int32(K), np.int32(kc), A, B, C, _ptr(E), _ptr(slots[0]), _ptr(slots[1]),
             np.int32(decayed), _ptr(cfg), _ptr(counters)),
        )  # fmt: skip

    def gemm_plan(self, M, N, K, splits=1, ta=False, tb=False, epilogue="store", tiles=None, kernel="tiled"):
        """How :meth:`gemm` launches an (M, N, K) product in ``splits`` parts: (the instance's name, grid,
        block, the rows of K a part sums); the names let many instances compile in one :meth:`compile`."""
        bm, bn, bk, block, name = self._tiling(M, N, max(1, K // 64) if splits > 1 else 1, kernel, tiles)
        if max(M, N, K + bk * splits) >= 2**31 - 256:  # the parts' bounds z kc and (z + 1) kc are ints too
            raise ValueError(f"gemm_tiled and gemm_warp index with 32-bit ints: ({M}, {N}, {K}) is too large")
        grid = ((M + bm - 1) // bm, (N + bn - 1) // bn, splits)
        return name(int(ta), int(tb), epilogue), grid, block, -(-K // (bk * splits)) * bk

    def static_shared_bytes(self) -> int:
        """Static shared memory of ``train_small`` (its offset tables), which counts beside the dynamic buffer."""
        return int(self.fn["train_small"].shared_size_bytes)

    def train_small(
        self,
        *,
        X,
        Y,
        SW,
        W,
        B,
        S,
        sizes,
        cfg,
        stats,
        start,
        iterations,
        batch_size,
        output,
        loss,
        derivative,
        mean,
        use_bias,
        weighted,
        track_all,
        step,
        eps,
        block_size,
        shared_bytes,
        fixed_shape=None,
        warp=False,
    ):
        """A report interval in one launch (see train_small and train_warp in the source).

        ``fixed_shape``: the layer sizes (on the host, equal to ``sizes``) to
        run the instance compiled for (:func:`fixed_shape_name`), whose loops
        unroll; None: the instance that reads them at run time. ``warp``: run
        train_warp for that shape instead (one warp; :func:`warp_fits`).
        """
        self._check(X, Y, SW, W, B, S)
        self._check_typed(cfg, np.float64, CFG_SIZE, "cfg")
        self._check_typed(stats, np.float64, 5, "stats")
        common = (
            np.int64(start),
            np.int32(iterations),
            np.int32(batch_size),
            cfg,
            np.int32(output),
            np.int32(loss),
            np.int32(derivative),
            np.int32(mean),
            np.int32(use_bias),
            np.int32(weighted),
            np.int32(track_all),
            np.int64(step),
            np.float64(eps),
            stats,
        )
        if warp:
            fn = self.instance(warp_name(self.T, fixed_shape))
            fn((1,), (32,), (X, Y, _ptr(SW), W, B, S, np.int32(X.shape[0]), *common))
            return
        fn = self.instance(fixed_shape_name(self.T, fixed_shape)) if fixed_shape else self.fn["train_small"]
        if shared_bytes + fn.shared_size_bytes > 48 * 1024:
            fn.max_dynamic_shared_size_bytes = shared_bytes
        fn(
            (1,),
            (block_size,),
            (X, Y, _ptr(SW), W, B, S, sizes, np.int32(len(sizes) - 1), np.int32(X.shape[0]), *common),
            shared_mem=shared_bytes,
        )


@functools.cache
def kernels(dtype_name: str, device: int = 0) -> Kernels:
    """The compiled kernels for a dtype on a device: built once per process (build them with that
    device current: a module is loaded per device)."""
    return Kernels(dtype_name)
