"""The ``sigmanet`` command line: demo, backends, bench, train, predict."""

from __future__ import annotations

import argparse
import sys
import time

from ._version import __version__


def _print_demo_output(out):
    print("Output After Training:")
    print(out)


def cmd_demo(args) -> int:
    import numpy as np

    from . import Network
    from .backends import resolve
    from .data import seed_table

    name = resolve(args.backend)
    X, y = seed_table(args.dtype)
    net = Network([3, 4, 1], backend=name, dtype=args.dtype, seed=1, init="legacy")
    # Warm-up on a throwaway copy: compiles (or loads cached) kernels, so the
    # timed run below measures training alone.
    t0 = time.perf_counter()
    Network([3, 4, 1], backend=name, dtype=args.dtype, seed=1, init="legacy").fit(X, y, iterations=2, report_every=1)
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    hist = net.fit(X, y, iterations=args.iterations, report_every=10000,
                   callback=lambda it, err: print(f"Error:{err}"))
    run_s = time.perf_counter() - t0
    _print_demo_output(net.predict(X))
    per_it = run_s / args.iterations * 1e6
    print(f"\nbackend: {name} ({net._backend.device()}), dtype {args.dtype}")
    print(f"trained {args.iterations} iterations in {run_s * 1e3:.1f} ms ({per_it:.3f} us/iteration); "
          f"compile/warm-up {compile_s * 1e3:.0f} ms, not included")
    return 0 if np.isfinite(hist.errors).all() else 1


def cmd_backends(args) -> int:
    from .backends import AUTO_ORDER, backend_status, get_backend, resolve

    status = backend_status()
    try:
        auto = resolve("auto")
    except Exception as e:  # noqa: BLE001 - reported, not raised
        auto = f"none ({e})"
    for name in AUTO_ORDER:
        reason = status[name]
        if reason is None:
            print(f"{name:6s} available    {get_backend(name).device()}")
        else:
            print(f"{name:6s} unavailable  {reason}")
    print(f"auto -> {auto}")
    return 0


def _csv_list(kind):
    def parse(text):
        try:
            return [kind(x) for x in text.split(",") if x.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list, got {text!r}") from None

    return parse


def cmd_bench(args) -> int:
    from . import bench
    from .backends import available_backends, resolve

    backends = [resolve(b) for b in args.backends] if args.backends else available_backends()
    sizes = args.sizes or (bench.QUICK_SIZES if args.quick else bench.DEFAULT_SIZES)
    if any(n < 1 for n in sizes):
        raise ValueError(f"--sizes must be positive row counts, got {sizes}")
    min_seconds = args.seconds or (0.15 if args.quick else 0.6)
    peers = [] if args.no_peers else list(bench.PEERS)
    print(f"benchmarking {backends} (peers: {peers or 'none'}) on {sizes} rows, {args.dtype}")
    print(bench.format_table([]).splitlines()[0])
    records = bench.run(backends, sizes, [args.dtype], peers=peers, min_seconds=min_seconds,
                        progress=print)
    if "numpy" in backends or len(backends) > 1:
        fastest = [b for b in backends if b != "numpy"][:1] or ["numpy"]
        seed = bench.seed_fit_speedup(fastest[0], repeats=1 if args.quick else 3)
        print("\nseed run through Network.fit (60000 iterations, compile excluded): "
              + ", ".join(f"{k} {v * 1e6:.3f} us/iteration" for k, v in seed.items() if k != "speedup")
              + f"; {fastest[0]} is {seed['speedup']:.1f}x numpy")
    for path in bench.write_results(records, args.out):
        print(f"wrote {path}")
    return 0


# Defaults for training on a user's table. The seed's sum over examples with
# rate 1 diverges on hundreds of rows; a mean over the rows keeps the step's
# size independent of the table's length, and cross-entropy trains 0/1
# targets faster than the seed's squared error (no vanishing sigmoid slope at
# the output). See docs/tutorial.md.
TRAIN_DEFAULTS = dict(hidden=[16], iterations=2000, learning_rate=2.0, loss="bce", reduction="mean")


def cmd_train(args) -> int:
    import numpy as np

    from . import Network, load
    from .data import read_table

    X, y, input_names, target_names = read_table(args.data, args.target)
    if y is None:
        raise ValueError("--target is required: name the column(s) to predict")
    lo, hi = float(np.min(y)), float(np.max(y))
    if lo < 0 or hi > 1:
        raise ValueError(
            f"target column(s) {target_names} hold values in [{lo:g}, {hi:g}], but the network's sigmoid "
            "outputs lie in [0, 1]: rescale them to [0, 1] (e.g. (y - min) / (max - min)), or turn a class "
            "label into one 0/1 column per class")
    if args.resume:
        net = load(args.resume, backend=args.backend)
        if net.layers[0] != X.shape[1] or net.layers[-1] != y.shape[1]:
            raise ValueError(f"--resume model {args.resume!r} takes {net.layers[0]} inputs and gives "
                             f"{net.layers[-1]} outputs; this table has {X.shape[1]} and {y.shape[1]}")
        if net.input_names and net.input_names != input_names:
            raise ValueError(f"--resume model was trained on columns {net.input_names}, this table has {input_names}")
        if args.hidden and list(net.layers[1:-1]) != args.hidden:
            raise ValueError(f"--hidden {args.hidden} conflicts with the resumed model's {list(net.layers[1:-1])}")
        options = {**{k: TRAIN_DEFAULTS[k] for k in ("learning_rate", "loss", "reduction")}, **net.fit_options}
        options.pop("batch_size", None)
    else:
        hidden = args.hidden or TRAIN_DEFAULTS["hidden"]
        net = Network([X.shape[1], *hidden, y.shape[1]], backend=args.backend, dtype=args.dtype, seed=args.seed)
        net.set_input_range(X.min(axis=0), X.max(axis=0))
        net.input_names, net.target_names = input_names, target_names
        options = {k: TRAIN_DEFAULTS[k] for k in ("learning_rate", "loss", "reduction")}
    if args.learning_rate is not None:
        options["learning_rate"] = args.learning_rate
    iterations = args.iterations or TRAIN_DEFAULTS["iterations"]

    from tqdm.auto import tqdm

    show = not args.no_progress and sys.stderr.isatty()
    bar = tqdm(total=iterations, disable=not show, unit="it", desc="training")
    errors = []
    start = net.iteration
    try:
        train_in_timed_chunks(net, X, y, iterations, options, errors, bar)
    except KeyboardInterrupt:
        bar.close()
        if args.save:
            net.save(args.save)
            print(f"interrupted at iteration {net.iteration}: checkpoint saved to {args.save} "
                  f"(continue with --resume {args.save})", file=sys.stderr)
        else:
            print(f"interrupted at iteration {net.iteration}; nothing saved (use --save to keep checkpoints)",
                  file=sys.stderr)
        return 130
    finally:
        bar.close()
    out = net.predict(X)
    print(f"trained {net.iteration - start} iterations on {X.shape[0]} rows x {X.shape[1]} inputs "
          f"(network {list(net.layers)}, backend {net.backend}); iterations in total: {net.iteration}")
    print(f"training error (mean |y - output|): {float(np.mean(np.abs(y - out))):.6f}")
    acc = accuracy(y, out)
    if acc is not None:
        print(f"training accuracy: {acc:.4f}")
    if args.plot:
        write_error_plot(args.plot, errors)
        print(f"wrote {args.plot}")
    if args.save:
        net.save(args.save)
        print(f"saved {args.save}")
    return 0


def train_in_timed_chunks(net, X, y, iterations, options, errors, bar, target_seconds=0.25):
    """Fit in chunks of about ``target_seconds`` each, recording the error at each chunk's start.

    Chunks sized by time, not by count, keep the progress bar moving and bound
    what Ctrl-C can lose to a fraction of a second, on 4 rows or on millions.
    Fitting in chunks continues exactly (batches key on the global iteration).
    """
    done, chunk = 0, 1
    while done < iterations:
        n = min(chunk, iterations - done)
        t = time.perf_counter()
        hist = net.fit(X, y, iterations=n, report_every=n, **options)
        elapsed = time.perf_counter() - t
        errors.append((hist.iterations[0], hist.errors[0]))
        done += n
        bar.update(n)
        bar.set_postfix(error=f"{hist.errors[0]:.5f}", refresh=False)
        chunk = max(1, min(4 * chunk, int(n * target_seconds / max(elapsed, 1e-6))))


def accuracy(y, out):
    """Accuracy for 0/1 targets: argmax for one-hot rows, else each output thresholded at 0.5."""
    import numpy as np

    if not np.isin(y, (0, 1)).all():
        return None
    if y.shape[1] > 1 and (y.sum(axis=1) == 1).all():
        return float(np.mean(out.argmax(axis=1) == y.argmax(axis=1)))
    return float(np.mean((out > 0.5) == (y > 0.5)))


def write_error_plot(path, errors):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ValueError("--plot needs matplotlib: pip install 'sigmanet[bench]'") from None
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot([i for i, _ in errors], [e for _, e in errors])
    ax.set_xlabel("iteration")
    ax.set_ylabel("mean |y - output|")
    ax.set_yscale("log")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def cmd_predict(args) -> int:
    import csv

    import numpy as np

    from . import load
    from .data import read_table

    net = load(args.model, backend=args.backend)
    X, _, names, _ = read_table(args.data, None)
    if net.input_names and args.data.lower().endswith(".csv"):
        missing = [n for n in net.input_names if n not in names]
        if missing:
            raise ValueError(f"{args.data!r} lacks the model's input column(s) {missing}")
        X = X[:, [names.index(n) for n in net.input_names]]
    out = np.asarray(net.predict(X))
    header = net.target_names or [f"y{i}" for i in range(out.shape[1])]
    f = open(args.out, "w", newline="") if args.out else sys.stdout
    try:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows([[repr(float(v)) for v in row] for row in out])
    finally:
        if args.out:
            f.close()
    return 0


def _int_list(text):
    try:
        sizes = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected sizes such as 16 or 16,8, got {text!r}") from None
    if not sizes or any(n < 1 for n in sizes):
        raise argparse.ArgumentTypeError(f"hidden sizes must be positive, got {text!r}")
    return sizes


def _positive_float(text):
    v = float(text)
    if not v > 0 or v == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return v


def _positive_int(text):
    n = int(text)
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {n}")
    return n


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sigmanet", description="Train the seed's sigmoid network on NumPy, numba or CuPy.")
    p.add_argument("--version", action="version", version=f"sigmanet {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("demo", help="run the seed program on the fastest available backend")
    d.add_argument("--backend", default="auto")
    d.add_argument("--iterations", type=_positive_int, default=60000)
    d.add_argument("--dtype", default="float64", choices=["float64", "float32"])
    d.set_defaults(func=cmd_demo)

    b = sub.add_parser("backends", help="list backends, their status and devices")
    b.set_defaults(func=cmd_backends)

    be = sub.add_parser("bench", help="compare backends (and peers) on tables from 4 rows to millions")
    be.add_argument("--quick", action="store_true", help="3 sizes, short timings: under a minute")
    be.add_argument("--backends", type=_csv_list(str), help="comma-separated (default: every available one)")
    be.add_argument("--sizes", type=_csv_list(int), help="comma-separated row counts")
    be.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    be.add_argument("--no-peers", action="store_true", help="skip the seed loop, PyTorch and JAX")
    be.add_argument("--seconds", type=_positive_float, help="timing budget per cell (default 0.6; --quick 0.15)")
    be.add_argument("--out", default="bench-out", help="folder for results.json and throughput.png")
    be.set_defaults(func=cmd_bench)

    t = sub.add_parser("train", help="train on your own CSV, .npz or .npy table")
    t.add_argument("data", help="CSV with a header row; .npz holding X and y; or a 2-D .npy")
    t.add_argument("--target", type=_csv_list(str),
                   help="target column(s): names (CSV) or indices (.npy; negative ones as --target=-1)")
    t.add_argument("--hidden", type=_int_list, help="hidden layer sizes, e.g. 16 or 16,8 (default 16)")
    t.add_argument("--iterations", type=_positive_int, help=f"default {TRAIN_DEFAULTS['iterations']}")
    t.add_argument("--learning-rate", type=_positive_float, help=f"default {TRAIN_DEFAULTS['learning_rate']}")
    t.add_argument("--backend", default="auto")
    t.add_argument("--dtype", default="float64", choices=["float64", "float32"])
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--save", metavar="MODEL", help="write the model here (also on Ctrl-C)")
    t.add_argument("--resume", metavar="MODEL", help="continue training a saved model")
    t.add_argument("--plot", metavar="PNG", help="write the error curve")
    t.add_argument("--no-progress", action="store_true", help="no progress bar (also off when not a terminal)")
    t.set_defaults(func=cmd_train)

    pr = sub.add_parser("predict", help="predict with a saved model; writes CSV")
    pr.add_argument("model")
    pr.add_argument("data", help="CSV with a header row (the model's input columns), .npz with X, or .npy")
    pr.add_argument("--out", help="CSV to write (default: standard output)")
    pr.add_argument("--backend", default="auto")
    pr.set_defaults(func=cmd_predict)
    return p


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


if __name__ == "__main__":
    sys.exit(main())
