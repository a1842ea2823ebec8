"""The ``sigmanet`` command line: demo, backends, bench, train, predict.

Argument parsing and printing only: the work is the library's (Network, io,
bench). Errors a user can act on print one line and exit 2; a closed pipe
(``sigmanet predict ... | head``) exits quietly.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import re
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
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

    def report(iteration, error):
        print(f"Error:{error}")

    # The seed prints l2, its last iteration's forward pass (before that iteration's update): train all
    # but the last iteration, keep that output, then take the last update (DESIGN.md, "The seed program").
    t0 = time.perf_counter()
    first = (
        net.fit(X, y, iterations=args.iterations - 1, report_every=10000, callback=report)
        if args.iterations > 1
        else None
    )
    run_s = time.perf_counter() - t0
    l2 = net.predict(X)
    t0 = time.perf_counter()
    last_is_reported = (args.iterations - 1) % 10000 == 0  # the seed reports iterations 0, 10000, ...
    last = net.fit(X, y, iterations=1, report_every=1, callback=report if last_is_reported else None)
    last_s = time.perf_counter() - t0
    _print_demo_output(l2)
    print(f"\nbackend: {name} ({net.device}), dtype {args.dtype}")
    if first is not None:  # the rate of the long fit; the last iteration's fit is mostly a fit's fixed cost
        per_it = run_s / (args.iterations - 1) * 1e6
        print(
            f"trained {args.iterations} iterations in {(run_s + last_s) * 1e3:.1f} ms: {per_it:.3f} us/iteration over "
            f"the first {args.iterations - 1}, and {last_s * 1e3:.1f} ms for the last, a fit of its own so the seed's "
            f"l2 can be printed; compile/warm-up {compile_s * 1e3:.0f} ms, not included"
        )
    else:
        print(f"trained 1 iteration in {last_s * 1e3:.1f} ms; compile/warm-up {compile_s * 1e3:.0f} ms, not included")
    errors = [*(first.errors if first is not None else []), *last.errors]
    return 0 if np.isfinite(errors).all() and np.isfinite(l2).all() else 1


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

    out = "bench-out" if args.out is None else args.out
    _check_output("--out", out, folder=True)  # before the benchmark: its results must have somewhere to go
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
    if args.out is None:
        print(f"writing results.json and throughput.png to {os.path.abspath(out)} (--out chooses the folder)")
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
        optimizer=args.optimizer,
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
    _tutorial_comparison(args, backends)
    for path in bench.write_results(records, out):
        print(f"wrote {path}")
    return 0


def _tutorial_comparison(args, backends) -> None:
    """The tutorial's 3-4-1 run through Network.fit on the fastest backend against NumPy, where it says
    something: another backend than NumPy was timed, and the layers asked for are the tutorial's."""
    from . import bench

    others = [b for b in backends if b != "numpy"]
    if args.layers and list(args.layers) != list(bench.TUTORIAL_LAYERS):
        layers = "-".join(map(str, args.layers))
        print(f"\nskipping the tutorial's comparison: it trains the 3-4-1 network, not --layers {layers}")
        return
    if not others:
        print("\nskipping the tutorial's comparison: it compares a backend with numpy, and only numpy was timed")
        return
    tutorial = bench.tutorial_fit_speedup(others[0], repeats=1 if args.quick else 3)
    print(
        "\nthe tutorial's run through Network.fit (60000 iterations, compile excluded): "
        + ", ".join(f"{k} {v * 1e6:.3f} us/iteration" for k, v in tutorial.items() if k != "speedup")
        + f"; {others[0]} is {tutorial['speedup']:.1f}x numpy"
    )


# Defaults for training on a user's table. The seed's sum over examples with rate 1 diverges on
# hundreds of rows; a mean over the rows keeps the step's size independent of the table's length.
# Each output layer trains with its own loss: cross-entropy for 0/1 targets (sigmoid) and for
# classes (softmax), which has no vanishing slope at the output, and squared error for values
# (identity). A regression trains on its targets standardised (each column's mean and deviation,
# folded back into the output layer of every model file written), where rate 0.5 is stable and
# 2 is not. Biases: a user's table has no constant column to stand in for them. See docs/tutorial.md.
TRAIN_DEFAULTS: dict[str, Any] = dict(
    hidden=[16],
    iterations=2000,
    learning_rate={"sigmoid": 2.0, "softmax": 2.0, "identity": 0.5},
    loss={"sigmoid": "bce", "softmax": "cross_entropy", "identity": "mse"},
    reduction="mean",
    bias=True,
)
# A single target column of whole numbers with more distinct values than this is a regression
# target by default (ages, counts, years); --task classification makes classes of them.
MAX_AUTO_CLASSES = 20
# The options `sigmanet train` passes to Network.fit under the same names, only when given: a
# resumed model otherwise goes on with the options it was trained with.
FIT_OPTIONS = (
    "learning_rate",
    "loss",
    "reduction",
    "batch_size",
    "shuffle",
    "optimizer",
    "momentum",
    "beta_1",
    "beta_2",
    "epsilon",
    "alpha",
    "schedule",
    "power_t",
    "tol",
    "n_iter_no_change",
    "class_weight",
)
# StuckWarning's causes, in the command line's terms: the CLI already scales the inputs to [0, 1]
# and takes mean steps, so the library's own advice (scale_inputs, reduction) does not apply.
STUCK_ADVICE = {
    "saturated": "training is stuck: the sigmoid units of a hidden layer are saturated (their outputs pinned "
    "at 0 or 1), so almost nothing flows back through them. The inputs are already scaled to [0, 1] and "
    "each step is already a mean over the rows: try a much smaller --learning-rate (it was {lr:g}), or "
    "--optimizer adam --learning-rate 0.01",
    "frozen": "training is stuck: the error did not move across the reports (it stayed at {error}). Try a "
    "smaller --learning-rate (it was {lr:g}), or a larger one if it is tiny, or --optimizer adam",
}


class _Stop(KeyboardInterrupt):
    """SIGINT, SIGTERM or SIGHUP during ``sigmanet train``, raised where the program is, as Ctrl-C raises
    KeyboardInterrupt: a fit stops at its last completed piece of training, consistent."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class _StopSignals:
    """SIGINT, SIGTERM and SIGHUP raise :class:`_Stop` while ``sigmanet train`` runs, and wait while a
    model file is written (:meth:`hold`, :meth:`deferred`); the previous handlers come back after.

    Only the first signal raises; later ones (during the save that follows it) are ignored. Installed
    from the main thread only, where Python runs signal handlers; elsewhere nothing changes.
    """

    NAMES = ("SIGINT", "SIGTERM", "SIGHUP")

    def __init__(self) -> None:
        self.previous: dict[int, Any] = {}
        self.stopping: int | None = None  # the signal of the stop under way
        self.pending: int | None = None  # one that came during a hold
        self.held = 0

    def __enter__(self) -> _StopSignals:
        if threading.current_thread() is threading.main_thread():
            for name in self.NAMES:
                signum = getattr(signal, name, None)
                if signum is not None:
                    self.previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)
        self.previous = {}

    def _handle(self, signum, frame) -> None:
        if self.held or self.stopping is not None:
            if self.stopping is None and self.pending is None:
                self.pending = signum
            return
        self.stopping = signum
        raise _Stop(signum)

    def hold(self) -> None:
        self.held += 1

    def release(self) -> None:
        """End a hold; a signal that came during it is raised now."""
        self.held -= 1
        if not self.held and self.pending is not None and self.stopping is None:
            self.stopping, self.pending = self.pending, None
            raise _Stop(self.stopping)

    @contextlib.contextmanager
    def deferred(self):
        self.hold()
        try:
            yield
        except BaseException:
            self.held -= 1
            raise
        self.release()

    @property
    def seen(self) -> int | None:
        """The signal that stopped or is to stop the run, if any."""
        return self.stopping if self.stopping is not None else self.pending


@dataclass
class _Run:
    """One ``sigmanet train``: the options, the signals, and how the network's training state becomes
    a model file (:meth:`file_state`).

    On the in-memory path the CLI owns its input array and scales it in place: the network trains
    without an input range, and ``input_range`` goes into every file. A regression trains on
    standardised targets: ``target_scale`` and ``target_shift`` are folded into the output layer of
    every file, so a saved model predicts in the targets' own units.
    """

    args: argparse.Namespace
    guard: _StopSignals
    resumed: Any = None
    input_range: tuple[Any, Any] | None = None
    target_scale: Any = None
    target_shift: Any = None
    classes: list[str] | None = None
    task: str = ""  # what the targets are, for the summary line
    lazy: bool = False  # a Dask table: the network scales its inputs itself, lazily (fit(scale_inputs=True))
    options: dict[str, Any] = field(default_factory=dict)  # what fit was given
    patience: Any = None
    next_checkpoint: float = math.inf

    def file_state(self, state: dict[str, Any]) -> dict[str, Any]:
        state = dict(state)
        if self.input_range is not None:
            state["input_range"] = self.input_range
        if self.target_scale is not None:
            state["weights"], state["biases"] = _fold(
                state["weights"], state["biases"], self.target_scale, self.target_shift
            )
        return state

    def kept_state(self, net) -> dict[str, Any]:
        """The model the run keeps, as a file holds it: the best check's with --patience, else the last."""
        best = self.patience.best_state if self.patience is not None else None
        return self.file_state(best if best is not None else net.get_state())


def _fold(weights, biases, scale, shift):
    """The output layer of a model of standardised targets z, made to give y = z * scale + shift."""
    weights = list(weights)
    weights[-1] = (weights[-1] * scale).astype(weights[-1].dtype)
    if biases is not None:
        biases = list(biases)
        biases[-1] = (biases[-1] * scale + shift).astype(biases[-1].dtype)
    return weights, biases


def _unfold(weights, biases, scale, shift):
    """The inverse of :func:`_fold`: a model of y made to give z = (y - shift) / scale."""
    weights = list(weights)
    weights[-1] = (weights[-1] / scale).astype(weights[-1].dtype)
    if biases is not None:
        biases = list(biases)
        biases[-1] = ((biases[-1] - shift) / scale).astype(biases[-1].dtype)
    return weights, biases


def cmd_train(args) -> int:
    if args.patience is not None and not args.validation_fraction:
        raise ValueError("--patience needs --validation-fraction: early stopping watches the held-out error")
    if args.class_weight and args.task == "regression":
        raise ValueError("--class-weight weighs classes; it cannot be used with --task regression")
    if args.checkpoint_every is not None and not args.save:
        raise ValueError("--checkpoint-every needs --save: the checkpoints are written there")
    if args.save:  # before any work: a model that cannot be saved must not cost the training
        from .checkpoint import check_writable

        check_writable(args.save)  # the model file's own rules (checkpoint.py); here only that it is no input
        _check_not_an_input("--save", args.save, [args.data])  # --resume's own file may be: that continues it
    if args.plot:
        _matplotlib()  # likewise a missing plotter, a plot path that cannot be written, or a format it lacks
        _check_output("--plot", args.plot, [args.data, args.resume], others=[("--save", args.save)])
        _check_plot_format(args.plot)
    with _StopSignals() as guard, _dask_client(args):
        return _train(_Run(args, guard))


def _train(run: _Run) -> int:
    import warnings

    from .errors import DivergenceError

    args = run.args
    run.resumed = _load_resumed(args)
    X, y, X_held, y_held, net = _prepare(run)
    start = net.iteration
    stop: BaseException | None = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        try:
            curve = _fit(run, net, X, y, X_held, y_held)
            run.guard.hold()  # from here until the model is saved, signals wait
        except (KeyboardInterrupt, DivergenceError) as e:
            run.guard.hold()
            stop, curve = e, {}
    state = run.kept_state(net)
    saved, problem = _save(state, args.save) if args.save else (None, None)
    if stop is not None or run.guard.seen is not None:
        return _report_stop(run, state, saved, problem, stop)
    run.guard.release()
    try:
        _report(run, net, state, start, caught, curve, X, y, X_held, y_held, saved, problem)
    except KeyboardInterrupt as e:
        where = f"; the model was saved to {saved}" if saved else ""
        print(f"sigmanet train: interrupted after training{where}", file=sys.stderr)
        return 128 + e.signum if isinstance(e, _Stop) else 130
    return 1 if problem else 0


def _load_resumed(args):
    """The --resume model, loaded and checked against the options before the table is read."""
    if not args.resume:
        return None
    from . import load

    net = load(args.resume, backend=args.backend)
    if args.hidden and list(net.layers[1:-1]) != args.hidden:
        raise ValueError(f"--hidden {args.hidden} conflicts with the resumed model's {list(net.layers[1:-1])}")
    if args.bias is not None and args.bias != net.bias:
        raise ValueError(
            f"--{'' if args.bias else 'no-'}bias conflicts with the resumed model, which has "
            f"{'' if net.bias else 'no '}biases"
        )
    if args.dtype is not None and args.dtype != net.dtype.name:
        raise ValueError(f"--dtype {args.dtype} conflicts with the resumed model's {net.dtype.name}")
    return net


def _prepare(run: _Run):
    """(X, y, X_held, y_held, network): the table read, its targets encoded, the held-out rows split
    off, the inputs scaled in place, and the network to train (new, or the resumed model)."""
    if _is_dask_table(run.args):
        return _prepare_dask(run)
    import numpy as np

    from . import Network
    from .io import read_columns
    from .training import split_rows

    args, resumed = run.args, run.resumed
    table = read_columns(args.data, args.target, args.inputs, args.exclude)
    if table.y is None:
        if args.data.lower().endswith(".npz"):
            raise ValueError(f"{args.data!r} holds no array named 'y' to train on (a .npz holds X and y)")
        raise ValueError("--target is required: name the column(s) to predict")
    if resumed is not None:
        if resumed.layers[0] != table.X.shape[1]:
            raise ValueError(
                f"--resume model {args.resume!r} takes {resumed.layers[0]} inputs; this table has {table.X.shape[1]}"
            )
        if resumed.input_names and resumed.input_names != table.input_names:
            raise ValueError(
                f"--resume model was trained on columns {resumed.input_names}, this table has {table.input_names}"
            )
    y, output, codes = _targets(run, table.y, table.target_names)
    X = table.X if _owned(table.X) else np.array(table.X, dtype=np.float64, order="C")
    input_names, target_names = table.input_names, run.classes or table.target_names
    del table  # X is the only reference to the parsed inputs: scaled in place below
    X_held = y_held = None
    if args.validation_fraction:
        single = output == "sigmoid" and y.shape[1] == 1
        labels = codes if codes is not None else (y[:, 0] if single else None)
        kept, held = split_rows(X.shape[0], args.validation_fraction, args.seed, labels)
        kept.sort()  # in place (a no-op for split_rows' sorted rows): _compact needs them in order
        X_held, y_held = X[held], y[held]
        X, y = _compact(X, kept), _compact(y, kept)
    if output == "identity":
        bias = resumed.bias if resumed is not None else args.bias is not False
        shift = y.mean(axis=0) if bias else np.zeros(y.shape[1])  # without biases nothing can carry a mean
        scale = np.sqrt(np.mean((y - shift) ** 2, axis=0))
        run.target_scale, run.target_shift = np.where(scale > 0, scale, 1.0), shift
        y = (y - run.target_shift) / run.target_scale
        if y_held is not None:
            y_held = (y_held - run.target_shift) / run.target_scale
    if resumed is not None:
        state = resumed.get_state()
        run.input_range, state["input_range"] = state["input_range"], None
        if run.target_scale is not None:
            state["weights"], state["biases"] = _unfold(
                state["weights"], state["biases"], run.target_scale, run.target_shift
            )
        net = Network.from_state(state, backend=resumed.backend, threads=resumed.threads)
    else:
        run.input_range = (X.min(axis=0), X.max(axis=0))  # each input column to [0, 1] by its range
        hidden = args.hidden or TRAIN_DEFAULTS["hidden"]
        net = Network(
            [X.shape[1], *hidden, y.shape[1]],
            backend=args.backend,
            dtype=args.dtype or "float64",
            seed=args.seed,
            bias=TRAIN_DEFAULTS["bias"] if args.bias is None else args.bias,
            output=output,
        )
        net.input_names, net.target_names = input_names, target_names
    if run.input_range is not None:
        X = _scale_in_place(X, run.input_range, net.dtype)
        if X_held is not None:
            X_held = _scale_in_place(X_held, run.input_range, net.dtype)
    y = np.ascontiguousarray(y, dtype=net.dtype)
    y_held = None if y_held is None else np.ascontiguousarray(y_held, dtype=net.dtype)
    return X, y, X_held, y_held, net


def _targets(run: _Run, values, names):
    """(y, output, class codes or None) for the target column(s), and the run's task and classes.

    Text, or (up to MAX_AUTO_CLASSES) whole numbers other than 0/1 in one column: classes, one-hot
    rows for a softmax output. 0/1 values: a sigmoid output (a class, or several labels). Other
    numbers: a regression, on an identity output. --task, or a resumed model's output, decides instead.
    """
    import numpy as np

    args, resumed = run.args, run.resumed
    text = values.ndim == 1
    task = args.task
    if resumed is not None:
        task = {"softmax": "classification", "identity": "regression", "sigmoid": "binary"}[resumed.output]
    elif task == "auto":
        if text:
            task = "classification"
        elif np.isin(values, (0, 1)).all():
            task = "binary"
        elif values.shape[1] == 1 and (values == np.round(values)).all():
            task = "classification" if np.unique(values).size <= MAX_AUTO_CLASSES else "regression"
        else:
            task = "regression"
    elif task == "classification" and not text and np.isin(values, (0, 1)).all():
        task = "binary"
    column = names[0] if len(names) == 1 else names
    if task in ("regression", "binary") and text:
        sample = ", ".join(repr(str(v)) for v in values[:3])
        what = "a regression" if task == "regression" else "the resumed model's 0/1 outputs"
        raise ValueError(f"target column {column!r} holds text ({sample}, ...), not numbers for {what}")
    if task == "classification":
        if not text and values.shape[1] != 1:
            raise ValueError(
                f"--task classification takes one target column of class labels, got {len(names)}: {names}"
            )
        distinct, inverse = np.unique(values if text else values[:, 0], return_inverse=True)
        found = [str(v) if text else _class_name(v) for v in distinct.tolist()]
        classes = list(resumed.target_names) if resumed is not None else sorted(found, key=_label_key)
        index = {c: i for i, c in enumerate(classes)}
        unknown = [c for c in found if c not in index]
        if unknown:
            raise ValueError(f"target column {column!r} holds classes the resumed model does not know: {unknown[:5]}")
        if len(classes) < 2:
            raise ValueError(f"target column {column!r} holds one class only ({classes[0]!r}): nothing to tell apart")
        codes = np.array([index[c] for c in found], np.int64)[inverse.reshape(-1)]
        y = np.zeros((codes.size, len(classes)))
        y[np.arange(codes.size), codes] = 1.0
        run.classes = classes
        run.task = f"softmax over {len(classes)} classes of {column!r}"
        return y, "softmax", codes
    y = np.array(values, dtype=np.float64)
    if resumed is not None and y.shape[1] != resumed.layers[-1]:
        raise ValueError(
            f"--resume model {args.resume!r} gives {resumed.layers[-1]} outputs; this table has {y.shape[1]} targets"
        )
    if task == "binary":
        lo, hi = float(y.min()), float(y.max())
        if lo < 0 or hi > 1:
            raise ValueError(
                f"target column(s) {names} hold values in [{lo:g}, {hi:g}], but the resumed model's sigmoid "
                "outputs lie in [0, 1]"
            )
        run.task = "0/1 target" if y.shape[1] == 1 else f"{y.shape[1]} 0/1 targets"
        return y, "sigmoid", None
    run.task = f"regression of {column!r}"
    return y, "identity", None


def _class_name(v) -> str:
    """A numeric class label as text: whole numbers without a decimal point."""
    return str(int(v)) if float(v).is_integer() else repr(float(v))


def _label_key(name: str):
    """Sort numeric class names by value (2 before 10), text alphabetically, numbers first."""
    try:
        return (0, float(name), name)
    except ValueError:
        return (1, 0.0, name)


def _owned(X) -> bool:
    """Whether X is an array `sigmanet train` may scale in place (a memory-mapped file is read-only)."""
    import numpy as np

    return isinstance(X, np.ndarray) and X.dtype == np.float64 and X.flags.c_contiguous and X.flags.writeable


def _rows_per_block(A) -> int:
    return max(1, (1 << 22) // (8 * max(1, A.shape[1])))


def _compact(A, rows):
    """A's ``rows`` (sorted) moved to its front, in place, block by block; returns that leading part.

    Row ``rows[i]`` >= i, so a block's sources lie at or after its destination, and no block
    overwrites a row a later block still has to read.
    """
    step = _rows_per_block(A)
    for r0 in range(0, rows.size, step):
        block = rows[r0 : r0 + step]
        A[r0 : r0 + block.size] = A[block]  # the fancy index reads the block into a copy first
    return A[: rows.size]


def _scale_in_place(X, input_range, dtype):
    """X mapped by ``(X - lo) / (hi - lo)`` per column, as ``Network`` scales (bit for bit), in place.

    In the network's dtype: float64 overwrites X; float32 writes a new array, block by block.
    """
    import numpy as np

    lo, hi = (np.asarray(a, np.float64) for a in input_range)
    span = np.where(hi > lo, hi - lo, 1.0)
    out = X if np.dtype(dtype) == X.dtype else np.empty(X.shape, dtype)
    step = _rows_per_block(X)
    for r0 in range(0, X.shape[0], step):
        block = X[r0 : r0 + step]
        np.subtract(block, lo, out=block)
        np.divide(block, span, out=block)
        if out is not X:
            out[r0 : r0 + step] = block
    return out


def _prepare_dask(run: _Run):
    """The Dask path: the table read lazily, the network scaling its inputs by fit(scale_inputs=True)."""
    from . import Network

    args, net = run.args, run.resumed
    X, y, input_names, target_names = _dask_table(args)
    if y is None:
        raise ValueError("--target is required: name the column(s) to predict")
    lo, hi = float(y.min()), float(y.max())
    if lo < 0 or hi > 1:
        raise ValueError(
            f"target column(s) {target_names} hold values in [{lo:g}, {hi:g}]: on Dask tables the targets must "
            "be 0/1 columns (class labels and regressions train from one file; one 0/1 column per class here)"
        )
    if net is None:
        hidden = args.hidden or TRAIN_DEFAULTS["hidden"]
        bias = TRAIN_DEFAULTS["bias"] if args.bias is None else args.bias
        net = Network(
            [X.shape[1], *hidden, y.shape[1]],
            backend=args.backend,
            dtype=args.dtype or "float64",
            seed=args.seed,
            bias=bias,
        )
        net.input_names, net.target_names = input_names, target_names
    elif net.layers[0] != X.shape[1] or net.layers[-1] != y.shape[1] or net.output != "sigmoid":
        raise ValueError(
            f"--resume model {args.resume!r} does not fit this table's {X.shape[1]} inputs and {y.shape[1]} 0/1 targets"
        )
    run.task, run.lazy = "0/1 targets", True
    return X, y, None, None, net


def _fit_options(run: _Run, net) -> dict[str, Any]:
    """The options for Network.fit: those given; for a new network (or an option a resumed model never
    stored), the CLI's defaults for its output layer."""
    from ._plan import LOSSES_FOR_OUTPUT

    args = run.args
    options = {k: getattr(args, k) for k in FIT_OPTIONS if getattr(args, k, None) is not None}
    stored = run.resumed.fit_options if run.resumed is not None else {}
    defaults = {k: TRAIN_DEFAULTS[k] for k in ("learning_rate", "loss", "reduction")}
    for k, v in defaults.items():
        if k not in options and k not in stored:
            options[k] = v[net.output] if isinstance(v, dict) else v
    if "loss" in options and options["loss"] not in LOSSES_FOR_OUTPUT[net.output]:
        raise ValueError(
            f"--loss {options['loss']} does not fit this model's {net.output} output ({run.task}); "
            f"use --loss {' or '.join(LOSSES_FOR_OUTPUT[net.output])}"
        )
    return options


def _fit(run: _Run, net, X, y, X_held, y_held):
    """One ``fit`` for the whole run, with a progress bar; returns the error curves for --plot.

    Without held-out rows, report intervals are sized to ~0.25 s, so the bar moves. With them, the
    held-out error is measured every ``--check-every`` iterations, and training.Patience stops the
    fit after ``--patience`` checks without an improvement of more than ``--tol``, keeping the best
    check's state. ``--checkpoint-every`` writes the kept state after a completed piece of training
    (at most ~0.5 s apart) once that many seconds have passed. Returns {"training rows":
    [(iteration, error)], "held-out rows": [...]}, each ending at the last iteration.
    """
    from tqdm.auto import tqdm

    from .training import Patience

    args = run.args
    iterations = args.iterations or TRAIN_DEFAULTS["iterations"]
    options = run.options = _fit_options(run, net)
    validating = X_held is not None
    batch = options.get("batch_size", net.fit_options.get("batch_size"))
    rows = X.shape[0]
    if isinstance(batch, int) and isinstance(rows, int) and batch > rows:
        held = " (the rest are held out)" if validating else ""
        given = "--batch-size" if "batch_size" in options else "the resumed model's batch size"
        raise ValueError(f"{given} {batch} exceeds the {rows} training rows{held}; use --batch-size full or fewer rows")
    if args.patience is not None:
        run.patience = Patience(stop_after=args.patience, tol=1e-4 if args.tol is None else args.tol)
    curve: dict[str, list[tuple[int, Any]]] = {"training rows": []}
    if validating:
        curve["held-out rows"] = []
    show = not args.no_progress and sys.stderr.isatty()
    if args.checkpoint_every is not None:
        run.next_checkpoint = time.monotonic() + args.checkpoint_every
    with tqdm(total=iterations, disable=not show, unit="it", desc="training") as bar:
        done = [0]

        def progress(n_done):
            bar.update(n_done - done[0])
            done[0] = n_done
            if time.monotonic() >= run.next_checkpoint:
                _checkpoint(run, net)

        def callback(iteration, error):
            curve["training rows"].append((iteration, error))  # error before the interval's first update
            if not validating:
                return True
            held = net.error(X_held, y_held)
            curve["held-out rows"].append((net.iteration, held))  # after the interval
            bar.set_postfix(error=f"{error:.5f}", held_out=f"{held:.5f}", refresh=False)
            if run.patience is None:
                return True
            return run.patience.update(held, snapshot=net.get_state, label=net.iteration)

        every = args.check_every or max(1, iterations // 100)
        net.fit(
            X,
            y,
            iterations=iterations,
            report_every=every if validating else iterations,
            progress=progress,
            callback=callback,
            scale_inputs=run.lazy,
            **({} if validating else {"report_seconds": 0.25}),
            **options,
        )
    curve["training rows"].append((net.iteration, net.error(X, y)))
    if validating and curve["held-out rows"][-1][0] != net.iteration:
        curve["held-out rows"].append((net.iteration, net.error(X_held, y_held)))
    return curve


def _checkpoint(run: _Run, net) -> None:
    """--checkpoint-every: the kept state written atomically to --save (signals wait for it)."""
    from .checkpoint import write

    args = run.args
    with run.guard.deferred():
        try:
            write(args.save, run.kept_state(net))
        except OSError as e:
            print(f"sigmanet train: warning: checkpoint to {args.save} failed ({e}); training goes on", file=sys.stderr)
    run.next_checkpoint = time.monotonic() + args.checkpoint_every


def _save(state, path):
    """(where the model went, the problem saving it to ``path`` or None): ``path``, else a fallback copy in
    the first folder that takes it (beside it, the temporary folder, the current one, home)."""
    import tempfile

    from .checkpoint import write

    try:
        write(path, state)
        return path, None
    except OSError as e:
        problem = e
    name = f"sigmanet-rescued-{os.getpid()}-{os.path.basename(os.fspath(path).rstrip(os.sep)) or 'model.npz'}"
    folders = [os.path.dirname(os.path.abspath(path)), tempfile.gettempdir(), os.getcwd(), os.path.expanduser("~")]
    for folder in dict.fromkeys(folders):
        candidate = os.path.join(folder, name)
        try:
            write(candidate, state)
            return candidate, problem
        except OSError:
            continue
    return None, problem


def _save_problem(args, saved, problem) -> None:
    if problem is None:
        return
    if saved:
        print(
            f"sigmanet train: error: could not save to {args.save} ({problem}); the model was saved to {saved} instead",
            file=sys.stderr,
        )
    else:
        print(f"sigmanet train: error: could not save to {args.save} ({problem}), nor a copy anywhere", file=sys.stderr)


def _report_stop(run: _Run, state, saved, problem, stop) -> int:
    """A run stopped by a signal (Ctrl-C, SIGTERM, SIGHUP) or by divergence: what was kept, and where."""
    from .errors import DivergenceError

    args = run.args
    _save_problem(args, saved, problem)
    where = f"; the model of iteration {state['iteration']} was saved to {saved}" if saved else ""
    if isinstance(stop, DivergenceError):
        stored = run.resumed.fit_options if run.resumed is not None else {}
        lr = run.options.get("learning_rate", stored.get("learning_rate", 1.0))
        print(
            f"sigmanet train: error: training diverged after iteration {stop.iteration} (the error or a weight "
            f"became infinite): try a smaller --learning-rate than {lr:g}{where}",
            file=sys.stderr,
        )
        return 2
    signum = stop.signum if isinstance(stop, _Stop) else run.guard.seen or signal.SIGINT
    name = signal.Signals(signum).name
    if saved:
        message = f"checkpoint saved to {saved} (continue with --resume {saved})"
    elif args.save:
        message = "the model could not be saved"
    else:
        message = "nothing saved (use --save to keep checkpoints)"
    with contextlib.suppress(OSError):  # after SIGHUP the terminal may be gone
        print(f"interrupted by {name} at iteration {state['iteration']}: {message}", file=sys.stderr)
    return 128 + signum


def _report(run: _Run, net, state, start, caught, curve, X, y, X_held, y_held, saved, problem) -> None:
    """Everything printed after the model is saved: the summary, warnings, scores, the plot."""
    from . import Network, StuckWarning

    args = run.args
    _save_problem(args, saved, problem)
    print(
        f"trained {state['iteration'] - start} iterations on {X.shape[0]} rows x {X.shape[1]} inputs "
        f"(network {list(net.layers)}, {run.task}, backend {net.backend}); iterations in total: {state['iteration']}"
    )
    p = run.patience
    if p is not None and p.best_check is not None:
        why = (
            f"stopped after {p.stalled} checks without an improvement of more than {p.tol:g}"
            if p.stopped
            else "ran all its --iterations"
        )
        print(
            f"early stopping: kept the weights of check {p.best_check + 1} of {p.checks} (iteration {p.best_label}, "
            f"held-out error {_in_units(run, p.best):.6f}); the fit {why}, to iteration {net.iteration}"
        )
    seen = set()
    for w in caught:
        if isinstance(w.message, StuckWarning):
            text = STUCK_ADVICE[w.message.cause].format(
                lr=net.fit_options.get("learning_rate", 0.0), error=f"{curve['training rows'][-1][1]:.6g}"
            )
        else:
            text = str(w.message)
        if text not in seen:
            seen.add(text)
            print(f"warning: {text}", file=sys.stderr)
    if run.lazy:  # the Dask path: the network scales its inputs
        scorer = Network.from_state(state, backend=net.backend, threads=net.threads)
    else:  # the inputs here are scaled already; outputs in the targets' units
        scorer = Network.from_state(dict(state, input_range=None), backend=net.backend, threads=net.threads)
    classifier = net.output != "identity"
    _print_scores("training", _units(run, y), scorer.predict(X), classifier)
    if X_held is not None:
        _print_scores("held-out", _units(run, y_held), scorer.predict(X_held), classifier)
    if saved:
        print(f"saved {saved}")
    if args.plot:
        curve = {label: [(i, _in_units(run, e)) for i, e in points] for label, points in curve.items()}
        write_error_plot(
            args.plot, curve, title=f"sigmanet train {os.path.basename(args.data)}: network {list(net.layers)}"
        )
        print(f"wrote {args.plot}")


def _in_units(run: _Run, error):
    """A mean |y - output| of the training network in the targets' units: a regression's network trains on
    them standardised, so the error scales by the deviation (exactly for one target column; for several,
    by their mean deviation, an approximation)."""
    if run.target_scale is None:
        return error
    return float(error) * float(run.target_scale.mean())


def _units(run: _Run, y):
    """Targets as the table had them (a regression trains on them standardised)."""
    return y if run.target_scale is None else y * run.target_scale + run.target_shift


def _is_dask_table(args) -> bool:
    """A glob of files, or a scheduler: read lazily with dask.dataframe (never loaded whole)."""
    return bool(args.scheduler) or any(ch in args.data for ch in "*?[")


def _dask_client(args):
    """A distributed Client for --scheduler, in scope while training; else nothing (Dask's local scheduler)."""
    if not args.scheduler:
        return contextlib.nullcontext()
    try:
        from distributed import Client
    except ImportError:
        raise ValueError("--scheduler needs Dask: pip install 'sigmanet[dask]'") from None
    try:
        return Client(args.scheduler, timeout=args.connect_timeout)
    except (OSError, TimeoutError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ValueError(
            f"--scheduler {args.scheduler}: no Dask scheduler answered within {args.connect_timeout:g} s ({reason})"
        ) from None


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


def _print_scores(label, y, out, classifier=True):
    import numpy as np

    print(f"{label} error (mean |y - output|): {float(np.mean(np.abs(y - out))):.6f}")
    acc = accuracy(y, out) if classifier else None
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


def _inputs_named(paths) -> list[str]:
    """The existing files the given input paths (or globs of them) name."""
    import glob

    found = []
    for given in paths:
        if given:  # the name as it is (which may hold [ or *), and what it matches as a glob
            found += [given, *(glob.glob(given) if any(ch in given for ch in "*?[") else [])]
    return [f for f in found if os.path.exists(f)]


def _check_not_an_input(flag: str, path: str, inputs=(), others=()) -> None:
    """Before any work: ``path`` is none of ``inputs`` (writing it would destroy what the command reads),
    nor another output's path (``others``: (flag, path) pairs)."""
    for other_flag, other in others:
        if other and os.path.realpath(other) == os.path.realpath(path):
            raise ValueError(f"{flag} and {other_flag} name the same file {path!r}: one would overwrite the other")
    for given in _inputs_named(inputs):
        if os.path.exists(path) and os.path.samefile(given, path):
            raise ValueError(
                f"{flag} {path!r} is the input {given!r}: writing it would destroy it; choose another path"
            )


def _check_output(flag: str, path: str, inputs=(), folder: bool = False, others=()) -> None:
    """Before any work: ``path`` (a file, or with ``folder`` a folder to create) can be written, and is
    not an input or another output (:func:`_check_not_an_input`)."""
    if not path:
        raise ValueError(f"{flag} needs a path, got an empty one")
    _check_not_an_input(flag, path, inputs, others)
    if folder:
        if os.path.exists(path) and not os.path.isdir(path):
            raise NotADirectoryError(f"{flag} {path!r} is a file; it names the folder the results are written to")
        parent = os.path.abspath(path)
        while not os.path.exists(parent):
            parent = os.path.dirname(parent)
        if not os.path.isdir(parent):
            raise NotADirectoryError(f"{flag} {path!r}: {parent!r} is a file, not a folder")
    else:
        if os.path.isdir(path):
            raise IsADirectoryError(f"{flag} {path!r} is a folder; give a file name")
        parent = os.path.dirname(os.path.abspath(path))
        if not os.path.exists(parent):
            raise FileNotFoundError(f"{flag} {path!r}: folder {os.path.dirname(path)!r} does not exist")
        if not os.path.isdir(parent):
            raise NotADirectoryError(f"{flag} {path!r}: {os.path.dirname(path)!r} is a file, not a folder")
        if os.path.exists(path):  # an existing file (or /dev/null): its own permission decides
            if not os.access(path, os.W_OK):
                raise PermissionError(f"{flag} {path!r}: the file is not writable")
            return
    if not os.access(parent, os.W_OK | os.X_OK):
        raise PermissionError(f"{flag} {path!r}: folder {parent!r} is not writable")


def _check_plot_format(path: str) -> None:
    """The plot's format (its suffix; PNG without one) is one matplotlib writes."""
    from matplotlib.backend_bases import FigureCanvasBase

    suffix = os.path.splitext(path)[1].lstrip(".").lower()
    formats = FigureCanvasBase.get_supported_filetypes()
    if suffix and suffix not in formats:
        raise ValueError(f"--plot {path!r}: matplotlib cannot write .{suffix} files; use one of {sorted(formats)}")


def cmd_predict(args) -> int:
    import csv

    import numpy as np

    from . import load
    from .io import column_names, read_columns

    if args.out:
        _check_output("--out", args.out, [args.model, args.data])
    net = load(args.model, backend=args.backend)
    names = column_names(args.data)  # None for .npy and .npz: columns by position
    inputs = None
    if names is not None and net.input_names:
        missing = [n for n in net.input_names if n not in names]
        if missing:
            raise ValueError(f"{args.data!r} lacks the model's input column(s) {missing}")
        inputs = net.input_names  # found by name, in the model's order; other columns are not parsed
    elif args.data.lower().endswith(".npy") and net.input_names and all(n.isdigit() for n in net.input_names):
        inputs = net.input_names  # a model trained on a .npy knows its input columns by index
    table = read_columns(args.data, None, inputs=inputs, keep=args.keep)
    out = np.asarray(net.predict(table.X))
    header = [*table.kept, *(net.target_names or [f"y{i}" for i in range(out.shape[1])])]
    kept = list(table.kept.values())
    classes: list[Any] | None = None
    if net.output != "identity" and not args.probabilities_only:  # a classifier: its predicted class
        label, classes = predicted_classes(out, net.target_names)
        header.append(label)

    def rows():
        for i, row in enumerate(out):
            yield [*(k[i] for k in kept), *(repr(float(v)) for v in row), *([] if classes is None else [classes[i]])]

    f = open(args.out, "w", newline="") if args.out else sys.stdout
    try:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows())
    finally:
        if args.out:
            f.close()
    return 0


# -- argument types: each names what it wants in argparse's message --


def _csv_list(kind, what):
    def parse(text):
        try:
            items = [x.strip() for x in text.split(",")]
            if items and not items[-1]:
                items.pop()  # a trailing comma, as in 16,8,
            if items != [""] and not all(items):
                raise ValueError("an empty item between commas")
            return [kind(x) for x in items if x]
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


def _non_negative_float(text):
    return _number(text, lambda v: 0 <= v < float("inf"), "a number of at least 0")


def _unit_interval(text):
    return _number(text, lambda v: 0 <= v <= 1, "a number in [0, 1]")


def _unit_interval_open(text):
    return _number(text, lambda v: 0 <= v < 1, "a number in [0, 1)")


def _batch_size(text):
    return "full" if text.strip().lower() == "full" else _positive_int(text)


def _positive_int(text):
    try:
        n = int(text)
    except ValueError:
        n = 0
    if not 1 <= n <= 1 << 62:
        raise argparse.ArgumentTypeError(f"must be a whole number from 1 to 2**62, got {text!r}")
    return n


def _non_negative_int(text):
    try:
        n = int(text)
    except ValueError:
        n = -1
    if n < 0:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 0, got {text!r}")
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
        "--optimizer",
        default="sgd",
        choices=["sgd", "momentum", "nesterov", "adam"],
        help="the update rule timed (default sgd; the peers run sgd only, so they are skipped for others)",
    )
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
    bench.add_argument(
        "--out", help="folder for results.json and throughput.png (default: bench-out in the current folder)"
    )
    bench.set_defaults(func=cmd_bench)

    train = sub.add_parser(
        "train",
        help="train on your own CSV, Parquet, .npz or .npy table",
        description="Train on a table. Inputs are scaled to [0, 1] by their range, which is saved with the "
        "model. A target column of text, or of a few whole numbers, is a class label (softmax output, one "
        "output per class); 0/1 target columns train sigmoid outputs; other numbers are a regression "
        "(identity output, trained on the targets standardised; the model predicts in their units). "
        "Defaults: one hidden layer of 16 with biases, mean steps, 2000 iterations, cross-entropy at rate 2 "
        "for classes and 0/1 targets, squared error at rate 0.5 for a regression.",
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
        help="column(s) to leave out, such as ids or leaks (not read: they may hold text)",
    )
    train.add_argument(
        "--task",
        default="auto",
        choices=["auto", "classification", "regression"],
        help=f"what the target is: auto (text, or at most {MAX_AUTO_CLASSES} distinct whole numbers other than "
        "0/1, are classes; 0/1 columns train sigmoid outputs; other numbers are a regression), or say which",
    )
    model = train.add_argument_group("the network")
    model.add_argument("--hidden", type=_int_list, help="hidden layer sizes, e.g. 16 or 16,8 (default 16)")
    model.add_argument(
        "--bias",
        action=argparse.BooleanOptionalAction,
        help="give each layer a bias (default: biases; --no-bias for the seed's network without them)",
    )
    model.add_argument("--backend", default="auto", choices=backend_choices, help=backend_help)
    model.add_argument("--dtype", choices=["float64", "float32"], help="default float64")
    model.add_argument(
        "--seed", type=_non_negative_int, default=0, help="seeds the initial weights and the held-out rows"
    )
    fit = train.add_argument_group(
        "training (each as Network.fit takes it; a resumed model goes on with its own unless given)"
    )
    fit.add_argument("--iterations", type=_positive_int, help=f"default {TRAIN_DEFAULTS['iterations']}")
    fit.add_argument(
        "--learning-rate",
        type=_positive_float,
        help="default 2 (0.5 for a regression)",
    )
    fit.add_argument(
        "--loss",
        choices=["bce", "mse", "cross_entropy"],
        help="bce (cross-entropy of 0/1 targets, the default for them) or mse for sigmoid outputs; "
        "cross_entropy for classes; mse for a regression",
    )
    fit.add_argument(
        "--reduction",
        choices=["mean", "sum"],
        help="each step's gradient: the mean over the batch's rows (default) or their sum (the seed's)",
    )
    fit.add_argument(
        "--batch-size",
        type=_batch_size,
        help="rows per step: mini-batches of this many rows, or full (the whole table, the default)",
    )
    fit.add_argument(
        "--shuffle",
        action=argparse.BooleanOptionalAction,
        help="with --batch-size: a new order of the rows every epoch (seeded by --seed)",
    )
    fit.add_argument(
        "--optimizer",
        choices=["sgd", "momentum", "nesterov", "adam"],
        help="the update rule (default sgd, plain gradient descent)",
    )
    fit.add_argument("--momentum", type=_unit_interval, help="for momentum and nesterov (default 0.9)")
    fit.add_argument("--beta-1", type=_unit_interval_open, help="Adam's first decay rate (default 0.9)")
    fit.add_argument("--beta-2", type=_unit_interval_open, help="Adam's second decay rate (default 0.999)")
    fit.add_argument("--epsilon", type=_positive_float, help="Adam's guard (default 1e-8)")
    fit.add_argument("--alpha", type=_non_negative_float, help="L2 penalty on the weights (default 0)")
    fit.add_argument(
        "--schedule",
        choices=["constant", "invscaling", "adaptive"],
        help="the learning rate's schedule, scikit-learn's (default constant)",
    )
    fit.add_argument("--power-t", type=_non_negative_float, help="for --schedule invscaling (default 0.5)")
    fit.add_argument(
        "--n-iter-no-change",
        type=_positive_int,
        help="for --schedule adaptive: reports without a gain of --tol before the rate is divided by 5 (default 10)",
    )
    fit.add_argument(
        "--class-weight",
        choices=["balanced"],
        help="balanced: weigh each class by rows / (classes x its rows), for rare classes",
    )
    stop = train.add_argument_group("held-out rows and early stopping")
    stop.add_argument(
        "--validation-fraction",
        type=_fraction,
        default=0.0,
        help="hold out this fraction of the rows (at random by --seed, in proportion for each class) and "
        "report its error and accuracy (default 0: none)",
    )
    stop.add_argument(
        "--patience",
        type=_positive_int,
        help="with --validation-fraction: stop after this many checks without a better held-out "
        "error, and keep the weights of the best check (saved with its own iteration count)",
    )
    stop.add_argument(
        "--tol",
        type=_positive_float,
        help="with --patience: the held-out error must fall by more than this to count as "
        "better (default 1e-4, as scikit-learn's); also the gain --schedule adaptive looks for",
    )
    stop.add_argument(
        "--check-every",
        type=_positive_int,
        help="with --validation-fraction: iterations between held-out checks (default 1%% of --iterations)",
    )
    files = train.add_argument_group("files and clusters")
    files.add_argument(
        "--save",
        metavar="MODEL",
        help="write the model here, checked before any work; also on Ctrl-C, SIGTERM and SIGHUP",
    )
    files.add_argument(
        "--checkpoint-every",
        type=_positive_float,
        metavar="SECONDS",
        help="with --save: also write the model there this often while training (resume with --resume)",
    )
    files.add_argument("--resume", metavar="MODEL", help="continue training a saved model")
    files.add_argument("--plot", metavar="PNG", help="write the error curve (needs matplotlib)")
    files.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="train on this Dask cluster (e.g. tcp://host:8786), reading the table lazily with "
        "dask.dataframe where the workers can see the files; DATA may then be a glob such as "
        "'data/*.csv' or Parquet files (a glob alone trains on Dask's local scheduler; pip install 'sigmanet[dask]')",
    )
    files.add_argument(
        "--connect-timeout",
        type=_positive_float,
        default=10.0,
        metavar="SECONDS",
        help="with --scheduler: give up when no scheduler answers within this time (default 10)",
    )
    train.add_argument("--no-progress", action="store_true", help="no progress bar (also off when not a terminal)")
    train.set_defaults(func=cmd_train)

    predict = sub.add_parser(
        "predict",
        help="predict with a saved model; writes CSV",
        description="Write one row per input row: the --keep columns, the outputs (a classifier's "
        "probabilities, one per class or 0/1 target; a regression's values in the targets' units), then, "
        "for a classifier, the predicted class in a 'class' column (its label: argmax for several outputs, "
        "else output > 0.5).",
    )
    predict.add_argument("model", help="a model written by sigmanet train --save or Network.save")
    predict.add_argument(
        "data",
        help="CSV with a header row or Parquet (the model's input columns, found by name), .npz with X, or .npy",
    )
    predict.add_argument("--out", help="CSV to write (default: standard output)")
    predict.add_argument(
        "--keep",
        action=_Append,
        type=_csv_list(str, "column names"),
        help="column(s) to copy to the output first, such as an id (text is fine)",
    )
    predict.add_argument("--probabilities-only", action="store_true", help="leave out the predicted class column")
    predict.add_argument("--backend", default="auto", choices=backend_choices, help=backend_help)
    predict.set_defaults(func=cmd_predict)
    return parser


# Option names (--seed, --target=-1) and glob patterns ('data/*.csv') in help text, for the docs:
# reStructuredText would turn "--" into an en dash and read "*" as the start of emphasis.
_RST_LITERAL = re.compile(r"(?<![\w`'])(--[A-Za-z][\w-]*(?:=-?\w+)?|'[^'\s]*\*[^'\s]*')")


def docs_parser() -> argparse.ArgumentParser:
    """:func:`build_parser` with option names and patterns in its help text marked as literal text, for
    docs/cli.rst (sphinx-argparse reads help text as reStructuredText); the terminal's --help is unchanged."""

    def literal(text):
        return _RST_LITERAL.sub(lambda m: f"``{m.group(1)}``", text) if isinstance(text, str) else text

    def mark(parser):
        parser.description = literal(parser.description)
        for action in parser._actions:
            if action.help is not argparse.SUPPRESS:
                action.help = literal(action.help)
            if isinstance(action, argparse._SubParsersAction):
                for choice in action._choices_actions:
                    choice.help = literal(choice.help)
                for sub in action.choices.values():
                    mark(sub)
        for group in parser._action_groups:
            group.description = literal(group.description)

    parser = build_parser()
    mark(parser)
    return parser


def main(argv=None) -> int:
    from .errors import SigmanetError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (SigmanetError, ValueError, TypeError, FileNotFoundError, IsADirectoryError, PermissionError) as e:
        print(f"sigmanet {args.command}: error: {e}", file=sys.stderr)
        return 2
    except MemoryError as e:  # the library's own check, before any work: it says what helps
        print(f"sigmanet {args.command}: error: {e or 'out of memory'}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        name = signal.Signals(e.signum).name if isinstance(e, _Stop) else "Ctrl-C"
        print(f"sigmanet {args.command}: interrupted by {name}", file=sys.stderr)
        return 128 + e.signum if isinstance(e, _Stop) else 130
    except BrokenPipeError:
        # The reader went away (``| head``): stop quietly, as Unix tools do. Point
        # stdout at /dev/null so the interpreter's final flush cannot complain.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    except OSError as e:  # a file the command could not read or write (a full disk, a path through a file)
        print(f"sigmanet {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
