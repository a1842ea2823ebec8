#!/usr/bin/env bash
# The CuPy backend's device check: one call on a lent GPU machine, at most 6 minutes (every step is
# bounded by `timeout`; the bounds add up to 360 s), so that a fix and a rerun fit in 15 minutes.
#
#   run (device tool):  bash benchmarks/gpu_check.sh            # from the repository root; writes under $OUT
#   with Dask's wheels: bash benchmarks/gpu_check.sh --fetch-wheels   # here, once (network); then carry .whl
#   dry run here:       OUT=/tmp/gpu bash benchmarks/gpu_check.sh    # without CuPy it stops at once, saying so
#   on the CPU emulator: GPU_CHECK_SMALL=1 PYTHONPATH=tests/cuda_emulation/as_cupy:tests/cuda_emulation \
#                        OUT=/tmp/gpu bash benchmarks/gpu_check.sh   # every step on tiny sizes, tests and ncu left
#                        out, bounds x20, --quick benches (the tutorial's 60000-iteration comparison once, not
#                        three times): the script itself checked before a device session spends minutes on it
#
# The device has no pip index and no network: its python3 already holds cupy-cuda13x, numba, numpy,
# pytest, pytest-timeout, torch and jax (device/KINDS.md), so this runs from the source tree with
# PYTHONPATH=src. Dask and distributed are not there: `--fetch-wheels` downloads them (and their
# pure-Python needs the image lacks) into .whl/ (git-ignored); a device call that names .whl in
# `carry` gets them installed under /tmp, else the Dask test skips, saying so.
#
# Steps (the kernels' math was verified on the CPU emulator first: tests/test_cuda_emulation.py):
#   1. device.json: GPU, driver, CUDA runtime, CuPy/NumPy versions; which of triton, cutlass, nvmath import;
#   2. pytest.log: every CuPy test: tests/test_cupy.py first (every option on every engine, each engine
#      asserted: warp, block, generic single launch, graph, eager; streams; Dask chunks; the review's
#      leads), then the agreement and property tests through the cupy engines (-k cupy);
#   3. checks.log: the seed's time per iteration (train_warp against train_small, float64 and float32,
#      compile excluded; target <= 1 us), ncu's instructions per iteration for both (unless SKIP_NCU),
#      and at 1M x 64-256-16 float32 each GEMM timed alone (cuBLAS, gemm_tiled with its epilogue, and
#      gemm_warp on every tiling for the output's width), each epilogue kernel's bandwidth, the eager
#      iteration and the graph's (on gemm_tiled, on gemm_warp) against the bare GEMMs (target 1.15x);
#      docs/perf-notes.md ("GPU round 3") has the floor to compare with; momentum and Adam against sgd;
#   4. sigmanet bench with the GPU peers (PyTorch eager and CUDA graph, JAX), 4 rows to 4M
#      (gpu-float32/results.json, throughput.png), and 128-row batches of 784-128-10 on 65536 rows (gpu-mb/results.json);
#   5. strategy crossovers (fused / graph / eager, pinned by name) for SMALL_LIMIT and GRAPH_LIMIT,
#      last: each row prints as it is measured, so a cut-short run keeps the rest (crossover.json);
#   6. a summary of the bench.
# Files under $OUT (the device tool brings back 8 at most): device.json, pytest.log, checks.log,
# bench.log, gpu-float32/{results.json,throughput.png}, gpu-mb/results.json, crossover.json.
set -uo pipefail
cd "$(dirname "$0")/.."

WHEELS=(dask==2026.8.0 distributed==2026.8.0 partd==1.4.2 locket==1.0.0 tblib==3.2.2 zict==3.0.0 tornado==6.6.1)
if [ "${1:-}" = "--fetch-wheels" ]; then
    grep -qx '/.whl/' .git/info/exclude 2>/dev/null || grep -qx '/.whl/' .gitignore || echo '/.whl/' >>.git/info/exclude
    exec python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        --platform any -d .whl "${WHEELS[@]}"
fi

OUT="${OUT:-$(mktemp -d)}"
mkdir -p "$OUT"
SMALL="${GPU_CHECK_SMALL:-}"  # the dry run on the CPU emulator: tiny sizes, no tests, no ncu, longer bounds
SCALE=1 ROWS=1048576 ITERS=60000 REPS=7 SIZES=4,1024,65536,1048576,4194304 MB_ROWS=65536 QUICK=()
# JAX needs whole batches; one timed run of each GEMM (the emulator's times mean nothing)
if [ -n "$SMALL" ]; then SCALE=20 ROWS=2048 ITERS=200 REPS=1 SIZES=4,1024 MB_ROWS=1024 QUICK=(--quick); fi
export SN_ROWS="$ROWS" SN_ITERS="$ITERS" SN_REPS="$REPS"
bounded() { local s="$1"; shift; timeout "$((s * SCALE))" "$@"; }  # every step's time bound, in seconds
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
PY="${PYTHON:-python3}"
status=0

if ! "$PY" -c "import cupy" 2>/dev/null; then
    echo "gpu_check: CuPy is not importable by $PY here: this script runs on the lent GPU machine (device tool)." >&2
    exit 3
fi
if ! "$PY" -c "import cupy; assert cupy.cuda.runtime.getDeviceCount() > 0" 2>"$OUT/probe.err"; then
    echo "gpu_check: CuPy is installed but no CUDA device is usable: $(tail -n 1 "$OUT/probe.err")" >&2
    exit 3
fi
rm -f "$OUT/probe.err"  # the device tool brings back at most 8 files
if compgen -G ".whl/*.whl" >/dev/null; then
    bounded 10 "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/sn-site .whl/*.whl \
        && export PYTHONPATH="$PYTHONPATH:/tmp/sn-site" || echo "gpu_check: the carried wheels did not install"
fi

echo "== 1. device"
bounded 10 "$PY" - "$OUT/device.json" <<'EOF' || status=1
import importlib, json, os, subprocess, sys
import cupy, numpy
rt = cupy.cuda.runtime
props = rt.getDeviceProperties(0)
name = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
info = {"device": name, "compute_capability": f"{props['major']}.{props['minor']}",
        "multiprocessors": props["multiProcessorCount"], "memory_gib": round(props["totalGlobalMem"] / 2**30, 1),
        "shared_per_block_optin": props.get("sharedMemPerBlockOptin"), "l2_bytes": props.get("l2CacheSize"),
        "driver": rt.driverGetVersion(), "cuda_runtime": rt.runtimeGetVersion(),
        "cupy": cupy.__version__, "numpy": numpy.__version__}
free, total = rt.memGetInfo()
info["memory_free_gib"] = round(free / 2**30, 1)
info["env"] = {k: v for k, v in os.environ.items() if k.startswith(("CUPY_", "XLA_", "CUDA_", "PYTORCH_"))}
for lib in ("triton", "cutlass", "nvmath", "dask", "distributed"):
    try:
        info[f"import_{lib}"] = getattr(importlib.import_module(lib), "__version__", "yes")
    except Exception as e:  # noqa: BLE001
        info[f"import_{lib}"] = f"no ({type(e).__name__})"
try:
    info["nvidia_smi"] = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,clocks.sm,clocks.mem",
                                         "--format=csv,noheader"], capture_output=True, text=True,
                                        timeout=5).stdout.strip()
except Exception as e:  # noqa: BLE001
    info["nvidia_smi"] = f"unavailable: {e}"
json.dump(info, open(sys.argv[1], "w"), indent=2)
print(json.dumps(info, indent=2))
EOF

echo "== 2. CuPy tests"
if [ -n "$SMALL" ]; then echo "(left out of the dry run: PYTHONPATH=tests/cuda_emulation python -m pytest -p sn_emulated_cupy tests/test_cupy.py runs them here)"; else
PYTEST=("$PY" -m pytest -q -p no:cacheprovider -m "not slow or slow" -ra)
if "$PY" -c "import pytest_timeout" 2>/dev/null; then PYTEST+=(--timeout 60); fi
# 8 processes: NVRTC compiles each new kernel instance on a CPU core, the GPU is shared (CuPy's disk cache too)
if "$PY" -c "import xdist" 2>/dev/null; then PYTEST+=(-n 8); fi
bounded 85 "${PYTEST[@]}" tests/test_cupy.py >"$OUT/pytest.log" 2>&1
rc1=$?
bounded 40 "${PYTEST[@]}" -k "cupy or cuda or gpu" tests/test_backends_agree.py tests/test_properties.py tests/test_reliability.py \
    tests/test_numerics.py tests/test_checkpoint.py tests/test_training_advice.py tests/test_shuffle.py \
    tests/test_optimizers.py tests/test_embedding.py tests/test_faults.py >>"$OUT/pytest.log" 2>&1
rc2=$?
grep -E "passed|failed|error" "$OUT/pytest.log" | tail -n 4
grep -E "^(FAILED|ERROR)" "$OUT/pytest.log" | head -n 30
[ "$rc1" -eq 0 ] && [ "$rc2" -eq 0 ] || { echo "gpu_check: CuPy tests exited $rc1 / $rc2 (124: timed out)"; status=1; }
fi

echo "== 3. the seed, ncu, and the GEMMs at 1M x 64-256-16 (checks.log)"
bounded 20 "$PY" - >"$OUT/checks.log" 2>&1 <<'EOF' || status=1
import os, time
import numpy as np
import sigmanet as sn
from sigmanet.backends import TrainConfig, get_backend
from sigmanet.datasets import tutorial_table
b = get_backend("cupy:fused")
n = int(os.environ.get("SN_ITERS", 60000))
print(f"the seed run: {n} iterations of 3-4-1 on 4 rows, best of 5, compile excluded (target <= 1 us)")
for dtype in ("float64", "float32"):
    X, y = tutorial_table(dtype)
    w = sn.Network([3, 4, 1], seed=1, init="legacy", dtype=dtype).weights
    results = {}
    for kind in ("warp", "block"):
        tr = b.trainer(w, None, X, y, TrainConfig())
        tr.warp = kind == "warp"
        tr.run(0, 10); b.synchronize()
        best = []
        for _ in range(5):
            t0 = time.perf_counter(); tr.run(10, n); b.synchronize(); best.append(time.perf_counter() - t0)
        results[kind] = (min(best) / n * 1e6, tr.weights()[0][0])
        print(f"  {dtype} {tr.engine:12s}: {results[kind][0]:.3f} us/iteration (block {32 if tr.warp else tr.block_size})")
    diff = float(np.abs(results["warp"][1] - results["block"][1]).max())
    print(f"  {dtype}: warp / block = {results['warp'][0] / results['block'][0]:.2f}; weights differ by {diff:.2e}")
EOF
if [ -z "${SKIP_NCU:-}$SMALL" ] && command -v ncu >/dev/null; then
    echo "-- ncu: train_warp then train_small on the seed (float64, 20000 iterations each)" >>"$OUT/checks.log"
    bounded 30 ncu --clock-control none -k regex:train_ -c 2 \
        --metrics smsp__inst_executed.sum,sm__cycles_elapsed.max,smsp__average_warp_latency_issue_stalled_barrier,smsp__average_warp_latency_issue_stalled_short_scoreboard,gpu__time_duration.sum \
        "$PY" -c "
import sigmanet as sn
from sigmanet.backends import TrainConfig, get_backend
from sigmanet.datasets import tutorial_table
X, y = tutorial_table()
w = sn.Network([3, 4, 1], seed=1, init='legacy').weights
for warp in (True, False):
    tr = get_backend('cupy:fused').trainer(w, None, X, y, TrainConfig()); tr.warp = warp; tr.run(0, 20000)
" 2>&1 | grep -v "^==PROF==" | grep -E "train_|inst_executed|cycles|stalled|duration" >>"$OUT/checks.log" || true
    echo "   (instructions per iteration: smsp__inst_executed.sum / 20000; the target is <= 150)" >>"$OUT/checks.log"
fi
bounded 40 "$PY" - >>"$OUT/checks.log" 2>&1 <<'EOF' || status=1
import os, time
import cupy as cp
import numpy as np
from sigmanet.backends import TrainConfig, get_backend
from sigmanet.backends.cupy._cuda import kernels, settings
from sigmanet.backends.cupy.backend import CupyBackend
rows, f32 = int(os.environ.get("SN_ROWS", 1 << 20)), np.float32
reps = int(os.environ.get("SN_REPS", 7))
print(f"\n1M x 64-256-16 float32 (rows {rows}): each piece alone, CUDA events, median of {reps} after {min(2, reps)} warm-ups")
rng = cp.random.default_rng(0)
X = rng.random((rows, 64), dtype=f32); Y = rng.random((rows, 16), dtype=f32)
W1 = (rng.random((64, 256), dtype=f32) - 0.5) * 0.2; W2 = (rng.random((256, 16), dtype=f32) - 0.5) * 0.2
H, O = cp.empty((rows, 256), f32), cp.empty((rows, 16), f32)
dH, dO = rng.random((rows, 256), dtype=f32), rng.random((rows, 16), dtype=f32)
G1, G2 = cp.empty_like(W1), cp.empty_like(W2)
K = kernels("float32", cp.cuda.Device().id)
cfg = cp.asarray(settings(TrainConfig(reduction="mean"), rows, 1.0 / rows)); counters = cp.asarray(np.array([1, 0], np.int64))
def ms(f):
    for _ in range(min(2, reps)): f()
    times = []
    for _ in range(reps):
        e0, e1 = cp.cuda.Event(), cp.cuda.Event(); e0.record(); f(); e1.record(); e1.synchronize()
        times.append(cp.cuda.get_elapsed_time(e0, e1))
    return float(np.median(times))
flops = {"G1 X.W1": 2 * rows * 64 * 256, "G2 H.W2": 2 * rows * 256 * 16, "G3 dO.W2T": 2 * rows * 16 * 256,
         "G4 XT.dH": 2 * rows * 64 * 256, "G5 HT.dO": 2 * rows * 256 * 16}
cublas = {"G1 X.W1": lambda: cp.matmul(X, W1, out=H), "G2 H.W2": lambda: cp.matmul(H, W2, out=O),
          "G3 dO.W2T": lambda: cp.matmul(dO, W2.T, out=dH), "G4 XT.dH": lambda: cp.matmul(X.T, dH, out=G1),
          "G5 HT.dO": lambda: cp.matmul(H.T, dO, out=G2)}
# each GEMM as the graph iteration runs it: A, B, C (or the weight it steps, through split partials), ta, tb, epilogue, E
shapes = {"G1 X.W1": (X, W1, H, 0, 0, "sigmoid", None), "G2 H.W2": (H, W2, O, 0, 0, "sigmoid", None),
          "G3 dO.W2T": (dO, W2, dH, 0, 1, "dsigmoid", H), "G4 XT.dH": (X, dH, W1, 1, 0, "store", None),
          "G5 HT.dO": (H, dO, W2, 1, 0, "store", None)}
def splits(name, kernel, tiles):
    C = shapes[name][2]
    return K.gemm_splits(*C.shape, rows, kernel=kernel, tiles=tiles) if shapes[name][3] else 1
def ours(name, kernel, tiles=None):
    A, B, C, ta, tb, epi, E = shapes[name]
    if not ta:
        return lambda: K.gemm(A, B, C, tb=bool(tb), epilogue=epi, E=E, kernel=kernel, tiles=tiles)
    P = cp.empty((splits(name, kernel, tiles), *C.shape), f32)
    return lambda: (K.gemm(A, B, P, ta=True, kernel=kernel, tiles=tiles),
                    K.optimizer_step(C, P, (None, None), decayed=True, cfg=cfg, counters=counters))
# gemm_warp's sweep: the tilings for the output's width (16 columns, or wide), and every instance this step
# runs (gemm_tiled's, and the graph iterations' own choices, the sweep's defaults) compiled in one NVRTC run
wide = ("64x256/4", "128x128/4", "128x128/8", "128x64/4")
sweep = {n: list(("256x16/4", "128x16/4") if v[2].shape[1] == 16 else wide) for n, v in shapes.items()}
runs = [(n, "warp", t) for n in shapes for t in sweep[n]] + [(n, k, None) for n in shapes for k in ("tiled", "warp")]
t0 = time.perf_counter()
names = {f"{n.split()[0]} {k} {t or 'own'}": K.gemm_plan(*v[2].shape[-2:], v[0].shape[0] if v[3] else v[0].shape[1],
                                                         splits(n, k, t), v[3], v[4], v[5], t, k)[0]
         for n, k, t in runs for v in [shapes[n]]}
K.compile(names.values())
print(f"{len(K.lazy)} GEMM instances (gemm_warp's sweep, gemm_tiled, the graphs') compiled in one NVRTC run in {time.perf_counter() - t0:.1f} s")
print("registers/local bytes a thread (local > 0: spills, or staging arrays not kept in registers):")
print("  " + "; ".join(f"{label} {getattr(K.lazy[name], 'num_regs', '?')}/{getattr(K.lazy[name], 'local_size_bytes', '?')}"
                       for label, name in names.items()))
total = 0.0
print(f"{'GEMM':10s} {'cuBLAS ms':>9s} {'TFLOP/s':>7s} | {'tiled ms':>8s} {'x cuBLAS':>8s} | {'warp ms':>7s} {'x cuBLAS':>8s} {'best':>9s} | every tiling (ms)")
for name in flops:
    a, o = ms(cublas[name]), ms(ours(name, "tiled")); total += a
    w = {t: ms(ours(name, "warp", t)) for t in sweep[name]}
    best = min(w, key=w.get)
    print(f"{name:10s} {a:9.3f} {flops[name] / a / 1e9:7.1f} | {o:8.3f} {o / a:8.2f} | {w[best]:7.3f} {w[best] / a:8.2f} {best:>9s} | "
          + " ".join(f"{t} {v:.3f}" for t, v in w.items()))
print(f"bare cuBLAS GEMMs of one iteration: {total:.3f} ms (item 1: ours with the epilogue at >= 90% of cuBLAS's rate, <= 1.11x)")
epi = {"forward_sigmoid H (r+w 2 GB)": (lambda: K.forward_sigmoid(H, None), 2 * H.nbytes),
       "hidden_delta dH,H (r 2, w 1 GB)": (lambda: K.hidden_delta(dH, H), 3 * H.nbytes),
       "output_delta y,O (r 2, w 1)": (lambda: K.output_delta(Y, O, dO, 0, None), 3 * O.nbytes),
       "output_step y,O rows (r 2, w 1)": (lambda: K.output_step(Y, O, dO, None, output=0, loss=0, derivative=1, eps=1e-7), 3 * O.nbytes)}
for name, (f, nbytes) in epi.items():
    t = ms(f); print(f"{name:34s} {t:8.3f} ms  {nbytes / t / 1e6:8.0f} GB/s")
w = [cp.asnumpy(W1), cp.asnumpy(W2)]
tr = get_backend("cupy:eager").trainer(w, None, X, Y, TrainConfig(reduction="mean"))
it = ms(lambda: tr.run(0, 3)) / 3
print(f"eager iteration (cuBLAS + fused epilogues): {it:.3f} ms = {it / total:.2f}x its bare GEMMs (target <= 1.15)")
del tr
compiled = len(K.lazy)
for gemm in ("tiled", "warp"):  # the whole iteration in our kernels, replayed as one CUDA graph
    tr = CupyBackend(strategy="graph", gemm=gemm).trainer(w, None, X, Y, TrainConfig(reduction="mean"))
    tr.run(0, 1)
    it = ms(lambda: tr.run(0, 3)) / 3
    how = "replayed" if tr.graph is not None else f"not captured: {tr.graph_error}"
    print(f"graph iteration, gemm_{gemm}: {it:.3f} ms = {it / total:.2f}x the bare cuBLAS GEMMs ({how}; "
          f"{len(K.lazy) - compiled} instances compiled beyond the sweep's)")
    del tr
EOF
bounded 10 "$PY" - >>"$OUT/checks.log" 2>&1 <<'EOF' || status=1
from sigmanet.bench import bench_backend
print("\nthe optimizers against plain gradient descent (issue 22: momentum and Adam at most 1.15x sgd per iteration)")
for rows, layers, batch in ((1024, [64, 256, 16], None), (65536, [784, 128, 10], 128)):
    base = None
    for optimizer in ("sgd", "momentum", "adam"):
        rec = bench_backend("cupy", rows, "float32", layers=layers, min_seconds=0.05, batch_size=batch, optimizer=optimizer)
        base = base or rec.seconds_per_iteration
        print(f"  {rows} x {'-'.join(map(str, layers))} batch {batch or 'full'} {optimizer:9s}"
              f"{rec.seconds_per_iteration * 1e6:9.2f} us/it  {rec.seconds_per_iteration / base:.2f}x sgd  ({rec.strategy})")
EOF
tail -n 40 "$OUT/checks.log"

echo "== 4. sigmanet bench (GPU, with peers)"
bounded 75 "$PY" -m sigmanet bench --backends cupy --peers torch,torch-graph,jax \
    --sizes "$SIZES" --seconds 0.1 "${QUICK[@]}" --out "$OUT/gpu-float32" >"$OUT/bench.log" 2>&1 \
    || { echo "gpu_check: bench failed or timed out"; status=1; }
bounded 20 "$PY" -m sigmanet bench --backends cupy --peers torch,torch-graph,jax --layers 784,128,10 \
    --batch-size 128 --sizes "$MB_ROWS" --seconds 0.1 --out "$OUT/gpu-mb" >>"$OUT/bench.log" 2>&1 \
    || { echo "gpu_check: mini-batch bench failed or timed out"; status=1; }
rm -f "$OUT/gpu-mb/throughput.png"  # 8 files come back at most
tail -n 30 "$OUT/bench.log"

echo "== 5. strategy crossovers (SMALL_LIMIT, GRAPH_LIMIT)"
bounded 15 "$PY" benchmarks/strategy_crossover.py --backend cupy --seconds 0.03 "${QUICK[@]}" --out "$OUT/crossover.json" || status=1

echo "== 6. summary"
bounded 5 "$PY" - "$OUT" <<'EOF' || true
import json, sys, pathlib
out = pathlib.Path(sys.argv[1])
dev = json.loads((out / "device.json").read_text()) if (out / "device.json").exists() else {}
print(f"device {dev.get('device')} driver {dev.get('driver')} CUDA {dev.get('cuda_runtime')} CuPy {dev.get('cupy')}")
for res in (out / "gpu-float32" / "results.json", out / "gpu-mb" / "results.json"):
    if res.exists():
        for r in json.loads(res.read_text())["records"]:
            print(f"{r['backend']:12s} {r['rows']:>8d} {'-'.join(map(str, r['layers'])):10s} "
                  f"{r['seconds_per_iteration'] * 1e6:10.2f} us/it  gemm_ratio {r['gemm_ratio']:.2f}  {r.get('strategy', '')}")
EOF
exit "$status"
