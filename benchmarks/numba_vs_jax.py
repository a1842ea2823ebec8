"""numba against JAX and the NumPy backend on the shapes people train: two ways, both must agree.

    OPENBLAS_CORETYPE= OPENBLAS_L2_SIZE= python benchmarks/numba_vs_jax.py [--quick] [--out numba_vs_jax.json]

Each case is one training iteration (a full batch, or one mini-batch step) of a
sigmoid network with biases, mean steps and rate 0.5 (Adam: 1e-3), timed as whole report
intervals through each engine (Network.fit's own call; JAX: ``jit`` over a
``lax.fori_loop`` of the same step, true float32/float64 GEMMs). Two ways:

* **together**: every engine in this process, in interleaved rounds, the best
  of each (what one run of ``sigmanet bench`` does);
* **alone**: each engine in a process of its own (no other library's thread
  pool spinning beside it, no cache or frequency state shared), best of its
  rounds.

A win counts only where it holds both ways (issue 27). The output names the
CPU, the BLAS and its kernel, and prints per case the microseconds per
iteration of each engine, and numba's ratio to JAX and to NumPy.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

CASES = {  # name: (layers, rows, batch, dtype, loss, optimizer)
    "1024 x 64-256-16 f32 bce": ([64, 256, 16], 1024, None, "float32", "bce", "sgd"),
    "1797 x 64-32-10 f64 mse": ([64, 32, 10], 1797, None, "float64", "mse", "sgd"),
    "128-row batches 784-128-10 f32 bce": ([784, 128, 10], 12800, 128, "float32", "bce", "sgd"),
    "256-row batches 100-512-10 f32 bce": ([100, 512, 10], 25600, 256, "float32", "bce", "sgd"),
    "65536 x 64-256-16 f32 mse": ([64, 256, 16], 65536, None, "float32", "mse", "sgd"),
    "1024 x 64-256-16 f32 bce adam": ([64, 256, 16], 1024, None, "float32", "bce", "adam"),
    "128-row batches 784-128-10 f32 adam": ([784, 128, 10], 12800, 128, "float32", "bce", "adam"),
    "seed 4 x 3-4-1 f64": ([3, 4, 1], 4, None, "float64", "mse", "sgd"),
}
QUICK = ["1024 x 64-256-16 f32 bce", "seed 4 x 3-4-1 f64"]
ENGINES = ("numba", "numpy", "jax")


def rate(optimizer):
    """Adam at its usual 1e-3 (at 0.5 its steps saturate the units: their denormal outputs then cost
    every engine 10-100x, and that is not what anyone trains with); gradient descent at 0.5."""
    return 1e-3 if optimizer == "adam" else 0.5


def data(layers, rows, dtype):
    from sigmanet.datasets import make_table, tutorial_table

    if layers == [3, 4, 1]:
        return tutorial_table(dtype)
    return make_table(rows, layers[0], layers[-1], dtype=dtype)


def sigmanet_runner(engine, case):
    """(run(n), reset(), label) for one of sigmanet's backends: n iterations through the backend's
    trainer; reset() starts again from the initial weights (a fresh trainer)."""
    from sigmanet._plan import TrainConfig
    from sigmanet.backends import get_backend
    from sigmanet.network import init_weights

    layers, rows, batch, dtype, loss, optimizer = case
    X, y = data(layers, rows, dtype)
    weights = init_weights(layers, np.dtype(dtype), 0, "glorot")
    biases = [np.zeros(n, dtype) for n in layers[1:]]
    backend = get_backend(engine)
    config = TrainConfig(
        learning_rate=rate(optimizer), reduction="mean", loss=loss, batch_size=batch, optimizer=optimizer
    )
    box = {}

    def reset():
        box["t"] = backend.trainer([w.copy() for w in weights], [b.copy() for b in biases], X, y, config)

    reset()
    box["t"].run(0, 2)
    return (lambda n: box["t"].run(0, n)), reset, getattr(box["t"], "engine", engine)


def jax_runner(case):
    import jax
    import jax.numpy as jnp

    layers, rows, batch, dtype, loss, optimizer = case
    if dtype == "float64":
        jax.config.update("jax_enable_x64", True)
    from sigmanet.network import init_weights

    X, y = data(layers, rows, dtype)
    Xj, yj = jnp.asarray(X, dtype), jnp.asarray(y, dtype)
    batch = rows if batch is None else batch
    nb, scale = rows // batch, 1.0 / batch
    W0 = tuple(jnp.asarray(w, dtype) for w in init_weights(layers, np.dtype(dtype), 0, "glorot"))
    B0 = tuple(jnp.zeros(n, dtype) for n in layers[1:])

    def step(i, state):
        W, B, M, V, t = state
        start = (i % nb) * batch
        xb = jax.lax.dynamic_slice(Xj, (start, 0), (batch, Xj.shape[1]))
        yb = jax.lax.dynamic_slice(yj, (start, 0), (batch, yj.shape[1]))
        a = [xb]
        for w, b in zip(W, B):
            a.append(jax.nn.sigmoid(a[-1] @ w + b))
        d = yb - a[-1]
        if loss == "mse":
            d = d * a[-1] * (1 - a[-1])
        deltas = [d]
        for k in range(len(W) - 1, 0, -1):
            d = (d @ W[k].T) * a[k] * (1 - a[k])
            deltas.insert(0, d)
        gW = tuple(-scale * (a[k].T @ deltas[k]) for k in range(len(W)))
        gB = tuple(-scale * deltas[k].sum(0) for k in range(len(W)))
        if optimizer == "adam":
            t = t + 1
            grads = gW + gB
            M = tuple(0.9 * m + 0.1 * g for m, g in zip(M, grads))
            V = tuple(0.999 * v + 0.001 * g * g for v, g in zip(V, grads))
            lr = rate(optimizer) * jnp.sqrt(1 - 0.999**t) / (1 - 0.9**t)
            upd = tuple(-lr * m / (jnp.sqrt(v) + 1e-8) for m, v in zip(M, V))
            W = tuple(w + u for w, u in zip(W, upd[: len(W)]))
            B = tuple(b + u for b, u in zip(B, upd[len(W) :]))
        else:
            W = tuple(w - 0.5 * g for w, g in zip(W, gW))
            B = tuple(b - 0.5 * g for b, g in zip(B, gB))
        return W, B, M, V, t

    @jax.jit
    def interval(state, n):
        with jax.default_matmul_precision("highest"):
            return jax.lax.fori_loop(0, n, step, state)

    zeros = tuple(jnp.zeros_like(p) for p in W0 + B0)
    box = {}

    def reset():
        box["s"] = (W0, B0, zeros, zeros, jnp.asarray(0.0, dtype))

    def run(n):
        box["s"] = interval(box["s"], n)
        jax.block_until_ready(box["s"])

    reset()
    run(2)
    return run, reset, f"jax {jax.__version__}"


def runner(engine, case):
    return jax_runner(case) if engine == "jax" else sigmanet_runner(engine, case)


def per_iteration(run, reset, rounds, budget=0.05, quiet=False):
    """Best seconds per iteration over ``rounds`` runs of about ``budget`` seconds each, each from the
    initial weights (a run that drifted into saturated units would time denormal arithmetic instead).
    ``quiet``: first wait 0.2 s, so another engine's spinning BLAS or XLA workers go to sleep, then
    run a warm-up (the wait lets the core's clock drop)."""
    if quiet:
        time.sleep(0.2)
    reset()
    t0 = time.perf_counter()
    run(2)
    per = max((time.perf_counter() - t0) / 2, 1e-8)
    n = max(2, int(budget / per))
    best = float("inf")
    if quiet:
        reset()
        run(max(2, n // 4))
    for _ in range(rounds):
        reset()
        t0 = time.perf_counter()
        run(n)
        best = min(best, (time.perf_counter() - t0) / n)
    return best


def together(names, rounds):
    out = {}
    for name in names:
        runs = {}
        for engine in ENGINES:
            try:
                runs[engine] = runner(engine, CASES[name])
            except ImportError:
                continue
        best = {e: float("inf") for e in runs}
        for _ in range(rounds):  # interleaved: every engine sees the same machine
            for engine, (run, reset, _) in runs.items():
                best[engine] = min(best[engine], per_iteration(run, reset, 1, quiet=True))
        out[name] = {e: {"seconds": best[e], "label": runs[e][2]} for e in runs}
        print(json.dumps({"together": name, **{e: float(f"{v['seconds'] * 1e6:.4g}") for e, v in out[name].items()}}))
    return out


def alone(names, rounds):
    out = {name: {} for name in names}
    for name in names:
        for engine in ENGINES:
            here = os.path.dirname(os.path.abspath(__file__))
            code = (
                f"import json, sys; sys.path.insert(0, {here!r}); import numba_vs_jax as b; "
                f"run, reset, label = b.runner({engine!r}, b.CASES[{name!r}]); "
                f"print(json.dumps({{'seconds': b.per_iteration(run, reset, {rounds}), 'label': label}}))"
            )
            proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
            if proc.returncode != 0:
                if "ModuleNotFoundError" in proc.stderr:
                    continue
                raise RuntimeError(proc.stderr)
            out[name][engine] = json.loads(proc.stdout.strip().splitlines()[-1])
        print(json.dumps({"alone": name, **{e: float(f"{v['seconds'] * 1e6:.4g}") for e, v in out[name].items()}}))
    return out


def ratio(r, other):
    """How many times faster numba ran than ``other`` in one way's figures."""
    return r[other]["seconds"] / r["numba"]["seconds"] if other in r else float("nan")


def machine():
    from sigmanet.bench import machine_info

    return machine_info()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="two cases, few rounds (a smoke run)")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--cases", help="comma-separated case names (default: all)")
    p.add_argument("--out", help="write the figures here as JSON")
    args = p.parse_args(argv)
    names = args.cases.split(",") if args.cases else (QUICK if args.quick else list(CASES))
    rounds = 2 if args.quick else args.rounds
    info = machine()
    blas = ", ".join(f"{b['internal_api']} {b['version']} {b['architecture']}" for b in info["blas"])
    print(f"# {info['cpu']}; {blas}")
    both = {"together": together(names, rounds), "alone": alone(names, rounds), "machine": info}
    print(f"\n{'case':40s} {'numba us':>9s} {'numpy us':>9s} {'jax us':>8s} {'vs jax':>12s} {'vs numpy':>12s}")
    for name in names:
        row = []
        for how in ("together", "alone"):
            r = both[how][name]
            row.append(r)
        t, a = row

        def ratio(r, other):
            return r[other]["seconds"] / r["numba"]["seconds"] if other in r else float("nan")

        print(
            f"{name:40s} {t['numba']['seconds'] * 1e6:9.4g} {t['numpy']['seconds'] * 1e6:9.4g} "
            f"{t.get('jax', {}).get('seconds', float('nan')) * 1e6:8.4g} "
            f"{ratio(t, 'jax'):5.2f}/{ratio(a, 'jax'):<5.2f}  {ratio(t, 'numpy'):5.2f}/{ratio(a, 'numpy'):<5.2f}"
            f"  ({t['numba']['label']})"
        )
    if args.out:
        with open(args.out, "w") as f:
            json.dump(both, f, indent=1)
    return both


if __name__ == "__main__":
    main()
