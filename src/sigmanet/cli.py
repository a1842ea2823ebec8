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
    min_seconds = 0.15 if args.quick else 0.6
    peers = [] if args.no_peers else list(bench.PEERS)
    print(f"benchmarking {backends} (peers: {peers or 'none'}) on {sizes} rows, {args.dtype}")
    print(bench.format_table([]).splitlines()[0])
    records = bench.run(backends, sizes, [args.dtype], peers=peers, min_seconds=min_seconds,
                        progress=print)
    if "numpy" in backends or len(backends) > 1:
        fastest = [b for b in backends if b != "numpy"][:1] or ["numpy"]
        seed = bench.seed_fit_speedup(fastest[0], repeats=1 if args.quick else 3)
        print(f"\nseed run through Network.fit (60000 iterations, compile excluded): "
              + ", ".join(f"{k} {v * 1e6:.3f} us/iteration" for k, v in seed.items() if k != "speedup")
              + f"; {fastest[0]} is {seed['speedup']:.1f}x numpy")
    for path in bench.write_results(records, args.out):
        print(f"wrote {path}")
    return 0


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
    be.add_argument("--out", default="bench-out", help="folder for results.json and throughput.png")
    be.set_defaults(func=cmd_bench)
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
