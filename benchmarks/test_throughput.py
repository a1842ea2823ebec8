"""Training throughput: one report interval through each backend's trainer (what Network.fit calls).

Each timed call runs ``ITERATIONS`` iterations and synchronises the device,
so GPU cases time finished work. ``extra_info`` carries samples/s and GFLOP/s
for the JSON report; the gemm_ratio lives in ``sigmanet bench``, which times
the bare GEMMs side by side.
"""

import math

import pytest

from sigmanet import bench
from sigmanet.backends import TrainConfig, get_backend

ITERATIONS = {4: 2000, 256: 200, 1024: 50}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_training_interval(benchmark, usable, rows, dtype, case, rounds):
    layers, X, y, weights = case(rows, dtype)
    backend = get_backend(usable)
    trainer = backend.trainer(weights, None, X, y, TrainConfig(reduction="mean"))
    trainer.run(0, 2)  # compile / load the cache outside the timing
    backend.synchronize()
    n = ITERATIONS.get(rows, 5)

    def interval():
        stats = trainer.run(0, n)
        backend.synchronize()
        return stats.error

    benchmark.group = f"rows={rows} {'-'.join(map(str, layers))} {dtype}"
    err = benchmark.pedantic(interval, rounds=rounds[0], warmup_rounds=rounds[1])
    assert math.isfinite(err) and 0 <= err <= 1  # mean |y - output| of 0/1 targets and sigmoid outputs
    if benchmark.stats is not None:
        per_it = benchmark.stats.stats.median / n
        benchmark.extra_info.update(
            iterations=n,
            samples_per_second=rows / per_it,
            gflops=bench.iteration_flops(rows, layers) / per_it / 1e9,
            device=backend.device(),
        )
