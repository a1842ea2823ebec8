"""The ``sigmanet`` command line: demo, backends, bench, train, predict.

Argument parsing and printing only: the work is the library's (Network, io,
bench). Errors a user can act on print one line and exit 2; a closed pipe
(``sigmanet predict ... | head``) exits quietly.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

from ._version import __version__


def _print_demo_output(out):
    print("Output After Training:")
    print(out)


def cmd_demo(args) -> int:
    import numpy as np

    from . import Network
    from .backends import resolve
    from .datasets import tutorial_table

    name = resolve(args.backend)
    X, y = tutorial_table(args.dtype)
    net = Network([3, 4, 1], backend=name, dtype=args.dtype, seed=1, init="legacy")
    # Warm-up on a throwaway copy: compiles (or loads cached) kernels, so the
    # timed run below measures training alone.
    t0 = time.perf_counter()
    Network([3, 4, 1], backend=name, dtype=args.dtype, seed=1, init="legacy").fit(X, y, iterations=2, report_every=1)
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    hist = net.fit(X, y, iterations=args.iterations, report_every=10000, callback=lambda it, err: print(f"Error:{err}"))
    run_s = time.perf_counter() - t0
    _print_demo_output(net.predict(X))
    per_it = run_s / args.iterations * 1e6
    print(f"\nbackend: {name} ({net.device}), dtype {args.dtype}")
    print(
        f"trained {args.iterations} iterations in {run_s * 1e3:.1f} ms ({per_it:.3f} us/iteration); "
        f"compile/warm-up {compile_s * 1e3:.0f} ms, not included"
    )
    return 0 if np.isfinite(hist.errors).all() else 1


def cmd_backends(args) -> int:
    from .backends import backend_status, get_backend, resolve

    try:
        auto = resolve("auto")
    except Exception as e:
        auto = f"none ({e})"
    for name, reason in backend_status().items():
        if reason is None:
            print(f"{name:6s} available    {get_backend(name).device()}")
        else:
            print(f"{name:6s} unavailable  {reason}")
    print(f"auto -> {auto}")
    return 0


def cmd_bench(args) -> int:
    from . import bench
    from .backends import available_backends, resolve

    backends = [resolve(b) for b in args.backends] if args.backends else available_backends()
    sizes = args.sizes or (bench.QUICK_SIZES if args.quick else bench.DEFAULT_SIZES)
    min_seconds = args.seconds or (0.15 if args.quick else 0.6)
    peers = [] if args.no_peers else (args.peers or list(bench.PEERS))
    usable, skipped = bench.usable_peers(peers)
    for peer, why in skipped.items():
        print(f"skipping peer {peer}: {why}")
    chart_problem = bench.chart_unavailable()
    if chart_problem:
        print(f"skipping throughput.png: {chart_problem}")
    layers_note = "-".join(map(str, args.layers)) if args.layers else "3-4-1 at 4 rows, 64-256-16 above"
    print(f"benchmarking {backends} (peers: {usable or 'none'}) on {sizes} rows, {args.dtype}, layers {layers_note}")
    print(bench.format_table([]).splitlines()[0])
    records = bench.run(
        backends,
        sizes,
        [args.dtype],
        peers=usable,
        min_seconds=min_seconds,
        progress=print,
        layers=args.layers,
        batch_size=args.batch_size,
        loss=args.loss,
    )
    if args.dask:
        for rows in sizes:
            rec = bench.bench_dask(rows, args.dtype, layers=args.layers, min_seconds=min_seconds)
            records.append(rec)
            memory = next((r for r in records if r.backend == "numba" and r.rows == rows), None)
            ratio = (
                f", {rec.seconds_per_iteration / memory.seconds_per_iteration:.2f}x in-memory numba" if memory else ""
            )
            print(
                f"{bench.format_table([rec]).splitlines()[-1]}\n    dask: {rec.seconds_per_iteration * 1e3:.1f} "
                f"ms/iteration{ratio}; scheduling overhead {(rec.dask_overhead_seconds or 0) * 1e3:.1f} ms/iteration"
            )
    if backends:
        fastest = [b for b in backends if b != "numpy"][:1] or ["numpy"]
        tutorial = bench.tutorial_fit_speedup(fastest[0], repeats=1 if args.quick else 3)
        print(
            "\nthe tutorial's run through Network.fit (60000 iterations, compile excluded): "
            + ", ".join(f"{k} {v * 1e6:.3f} us/iteration" for k, v in tutorial.items() if k != "speedup")
            + f"; {fastest[0]} is {tutorial['speedup']:.1f}x numpy"
        )
    for path in bench.write_results(records, args.out):
        print(f"wrote {path}")
    return 0


# Defaults for training on a user's table. The seed's sum over examples with
# rate 1 diverges on hundreds of rows; a mean over the rows keeps the step's
# size independent of the table's length, and cross-entropy trains 0/1
# targets faster than the seed's squared error (no vanishing sigmoid slope at
# the output). See docs/tutorial.md.
TRAIN_DEFAULTS: dict[str, Any] = dict(hidden=[16], iterations=2000, learning_rate=2.0, loss="bce", reduction="mean")


def cmd_train(args) -> int:

    if args.patience is not None and not args.validation_fraction:
        raise ValueError("--patience needs --validation-fraction: early stopping watches the held-out error")
    if args.plot:
        _matplotlib()  # before any work: a missing plotter must not cost the training
    with _dask_client(args):
        return _train(args)


def _train(args) -> int:
    import numpy as np

    X, y, input_names, target_names = _training_table(args)
    rng = np.random.default_rng(args.seed)
    X, y, X_held, y_held = _hold_out(X, y, args.validation_fraction, rng)
    net, options = _network_for(args, X, y, input_names, target_names)
    iterations = args.iterations or TRAIN_DEFAULTS["iterations"]
    start = net.iteration
    try:
        curve, best = _fit_with_progress(net, X, y, X_held, y_held, iterations, options, args)
    except KeyboardInterrupt:
        if args.save:
            net.save(args.save)
            print(
                f"interrupted at iteration {net.iteration}: checkpoint saved to {args.save} "
                f"(continue with --resume {args.save})",
                file=sys.stderr,
            )
        else:
            print(
                f"interrupted at iteration {net.iteration}; nothing saved (use --save to keep checkpoints)",
                file=sys.stderr,
            )
        return 130
    if best is not None:
        net.set_weights(*best)
    print(
        f"trained {net.iteration - start} iterations on {X.shape[0]} rows x {X.shape[1]} inputs "
        f"(network {list(net.layers)}, backend {net.backend}); iterations in total: {net.iteration}"
    )
    _print_scores("training", y, net.predict(X))
    if X_held is not None:
        _print_scores("held-out", y_held, net.predict(X_held))
    if args.save:  # the model first: nothing after it can lose it
        net.save(args.save)
        print(f"saved {args.save}")
    if args.plot:
        write_error_plot(
            args.plot, curve, title=f"sigmanet train {os.path.basename(args.data)}: network {list(net.layers)}"
        )
        print(f"wrote {args.plot}")
    return 0


def _is_dask_table(args) -> bool:
    """A glob of files, or a scheduler: read lazily with dask.dataframe (never loaded whole)."""
    return bool(args.scheduler) or any(ch in args.data for ch in "*?[")


def _dask_client(args):
    """A distributed Client for --scheduler, in scope while training; else nothing."""
    import contextlib

    if not args.scheduler:
        return contextlib.nullcontext()
    try:
        from distributed import Client
    except ImportError:
        raise ValueError("--scheduler needs Dask: pip install 'sigmanet[dask]'") from None
    return Client(args.scheduler)


def _dask_table(args):
    """(X, y, input names, target names) as row-chunked Dask arrays, read lazily from CSV or Parquet files."""
    try:
        import dask.dataframe as dd
    except ImportError:
        raise ValueError(f"reading {args.data!r} lazily needs Dask: pip install 'sigmanet[dask]'") from None
    from .io import _split

    if args.validation_fraction:
        raise ValueError("--validation-fraction is not supported on Dask tables yet: hold out files instead")
    lower = args.data.lower()
    reader = dd.read_parquet if lower.endswith((".parquet", ".pq")) or lower.endswith("/") else dd.read_csv
    frame = reader(args.data)
    names = [str(c).strip() for c in frame.columns]
    frame.columns = names
    columns = _Columns(frame, names)
    X, y, input_names, target_names = _split(
        columns, names, args.data, args.target, args.inputs, args.exclude, by_index=False
    )
    return X, y, input_names, target_names


class _Columns:
    """A Dask dataframe indexed like a 2-D table by io._split: ``table[:, [columns]]`` gives a Dask array."""

    def __init__(self, frame, names):
        self.frame, self.names = frame, names

    def __getitem__(self, key):
        _, cols = key
        picked = list(range(len(self.names)))[cols] if isinstance(cols, slice) else list(cols)
        return self.frame[[self.names[i] for i in picked]].to_dask_array(lengths=True).astype("float64")


def _training_table(args):
    import numpy as np

    from .io import read_table

    if _is_dask_table(args):
        X, y, input_names, target_names = _dask_table(args)
    else:
        X, y, input_names, target_names = read_table(args.data, args.target, args.inputs, args.exclude)
    if y is None:
        raise ValueError("--target is required: name the column(s) to predict")
    lo, hi = float(np.min(y)), float(np.max(y))
    if lo < 0 or hi > 1:
        raise ValueError(
            f"target column(s) {target_names} hold values in [{lo:g}, {hi:g}], but the network's sigmoid "
            "outputs lie in [0, 1]: rescale them to [0, 1] (e.g. (y - min) / (max - min)), or turn a class "
            "label into one 0/1 column per class"
        )
    return X, y, input_names, target_names


def _hold_out(X, y, fraction, rng):
    """(X, y, X_held, y_held): a random ``fraction`` of the rows held out (None, None for 0)."""
    if not fraction:
        return X, y, None, None
    n_held = int(round(fraction * len(X)))
    if n_held < 1 or n_held >= len(X):
        raise ValueError(
            f"--validation-fraction {fraction} of {len(X)} rows leaves no rows to train on or none to hold out"
        )
    order = rng.permutation(len(X))
    held, kept = order[:n_held], order[n_held:]
    return X[kept], y[kept], X[held], y[held]


def _network_for(args, X, y, input_names, target_names):
    """The network to train (new, or resumed from --resume) and the fit's options."""
    from . import Network, load

    options = {k: TRAIN_DEFAULTS[k] for k in ("learning_rate", "loss", "reduction")}
    if args.resume:
        net = load(args.resume, backend=args.backend)
        if net.layers[0] != X.shape[1] or net.layers[-1] != y.shape[1]:
            raise ValueError(
                f"--resume model {args.resume!r} takes {net.layers[0]} inputs and gives "
                f"{net.layers[-1]} outputs; this table has {X.shape[1]} and {y.shape[1]}"
            )
        if net.input_names and net.input_names != input_names:
            raise ValueError(f"--resume model was trained on columns {net.input_names}, this table has {input_names}")
        if args.hidden and list(net.layers[1:-1]) != args.hidden:
            raise ValueError(f"--hidden {args.hidden} conflicts with the resumed model's {list(net.layers[1:-1])}")
        options.update({k: v for k, v in net.fit_options.items() if k in options})
    else:
        hidden = args.hidden or TRAIN_DEFAULTS["hidden"]
        net = Network([X.shape[1], *hidden, y.shape[1]], backend=args.backend, dtype=args.dtype, seed=args.seed)
        net.input_names, net.target_names = input_names, target_names
        options["scale_inputs"] = True  # each input column to [0, 1] by its range, stored with the model
    if args.learning_rate is not None:
        options["learning_rate"] = args.learning_rate
    return net, options


def _fit_with_progress(net, X, y, X_held, y_held, iterations, options, args):
    """One ``fit`` for the whole run, with a progress bar.

    Without held-out rows, report intervals are sized to ~0.25 s, so the bar
    moves and Ctrl-C loses little. With them, the held-out error is measured
    every ``--check-every`` iterations, and ``--patience`` checks without an
    improvement of more than ``--tol`` stop the fit. Returns the curves {"training rows": [(iteration,
    error)], "held-out rows": [...]}, each ending at the last iteration, and
    the best held-out (weights, biases) when early stopping is on, else None.
    """
    import warnings

    from tqdm.auto import tqdm

    show = not args.no_progress and sys.stderr.isatty()
    validating = X_held is not None
    curve: dict[str, list[tuple[int, Any]]] = {"training rows": []}
    if validating:
        curve["held-out rows"] = []
    best: dict[str, Any] = {"error": float("inf"), "params": None, "since": 0}
    with tqdm(total=iterations, disable=not show, unit="it", desc="training") as bar:
        done = [0]

        def progress(n_done):
            bar.update(n_done - done[0])
            done[0] = n_done

        def callback(iteration, error):
            curve["training rows"].append((iteration, error))  # error before the interval's first update
            held = net.error(X_held, y_held) if validating else None
            if validating:
                curve["held-out rows"].append((net.iteration, held))  # after the interval
            bar.set_postfix(error=f"{error:.5f}", **({"held_out": f"{held:.5f}"} if validating else {}), refresh=False)
            if not validating or args.patience is None:
                return True
            if held < best["error"] - args.tol:
                best.update(error=held, params=(net.weights, net.biases), since=0)
            else:
                best["since"] += 1
            return best["since"] < args.patience

        every = args.check_every or max(1, iterations // 100)
        timing = {} if validating else {"report_seconds": 0.25}
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", RuntimeWarning)
            net.fit(
                X,
                y,
                iterations=iterations,
                report_every=every if validating else iterations,
                progress=progress,
                callback=callback,
                **timing,
                **options,
            )
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    curve["training rows"].append((net.iteration, net.error(X, y)))
    if validating and curve["held-out rows"][-1][0] != net.iteration:
        curve["held-out rows"].append((net.iteration, net.error(X_held, y_held)))
    return curve, (best["params"] if args.patience is not None and validating else None)


def _print_scores(label, y, out):
    import numpy as np

    print(f"{label} error (mean |y - output|): {float(np.mean(np.abs(y - out))):.6f}")
    acc = accuracy(y, out)
    if acc is not None:
        print(f"{label} accuracy: {acc:.4f}")


def accuracy(y, out):
    """Accuracy for 0/1 targets: argmax for one-hot rows, else each output thresholded at 0.5."""
    import numpy as np

    if not np.isin(y, (0, 1)).all():
        return None
    if y.shape[1] > 1 and (y.sum(axis=1) == 1).all():
        return float(np.mean(out.argmax(axis=1) == y.argmax(axis=1)))
    return float(np.mean((out > 0.5) == (y > 0.5)))


def _matplotlib():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ValueError("--plot needs matplotlib: pip install 'sigmanet[bench]'") from None
    return plt


def write_error_plot(path, curves, title="sigmanet training"):
    """Each curve {label: [(iteration, error)]} against the iteration, on a log scale."""
    plt = _matplotlib()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for label, points in curves.items():
        ax.plot([i for i, _ in points], [e for _, e in points], marker=".", label=label)
    ax.set_xlabel("iteration")
    ax.set_ylabel("mean |y - output|")
    ax.set_yscale("log")
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def predicted_classes(out, target_names):
    """(column name, classes) for a classifier's outputs: argmax over one-hot outputs, else out > 0.5."""
    import numpy as np

    if out.shape[1] > 1:
        names = target_names or [str(i) for i in range(out.shape[1])]
        return "class", [names[i] for i in out.argmax(axis=1)]
    return "class", (out[:, 0] > 0.5).astype(np.int64).tolist()


def cmd_predict(args) -> int:
    import csv

    import numpy as np

    from . import load
    from .io import read_table

    net = load(args.model, backend=args.backend)
    X, _, names, _ = read_table(args.data, None)
    if net.input_names and args.data.lower().endswith(".csv"):
        missing = [n for n in net.input_names if n not in names]
        if missing:
            raise ValueError(f"{args.data!r} lacks the model's input column(s) {missing}")
        X = X[:, [names.index(n) for n in net.input_names]]
    out = np.asarray(net.predict(X))
    header = net.target_names or [f"y{i}" for i in range(out.shape[1])]
    label, classes = predicted_classes(out, net.target_names)
    if args.probabilities_only:
        rows = ([repr(float(v)) for v in row] for row in out)
    else:
        header = [*header, label]
        rows = ([*(repr(float(v)) for v in row), c] for row, c in zip(out, classes))
    f = open(args.out, "w", newline="") if args.out else sys.stdout
    try:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    finally:
        if args.out:
            f.close()
    return 0


# -- argument types: each names what it wants in argparse's message --


def _csv_list(kind, what):
    def parse(text):
        try:
            return [kind(x.strip()) for x in text.split(",") if x.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None

    return parse


def _int_list(text):
    sizes = _csv_list(int, "sizes such as 16 or 16,8")(text)
    if not sizes or any(n < 1 for n in sizes):
        raise argparse.ArgumentTypeError(f"sizes must be positive whole numbers, got {text!r}")
    return sizes


def _number(text, ok, what):
    """``text`` as a float for which ``ok`` holds, else argparse's error saying ``what`` was expected."""
    try:
        v = float(text)
    except ValueError:
        v = float("nan")
    if not ok(v):
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
    return v


def _positive_float(text):
    return _number(text, lambda v: 0 < v < float("inf"), "a positive number")


def _fraction(text):
    return _number(text, lambda v: 0 <= v < 1, "a fraction in [0, 1)")


def _positive_int(text):
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, got {text!r}")
    return n


class _Append(argparse.Action):
    """Repeatable list option: ``--target a --target b`` and ``--target a,b`` both give [a, b]."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, (getattr(namespace, self.dest) or []) + list(values))


def build_parser() -> argparse.ArgumentParser:
    from .backends import registered_backends

    backend_help = (
        f"one of {', '.join(registered_backends())}, or auto (the fastest usable here; "
        "$SIGMANET_BACKEND sets it); 'sigmanet backends' lists what runs here"
    )
    backend_choices = ["auto", *registered_backends()]
    parser = argparse.ArgumentParser(
        prog="sigmanet", description="Train the seed's sigmoid network on NumPy, numba or CuPy."
    )
    parser.add_argument("--version", action="version", version=f"sigmanet {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser(
        "demo",
        help="run the tutorial's program on the fastest available backend",
        description="Train the tutorial's 3-4-1 network on its 4-row XOR table (seed 1, the "
        "legacy draw) and print what the tutorial printed, with the time it took.",
    )
    demo.add_argument("--backend", default="auto", choices=backend_choices, help=backend_help)
    demo.add_argument("--iterations", type=_positive_int, default=60000, help="iterations to train (default 60000)")
    demo.add_argument("--dtype", default="float64", choices=["float64", "float32"], help="default float64")
    demo.set_defaults(func=cmd_demo)

    backends = sub.add_parser(
        "backends",
        help="list backends, their status and devices",
        description="Every backend sigmanet knows, whether it runs here (and why not), "
        "its device, and what 'auto' picks.",
    )
    backends.set_defaults(func=cmd_backends)

    bench = sub.add_parser(
        "bench",
        help="compare backends (and peers) on tables from 4 rows to millions",
        description="Time training iterations per backend and size, beside the iteration's "
        "bare GEMMs; peers (the seed loop, PyTorch, JAX) run the same network "
        "where installed (pip install 'sigmanet[peers]'). Writes results.json "
        "and, with matplotlib (pip install 'sigmanet[bench]'), throughput.png.",
    )
    bench.add_argument("--quick", action="store_true", help="3 sizes, short timings: under a minute")
    bench.add_argument(
        "--backends",
        type=_csv_list(str, "backend names"),
        help=f"comma-separated, from {', '.join(registered_backends())} (default: every usable one)",
    )
    bench.add_argument("--sizes", type=_int_list, help="comma-separated row counts (default 4 to 1M)")
    bench.add_argument(
        "--layers", type=_int_list, help="layer sizes such as 784,128,10 (default: 3,4,1 at 4 rows, 64,256,16 above)"
    )
    bench.add_argument("--dtype", default="float32", choices=["float32", "float64"], help="default float32")
    bench.add_argument(
        "--batch-size", type=_positive_int, help="time mini-batch steps of this many rows (default: full batch)"
    )
    bench.add_argument("--loss", default="mse", choices=["mse", "bce"], help="default mse (the seed's)")
    bench.add_argument(
        "--peers",
        type=_csv_list(str, "peer names"),
        help="comma-separated, from seed-loop, torch, torch-graph, jax (default: all that run here)",
    )
    bench.add_argument("--no-peers", action="store_true", help="skip the seed loop, PyTorch and JAX")
    bench.add_argument(
        "--dask",
        action="store_true",
        help="also time an iteration on a local Dask cluster (2 workers x 1 thread) beside the in-memory numba "
        "one, with the scheduling overhead per iteration (pip install 'sigmanet[dask]')",
    )
    bench.add_argument("--seconds", type=_positive_float, help="timing budget per cell (default 0.6; --quick 0.15)")
    bench.add_argument("--out", default="bench-out", help="folder for results.json and throughput.png")
    bench.set_defaults(func=cmd_bench)

    train = sub.add_parser(
        "train",
        help="train on your own CSV, .npz or .npy table",
        description="Train on a table. Inputs are scaled to [0, 1] by their range, which is "
        "saved with the model; targets must lie in [0, 1] (one 0/1 column per "
        "class). Defaults: one hidden layer of 16, cross-entropy, mean steps, "
        "rate 2, 2000 iterations.",
    )
    train.add_argument(
        "data",
        help="CSV with a header row; Parquet; .npz holding X and y; a 2-D .npy; or a glob of CSV or Parquet "
        "files (read lazily with Dask)",
    )
    train.add_argument(
        "--target",
        action=_Append,
        type=_csv_list(str, "column names"),
        help="target column(s): names (CSV) or indices (.npy; negative ones as --target=-1); "
        "repeat it or give a comma-separated list",
    )
    train.add_argument(
        "--inputs",
        action=_Append,
        type=_csv_list(str, "column names"),
        help="input column(s) (default: every column that is not a target or excluded)",
    )
    train.add_argument(
        "--exclude",
        action=_Append,
        type=_csv_list(str, "column names"),
        help="column(s) to leave out, such as ids or leaks",
    )
    train.add_argument("--hidden", type=_int_list, help="hidden layer sizes, e.g. 16 or 16,8 (default 16)")
    train.add_argument("--iterations", type=_positive_int, help=f"default {TRAIN_DEFAULTS['iterations']}")
    train.add_argument("--learning-rate", type=_positive_float, help=f"default {TRAIN_DEFAULTS['learning_rate']}")
    train.add_argument(
        "--validation-fraction",
        type=_fraction,
        default=0.0,
        help="hold out this fraction of the rows (at random, by --seed) and report its error "
        "and accuracy (default 0: none)",
    )
    train.add_argument(
        "--patience",
        type=_positive_int,
        help="with --validation-fraction: stop after this many checks without a better held-out "
        "error, and keep the best weights",
    )
    train.add_argument(
        "--tol",
        type=_positive_float,
        default=1e-4,
        help="with --patience: the held-out error must fall by more than this to count as "
        "better (default 1e-4, as scikit-learn's)",
    )
    train.add_argument(
        "--check-every",
        type=_positive_int,
        help="with --validation-fraction: iterations between held-out checks (default 1%% of --iterations)",
    )
    train.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="train on this Dask cluster (e.g. tcp://host:8786), reading the table lazily with "
        "dask.dataframe where the workers can see the files; DATA may then be a glob such as "
        "'data/*.csv' or Parquet files (a glob alone trains on Dask's local scheduler; pip install 'sigmanet[dask]')",
    )
    train.add_argument("--backend", default="auto", choices=backend_choices, help=backend_help)
    train.add_argument("--dtype", default="float64", choices=["float64", "float32"], help="default float64")
    train.add_argument("--seed", type=int, default=0, help="seeds the initial weights and the held-out rows")
    train.add_argument("--save", metavar="MODEL", help="write the model here (also on Ctrl-C)")
    train.add_argument("--resume", metavar="MODEL", help="continue training a saved model")
    train.add_argument("--plot", metavar="PNG", help="write the error curve (needs matplotlib)")
    train.add_argument("--no-progress", action="store_true", help="no progress bar (also off when not a terminal)")
    train.set_defaults(func=cmd_train)

    predict = sub.add_parser(
        "predict",
        help="predict with a saved model; writes CSV",
        description="Write one row per input row: the output probabilities, then the "
        "predicted class (argmax for one-hot outputs, else output > 0.5).",
    )
    predict.add_argument("model", help="a model written by sigmanet train --save or Network.save")
    predict.add_argument("data", help="CSV with a header row (the model's input columns), .npz with X, or .npy")
    predict.add_argument("--out", help="CSV to write (default: standard output)")
    predict.add_argument("--probabilities-only", action="store_true", help="leave out the predicted class column")
    predict.add_argument("--backend", default="auto", choices=backend_choices, help=backend_help)
    predict.set_defaults(func=cmd_predict)
    return parser


def main(argv=None) -> int:
    from .errors import SigmanetError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (SigmanetError, ValueError, TypeError, FileNotFoundError) as e:
        print(f"sigmanet {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"sigmanet {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (``| head``): stop quietly, as Unix tools do. Point
        # stdout at /dev/null so the interpreter's final flush cannot complain.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
