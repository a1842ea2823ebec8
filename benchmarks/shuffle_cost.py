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

WAYS = {"row order": False, "shuffled": 0}  # fit(shuffle=): off, or seeded by 0
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

        def fit(way, epochs, X=X, y=y, n_batches=n_batches, batch=batch, layers=layers, dtype=dtype):
            net = sn.Network(layers, backend=args.backend, dtype=dtype, seed=0, bias=True)  # the same start
            t = time.perf_counter()
            net.fit(X, y, iterations=epochs * n_batches, report_every=n_batches, batch_size=batch,
                    shuffle=WAYS[way], reduction="mean", learning_rate=0.5, warn_stuck=False)  # fmt: skip
            return (time.perf_counter() - t) / epochs

        for way in WAYS:
            fit(way, 1)  # compile
        epochs = args.epochs or max(1, int(0.1 / max(fit("row order", 1), 1e-6)))
        best = dict.fromkeys(WAYS, float("inf"))
        for _ in range(args.rounds):
            for way in WAYS:
                best[way] = min(best[way], fit(way, epochs))
        ratio = best["shuffled"] / best["row order"]
        out[name] = {"row_order_s": best["row order"], "shuffled_s": best["shuffled"], "ratio": ratio}
        print(f"{name:45s} row order {best['row order'] * 1e3:9.3f} ms/epoch  "
              f"shuffled {best['shuffled'] * 1e3:9.3f}  {ratio:.3f}x")  # fmt: skip
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"machine": info, "cases": out}, f, indent=1)
    return out


if __name__ == "__main__":
    main()
