"""What shuffled mini-batches cost against row order, through Network.fit (issue 27: at most 1.10x).

    OPENBLAS_CORETYPE= OPENBLAS_L2_SIZE= python benchmarks/shuffle_cost.py [--backend numba] [--rounds 5]

Each case trains whole epochs of mini-batches (report_every = one epoch) with
``shuffle=False`` and ``shuffle=0`` in interleaved rounds, and prints the best
seconds per epoch of each and their ratio. The shuffled fit reads each epoch's
order inside the compiled loop (no copy of X); what is left is the epoch's
permutation (NumPy's) and the gathered reads.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

CASES = {  # name: (layers, rows, batch, dtype)
    "12800 x 784-128-10, 128-row batches, f32": ([784, 128, 10], 12800, 128, "float32"),
    "1797 x 64-32-10, 32-row batches, f64": ([64, 32, 10], 1797, 32, "float64"),
    "60000 x 64-256-16, 512-row batches, f32": ([64, 256, 16], 60000, 512, "float32"),
    "256 x 8-16-2, 32-row batches, f64 (tiny)": ([8, 16, 2], 256, 32, "float64"),
}


def main(argv=None):
    import sigmanet as sn
    from sigmanet.bench import machine_info
    from sigmanet.datasets import make_table

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backend", default="numba")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--epochs", type=int, default=0, help="epochs per timed fit (default: about 0.1 s worth)")
    p.add_argument("--out", help="write the figures here as JSON")
    args = p.parse_args(argv)
    info = machine_info()
    print(f"# {info['cpu']}; backend {args.backend}")
    out = {}
    for name, (layers, rows, batch, dtype) in CASES.items():
        X, y = make_table(rows, layers[0], layers[-1], seed=0, dtype=dtype)
        n_batches = -(-rows // batch)
        nets = {s: sn.Network(layers, backend=args.backend, dtype=dtype, seed=0, bias=True) for s in (False, 0)}

        def fit(shuffle, epochs, nets=nets, X=X, y=y, n_batches=n_batches, batch=batch):
            nets[shuffle].fit(X, y, iterations=epochs * n_batches, report_every=n_batches, batch_size=batch,
                              shuffle=shuffle, reduction="mean", learning_rate=0.5, warn_stuck=False)  # fmt: skip

        for s in nets:
            fit(s, 1)  # compile, first epoch
        t = time.perf_counter()
        fit(False, 1)
        epochs = args.epochs or max(1, int(0.1 / max(time.perf_counter() - t, 1e-6)))
        best = {False: float("inf"), 0: float("inf")}
        for _ in range(args.rounds):
            for s in best:
                t = time.perf_counter()
                fit(s, epochs)
                best[s] = min(best[s], (time.perf_counter() - t) / epochs)
        ratio = best[0] / best[False]
        out[name] = {"row_order_s": best[False], "shuffled_s": best[0], "ratio": ratio}
        print(f"{name:45s} row order {best[False] * 1e3:9.3f} ms/epoch  shuffled {best[0] * 1e3:9.3f}  {ratio:.3f}x")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"machine": info, "cases": out}, f, indent=1)
    return out


if __name__ == "__main__":
    main()
