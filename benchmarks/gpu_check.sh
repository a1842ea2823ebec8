#!/usr/bin/env bash
# The CuPy backend's device check: one call on a lent GPU machine, at most ~8 minutes (about 5 when nothing hangs).
#
#   run (device tool):  bash benchmarks/gpu_check.sh           # from the repository root; writes under $OUT
#   dry run here:       OUT=/tmp/gpu bash benchmarks/gpu_check.sh   # without CuPy it stops at once, saying so
#
# The device has no pip and no network: its python3 already holds cupy-cuda13x,
# numba, numpy, pytest, hypothesis, torch and jax (device/KINDS.md), so this runs
# from the source tree with PYTHONPATH=src and installs nothing. Steps, each
# bounded by `timeout` so one hang cannot eat the session's device minutes:
#   1. device.json: GPU name, driver, CUDA runtime, CuPy/NumPy versions;
#   2. every CuPy test (-k cupy: the agreement tests through the fused, graph and
#      eager engines, the property tests, tests/test_cupy.py with the checks for
#      the leads in shared/GPU-REVIEW.md), log in pytest.log;
#   3. the seed run's time per iteration, and (unless SKIP_NCU is set) ncu's
#      view of where the single-launch kernel's warp waits;
#   4. sigmanet bench on the GPU with the GPU peers (PyTorch eager and CUDA graph,
#      JAX), 4 rows to 4M: results.json and throughput.png;
#   5. a short summary table of the bench;
#   6. strategy crossovers (fused / graph / eager) for SMALL_LIMIT and GRAPH_LIMIT,
#      last: each row prints as it is measured, so a cut-short run keeps the rest.
# Files under $OUT (the device tool brings back 8 at most): device.json,
# pytest.log, crossover.json, bench.log, gpu-float32/{results.json,throughput.png}.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-$(mktemp -d)}"
mkdir -p "$OUT"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
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

echo "== 1. device"
timeout 60 "$PY" - "$OUT/device.json" <<'EOF' || status=1
import json, subprocess, sys
import cupy, numpy
rt = cupy.cuda.runtime
props = rt.getDeviceProperties(0)
name = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
info = {"device": name, "compute_capability": f"{props['major']}.{props['minor']}",
        "multiprocessors": props["multiProcessorCount"], "memory_gib": round(props["totalGlobalMem"] / 2**30, 1),
        "shared_per_block_optin": props.get("sharedMemPerBlockOptin"),
        "driver": rt.driverGetVersion(), "cuda_runtime": rt.runtimeGetVersion(),
        "cupy": cupy.__version__, "numpy": numpy.__version__}
free, total = rt.memGetInfo()
info["memory_free_gib"] = round(free / 2**30, 1)
info["cupy_pool_limit"] = cupy.get_default_memory_pool().get_limit()
info["env"] = {k: v for k, v in __import__("os").environ.items() if k.startswith(("CUPY_", "XLA_", "CUDA_", "PYTORCH_"))}
try:
    info["nvidia_smi"] = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,clocks.sm,clocks.mem",
                                         "--format=csv,noheader"], capture_output=True, text=True,
                                        timeout=20).stdout.strip()
except Exception as e:  # noqa: BLE001
    info["nvidia_smi"] = f"unavailable: {e}"
json.dump(info, open(sys.argv[1], "w"), indent=2)
print(json.dumps(info, indent=2))
EOF

echo "== 2. CuPy tests"
timeout 200 "$PY" -m pytest -q -p no:cacheprovider -m "not slow or slow" -k cupy -ra \
    tests/test_cupy.py tests/test_backends_agree.py tests/test_properties.py tests/test_reliability.py \
    tests/test_numerics.py tests/test_checkpoint.py tests/test_training_advice.py tests/test_shuffle.py \
    >"$OUT/pytest.log" 2>&1
rc=$?
tail -n 25 "$OUT/pytest.log"
[ "$rc" -eq 0 ] || { echo "gpu_check: CuPy tests exited $rc (124: timed out)"; status=1; }

echo "== 3. the seed run (60000 iterations of 3-4-1 on 4 rows), compile excluded"
timeout 60 "$PY" - <<'EOF' || status=1
import time
import sigmanet as sn
from sigmanet.backends import TrainConfig, get_backend
from sigmanet.datasets import tutorial_table
b = get_backend("cupy")
for dtype in ("float64", "float32"):
    X, y = tutorial_table(dtype)
    tr = b.trainer(sn.Network([3, 4, 1], seed=1, init="legacy", dtype=dtype).weights, None, X, y, TrainConfig())
    tr.run(0, 10); b.synchronize()
    best = []
    for _ in range(5):
        t0 = time.perf_counter(); tr.run(10, 60000); b.synchronize(); best.append(time.perf_counter() - t0)
    print(f"seed run {dtype}: {min(best) / 60000 * 1e6:.3f} us/iteration (best of 5; {type(tr).__name__}, "
          f"block {tr.block_size})")
EOF
if [ -z "${SKIP_NCU:-}" ] && command -v ncu >/dev/null; then
    echo "== 3. ncu: where the single-launch kernel's warps wait (seed shape, float64)"
    timeout 90 ncu --section WarpStateStats --section SchedulerStats --section LaunchStats -k regex:train_small -c 1 \
        "$PY" -c "
import sigmanet as sn
from sigmanet.backends import TrainConfig, get_backend
from sigmanet.datasets import tutorial_table
X, y = tutorial_table()
get_backend('cupy').trainer(sn.Network([3, 4, 1], seed=1, init='legacy').weights, None, X, y, TrainConfig()).run(0, 20000)
" 2>&1 | grep -v "^==PROF==" | grep -iE "stall|cycles|issued|eligible|active|duration|registers|threads" | head -40 || true
fi

echo "== 4. sigmanet bench (GPU, with peers)"
timeout 240 "$PY" -m sigmanet bench --backends cupy --peers torch,torch-graph,jax \
    --sizes 4,1024,65536,1048576,4194304 --seconds 0.2 --out "$OUT/gpu-float32" >"$OUT/bench.log" 2>&1 \
    || { echo "gpu_check: bench failed or timed out"; status=1; }
tail -n 30 "$OUT/bench.log"

echo "== 6. strategy crossovers (SMALL_LIMIT, GRAPH_LIMIT)"
timeout 90 "$PY" benchmarks/strategy_crossover.py --backend cupy --seconds 0.05 --out "$OUT/crossover.json" \
    2>&1 | tee "$OUT/crossover.log" || status=1

echo "== 5. summary"
"$PY" - "$OUT" <<'EOF' || true
import json, sys, pathlib
out = pathlib.Path(sys.argv[1])
dev = json.loads((out / "device.json").read_text()) if (out / "device.json").exists() else {}
print(f"device {dev.get('device')} driver {dev.get('driver')} CUDA {dev.get('cuda_runtime')} CuPy {dev.get('cupy')}")
res = out / "gpu-float32" / "results.json"
if res.exists():
    recs = json.loads(res.read_text())["records"]
    for r in recs:
        print(f"{r['backend']:12s} {r['rows']:>8d} {'-'.join(map(str, r['layers'])):10s} "
              f"{r['seconds_per_iteration'] * 1e6:10.2f} us/it  gemm_ratio {r['gemm_ratio']:.2f}  {r.get('strategy', '')}")
EOF
exit "$status"
