"""Training on Dask arrays: the same network, the same backends, where the chunks live.

``Network.fit``, ``predict`` and ``error`` take row-chunked Dask arrays (extra
``dask``); the registry routes them here (:func:`sigmanet.backends.for_input`)
and ``import sigmanet`` never imports Dask. The algorithm reads like its
in-memory twin: each iteration, every worker computes the gradient summed over
the rows of the batch that it holds, with the network's own backend's gradient
function (``Backend.gradients``: numba's compiled engine on CPU workers, CuPy
on GPU workers); the client adds the partial sums in a fixed order and takes
the optimizer's step (:func:`sigmanet.optimizers.update`, the rule every
in-memory engine follows), then sends the new weights with the next
iteration's work. Only weights and gradients travel; the data stays where it
was persisted. Mini-batches, sample weights and every optimizer keep their
in-memory meaning.

With a ``distributed.Client`` in scope the work runs on its cluster; without
one, on Dask's local threaded scheduler. A worker lost mid-fit is survived:
its chunks are recomputed from their source by the scheduler, and the
iteration's work reruns elsewhere. If every worker holding the data is lost at
once, the chunks are placed again on the workers there are; an iteration that
still cannot finish within ``ITERATION_TIMEOUT`` seconds raises a clear error
instead of waiting forever.
"""

from __future__ import annotations

import os
import time
from typing import Any

import dask
import dask.array as da
import numpy as np

from .. import optimizers
from .._arrays import array_namespace
from .._plan import STATS_SIZE, Stats, TrainConfig, batch_bounds, learning_rate_at, reduction_factor
from .base import Backend, Gradients, Trainer

# Iterations between asking the scheduler where the chunks live (see DaskTrainer._groups).
REFRESH_EVERY = 50
# Seconds an iteration may wait for its workers before the chunks are placed again (and, if that
# fails too, before the fit fails): generous, since one iteration over a large table takes a while.
ITERATION_TIMEOUT = float(os.environ.get("SIGMANET_DASK_TIMEOUT", "120"))


def _client():
    """The distributed Client Dask itself would use, or None (then Dask's local scheduler runs the tasks):
    the one of a ``with client.as_current():`` block, else the default client (a Client made with
    ``set_as_default=True``, distributed's default)."""
    try:
        from distributed import Client, default_client
    except ImportError:
        return None
    try:
        return Client.current(allow_global=False)
    except ValueError:  # not inside as_current()
        pass
    if dask.config.get("scheduler", None) != "dask.distributed":
        return None
    try:
        return default_client()
    except ValueError:  # no client
        return None


class DaskBackend(Backend):
    """A backend wrapped to take Dask arrays: checks are structural at once, values in one pass before training."""

    shuffles_rows = False  # a new global order each epoch would move every chunk between workers

    def __init__(self, inner: Backend):
        super().__init__(inner.threads, inner.strategy)
        self.inner = inner
        self._row_chunks: Any = None

    @property  # a ClassVar on other backends; the inner backend's name here
    def name(self) -> str:  # type: ignore[override]
        """The inner backend's name: the network still trains on it."""
        return self.inner.name

    def device(self) -> str:
        """The inner backend's device, and the cluster (or local scheduler) it runs on."""
        client = _client()
        where = f"Dask cluster {client.scheduler.address}" if client is not None else "Dask's local scheduler"
        return f"{self.inner.device()}, on {where}"

    def check_inputs(self, X, n_inputs: int, dtype=None):
        """X's structure, at once: 2-D, numeric, ``n_inputs`` columns (its values, cast to ``dtype``, are
        checked in one pass by :class:`DaskTrainer`)."""
        X = _checked("X", X, n_inputs)
        self._row_chunks = X.chunks[0]  # for a NumPy y or sample_weight given beside it
        return X

    def check_targets(self, y, n_outputs: int, n_rows: int, output: str = "sigmoid", dtype=None, like=None):
        """y's structure, at once, like X's, with ``n_rows`` rows; a NumPy y is chunked like X."""
        if not _is_dask(y):
            y = np.asarray(y)
            if y.ndim == 1 and n_outputs == 1:
                y = y.reshape(-1, 1)
            if y.ndim != 2 or y.shape[0] != n_rows:
                raise ValueError(
                    f"y has shape {y.shape} but the Dask X has {n_rows} rows; pass y as a Dask array chunked like "
                    "X (da.from_array(y, chunks=(X.chunks[0], -1))), or a NumPy array of the same rows"
                )
            y = da.from_array(y, chunks=(self._row_chunks or n_rows, -1))
        if y.ndim == 1 and n_outputs == 1:
            y = y.reshape(-1, 1)
        y = _checked("y", y, n_outputs)
        if y.shape[0] != n_rows:
            raise ValueError(f"X has {n_rows} rows but y has {y.shape[0]}; they must match")
        return y  # its values (reachable by the output, finite) are checked in one pass by the trainer

    def check_sample_weight(self, sample_weight, n_rows: int, dtype=None):
        """Per-row weights as a Dask array chunked like X (a NumPy one is chunked here); values checked lazily."""
        sw = sample_weight
        if not _is_dask(sw):
            sw = np.asarray(sw)
            if sw.ndim != 1 or sw.shape[0] != n_rows:
                raise ValueError(f"sample_weight must hold one weight per row of X ({n_rows}), got shape {sw.shape}")
            if sw.dtype.kind not in "biuf":
                raise TypeError(f"sample_weight must be numeric, got dtype {sw.dtype}")
            sw = da.from_array(sw, chunks=(self._row_chunks or n_rows,))
        if sw.ndim != 1 or sw.shape[0] != n_rows:
            raise ValueError(f"sample_weight must hold one weight per row of X ({n_rows}), got shape {sw.shape}")
        return sw

    def class_weights(self, class_weight, y, output: str):
        """Per-row weights from ``class_weight`` and y's classes, lazily: y's classes are checked, and counted,
        in one pass, with the in-memory path's rules and messages."""
        from .._validation import NOT_CLASSES_1, NOT_CLASSES_K, check_class_weight, class_table

        checked = check_class_weight(class_weight)
        n_classes = 2 if y.shape[1] == 1 else y.shape[1]
        zero_one = ((y == 0) | (y == 1)).all()  # not da.isin: a NumPy [0, 1] does not mix with CuPy chunks
        if y.shape[1] == 1:  # the 0/1 value as an index that is in range whatever y holds (NaN, -1): the
            labels, classes = (y[:, 0] == 1).astype(np.int64), zero_one  # count then runs beside the check
        else:
            labels, classes = y.argmax(axis=1), zero_one & (y.sum(axis=1) == 1).all()
        are_classes, counts = _compute(classes, da.bincount(labels, minlength=n_classes))  # one pass over y
        if not bool(are_classes):
            raise ValueError(NOT_CLASSES_1 if y.shape[1] == 1 else NOT_CLASSES_K)
        table = class_table(checked, _host(counts), y.shape[0])
        return labels.map_blocks(lambda b: array_namespace(b).asarray(table)[b], dtype=np.float64)

    def column_range(self, X):
        """Each column's (min, max), in one pass over the chunks."""
        lo, hi = _compute(X.min(axis=0), X.max(axis=0))
        return _host(lo).astype(np.float64), _host(hi).astype(np.float64)

    def scale(self, X, input_range, dtype):
        """X scaled by the input range, lazily, chunk by chunk."""
        lo, hi = input_range
        span = np.where(hi > lo, hi - lo, 1.0)

        def scaled(b):  # in the chunk's own library (NumPy or CuPy)
            xp = array_namespace(b)
            return ((b - xp.asarray(lo)) / xp.asarray(span)).astype(dtype)

        return X.map_blocks(scaled, dtype=dtype)

    def to_host(self, a):
        """A Dask array computed, as a host NumPy array (whatever its chunks' library)."""
        if _is_dask(a):
            (a,) = _compute(a)
        return _host(a)

    def to_device(self, a, dtype):
        """A lazy cast to the network's dtype: the data stays where its chunks live."""
        return a.astype(dtype)

    def to_user(self, out, caller):
        """Results stay Dask arrays."""
        return out

    def mean_abs_error(self, y, out):
        """``mean |y - out|`` as a 0-d Dask array."""
        return abs(y.astype(out.dtype) - out).mean()

    def predict(self, weights, biases, X, output: str = "sigmoid"):
        """A Dask array of the outputs, computed block by block where X's chunks live, each block of its
        chunk's library (CuPy chunks give CuPy outputs)."""
        n_out = weights[-1].shape[1]
        like = array_namespace(X._meta)
        return X.map_blocks(
            _predict_block,
            type(self.inner),
            self.inner.threads,
            weights,
            biases,
            output,
            chunks=(X.chunks[0], (n_out,)),
            dtype=X.dtype,
            meta=like.empty((0, n_out), X.dtype),
        )

    def trainer(self, weights, biases, X, y, config: TrainConfig, sample_weight=None, optimizer=None) -> Trainer:
        """A :class:`DaskTrainer` for the inner backend."""
        return DaskTrainer(self.inner, weights, biases, X, y, config, sample_weight, optimizer, output=config.output)


def _is_dask(a) -> bool:
    return type(a).__module__.split(".")[0] == "dask"


def _checked(name, a, n_cols):
    if a.ndim != 2:
        raise ValueError(f"{name} must be a 2-D Dask array (rows x columns), chunked by rows; got shape {a.shape}")
    if a.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be numeric, got dtype {a.dtype}")
    if a.shape[1] != n_cols:
        raise ValueError(f"{name}'s chunks are {a.shape[1]} columns wide, but the network expects {n_cols}")
    if any(np.isnan(c) for c in a.chunks[0]):
        a = a.compute_chunk_sizes()  # row counts unknown (e.g. from a dataframe): one pass for the sizes
    if a.shape[0] == 0:
        raise ValueError(f"{name} is empty: it has 0 rows")
    return a.rechunk({1: -1}) if len(a.chunks[1]) > 1 else a


def _on(worker):
    """Placement for a task: on ``worker`` if it can, elsewhere if that worker is gone."""
    return {} if worker is None else {"workers": [worker], "allow_other_workers": True}


def _host(a):
    """A computed chunk's result on the host: CuPy's copied back, anything else as a NumPy array."""
    return a.get() if type(a).__module__.split(".")[0] == "cupy" else np.asarray(a)


def _compute(*collections):
    """The collections' values, on the Client's cluster where there is one (else Dask's local scheduler).
    On a cluster the wait is bounded by :data:`ITERATION_TIMEOUT`: a cluster with no workers (or none
    that can take the tasks) raises instead of waiting forever."""
    client = _client()
    if client is None:
        return dask.compute(*collections)
    from distributed import wait

    futures = client.compute(list(collections))
    try:
        wait(futures, timeout=ITERATION_TIMEOUT)
    except Exception as e:
        if not _is_timeout(e):
            raise
        client.cancel(futures)
        workers = len(client.scheduler_info().get("workers", {}))
        raise RuntimeError(
            f"the Dask cluster at {client.scheduler.address} did not finish a pass over the data within "
            f"{ITERATION_TIMEOUT:g} s; it has {workers} worker{'s' * (workers != 1)}: start workers (or check that "
            "they can reach the data and are not overloaded), or set $SIGMANET_DASK_TIMEOUT to wait longer"
        ) from None
    return client.gather(futures)


def _predict_block(block, backend_class, threads, weights, biases, output):
    be = backend_class(threads=threads)
    out = be.predict(weights, biases, be.to_device(block, block.dtype), output)
    return out if array_namespace(block) is array_namespace(out) else be.to_host(out)


def _partial_gradient(backend_class, threads, strategy, weights, biases, xs, ys, sws, slices, config):
    """Summed gradient over the given rows of the given chunks, on this worker, by the backend's own
    gradient function. Returns (Gradients, seconds spent computing them)."""
    t0 = time.perf_counter()
    be = backend_class(threads=threads)
    total: Gradients | None = None
    for i, (x, y, (s0, s1)) in enumerate(zip(xs, ys, slices)):
        sw = None if sws is None else sws[i][s0:s1]
        part = be.gradients(weights, biases, x[s0:s1], y[s0:s1], config, sw)
        total = part if total is None else total + part
    return total, time.perf_counter() - t0


class _ChunkGradients:
    """A long-lived actor on one worker, holding that worker's chunks (no copies: the worker's own arrays).

    Each iteration the client calls :meth:`gradient` directly, without the
    scheduler in the loop: one call per worker per iteration (measured: a 3 ms
    round trip for two workers, against 15 ms through the scheduler).
    """

    def __init__(self, backend_class, threads, strategy, config, xs, ys, sws):
        self.args = (backend_class, threads, strategy)
        self.config = config
        self.xs, self.ys, self.sws = xs, ys, sws

    def gradient(self, weights, biases, pieces):
        """(Gradients, seconds) over [(local chunk, first row, stop)]."""
        return _partial_gradient(
            *self.args,
            weights,
            biases,
            [self.xs[j] for j, _, _ in pieces],
            [self.ys[j] for j, _, _ in pieces],
            None if self.sws is None else [self.sws[j] for j, _, _ in pieces],
            [(s0, s1) for _, s0, s1 in pieces],
            self.config,
        )


class DaskTrainer(Trainer):
    """Exact gradient descent over a Dask array: one task per worker per iteration, steps on the client."""

    def __init__(self, backend: Backend, weights, biases, X, y, config: TrainConfig, sample_weight=None,
                 optimizer=None, output: str = "sigmoid"):  # fmt: skip
        self.backend, self.config = backend, config
        dt = np.dtype(weights[0].dtype)
        self.W = [np.array(w, dt) for w in weights]
        self.b = None if biases is None else [np.array(b, dt) for b in biases]
        self.params = self.W + (self.b or [])
        state = optimizer
        if state is None or not state.fits(config.optimizer, self.params):
            state = optimizers.OptimizerState.fresh(config.optimizer, self.params)
        self.step = state.step
        self.slots = {name: [np.array(a, dt) for a in arrays] for name, arrays in state.slots.items()}
        self.scratch = [np.empty_like(p) for p in self.params]
        X = X.astype(dt)
        y = y.astype(dt).rechunk({0: X.chunks[0], 1: -1})
        sw = None if sample_weight is None else sample_weight.astype(dt).rechunk({0: X.chunks[0]})
        checks = [da.isfinite(X).all(), da.isfinite(y).all(), y.min(), y.max()]
        if output == "softmax":
            checks.append(abs(y.sum(axis=1) - 1).max())
        if sw is not None:
            checks += [da.isfinite(sw).all(), sw.min(), sw.max()]
        values = _compute(*checks)
        finite_x, finite_y, lo, hi = values[:4]
        if not finite_x:
            raise ValueError(
                f"X holds NaN or infinite values (as {dt.name}, the network's dtype); remove or impute them first"
            )
        if not finite_y:
            raise ValueError(
                f"y holds NaN or infinite values (as {dt.name}, the network's dtype); remove or impute them first"
            )
        if output != "identity" and (lo < 0 or hi > 1):
            raise ValueError(f"y must lie in [0, 1], the range of the {output} output, got values in [{lo:g}, {hi:g}]")
        if output == "softmax" and values[4] > 1e-4:
            raise ValueError("with a softmax output each row of y must sum to 1 (one-hot classes or probabilities)")
        if sw is not None:
            ok, sw_lo, sw_hi = values[-3:]
            if not ok or sw_lo < 0 or sw_hi <= 0:
                raise ValueError("sample_weight must be finite, at least 0, and not 0 for every row")
        self.client = _client()
        self.actors = None
        self._arrays = (X, y, sw)
        self._place(restricted=True)
        self.bounds = np.concatenate([[0], np.cumsum(X.chunks[0])]).astype(np.int64)
        self.n_rows = int(self.bounds[-1])
        self.X = X  # for shapes (the rows stay on the workers)
        self.tasks_per_iteration = 0
        self._placement: dict[tuple[int, int], Any] = {}
        self._iterations_since_refresh = 0
        self.seconds_in_tasks = 0.0  # summed compute time the workers report, for the overhead figure

    def _place(self, restricted: bool, fresh: bool = False) -> None:
        """Persist the chunks: on a cluster, contiguous ranges of chunks spread over the workers (each
        computed on, and kept by, one worker); without one, in this process. ``fresh``: under new keys
        (the arrays' graphs cloned), for when the old keys are stuck on workers that are gone."""
        arrays = self._arrays
        if fresh:
            from dask.graph_manipulation import clone

            arrays = tuple(None if a is None else clone(a) for a in arrays)  # type: ignore[assignment]
        xb, yb = (list(a.to_delayed().ravel()) for a in arrays[:2])
        sb = None if arrays[2] is None else list(arrays[2].to_delayed().ravel())
        if self.client is None:
            self.x_parts = list(dask.persist(*xb))
            self.y_parts = list(dask.persist(*yb))
            self.sw_parts = None if sb is None else list(dask.persist(*sb))
            return
        from distributed import wait

        workers = sorted(self.client.scheduler_info()["workers"]) or [None]
        n = len(xb)

        def place(blocks):
            if blocks is None:
                return None
            return [
                self.client.compute(b, **(_on(workers[i * len(workers) // n]) if restricted else {}))
                for i, b in enumerate(blocks)
            ]

        self.x_parts, self.y_parts, self.sw_parts = place(xb), place(yb), place(sb)
        everything = self.x_parts + self.y_parts + (self.sw_parts or [])
        wait(everything, timeout=ITERATION_TIMEOUT)  # in place before the first iteration asks where they are
        self.actors = self._start_actors()

    def _start_actors(self):
        """One actor per worker holding chunks, given those chunks: [(chunk indices, actor)], by first chunk."""
        holders = self.client.who_has(self.x_parts)
        by_worker: dict[str, list[int]] = {}
        for c, part in enumerate(self.x_parts):
            by_worker.setdefault((holders.get(part.key) or [None])[0], []).append(c)
        if None in by_worker:  # a chunk nobody holds yet: keep to the task path
            return None
        actors = []
        for worker, chunks in sorted(by_worker.items(), key=lambda item: item[1][0]):
            future = self.client.submit(
                _ChunkGradients,
                type(self.backend),
                self.backend.threads,
                self.backend.strategy,
                self.config,
                [self.x_parts[c] for c in chunks],
                [self.y_parts[c] for c in chunks],
                None if self.sw_parts is None else [self.sw_parts[c] for c in chunks],
                workers=[worker],
                actor=True,
                pure=False,
            )
            actors.append((chunks, future.result(timeout=ITERATION_TIMEOUT)))
        return actors

    def _pieces(self, chunks, r0: int, r1: int):
        pieces = []
        for j, c in enumerate(chunks):
            s0, s1 = max(r0, self.bounds[c]), min(r1, self.bounds[c + 1])
            if s0 < s1:
                pieces.append((j, int(s0 - self.bounds[c]), int(s1 - self.bounds[c])))
        return pieces

    def _actor_gradient(self, r0: int, r1: int):
        """Each actor's share of the batch, one direct call each; None if any call fails (a worker lost)."""
        calls = []
        actors: list[tuple[list[int], Any]] = self.actors or []
        try:
            for chunks, actor in actors:
                pieces = self._pieces(chunks, r0, r1)
                if pieces:  # an actor whose worker the scheduler already knows is lost raises here, not below
                    calls.append(actor.gradient(self.W, self.b, pieces))
            return [call.result(timeout=ITERATION_TIMEOUT) for call in calls]
        except Exception:  # a lost worker takes its actor: go on with tasks from here
            self.actors = None
            return None

    def _groups(self, r0: int, r1: int) -> list[tuple[str | None, list[tuple[int, int, int]]]]:
        """The batch's rows as (worker, [(chunk, first, stop)]) per worker holding them, in chunk order.

        Where the chunks live is asked of the scheduler once per batch and every ``REFRESH_EVERY``
        iterations after (a lost worker's chunks move; a stale answer costs a transfer, never a
        wrong result).
        """
        key = (r0, r1)
        cached = self._placement.get(key)
        if cached is not None and self._iterations_since_refresh < REFRESH_EVERY:
            return cached
        if cached is not None:
            self._placement.clear()
            self._iterations_since_refresh = 0
        self._placement[key] = groups = self._ask_groups(r0, r1)
        return groups

    def _ask_groups(self, r0: int, r1: int) -> list[tuple[str | None, list[tuple[int, int, int]]]]:
        pieces = [(c, s0, s1) for c, s0, s1 in self._pieces(range(len(self.x_parts)), r0, r1)]
        if self.client is None:  # the local scheduler: one task per thread, contiguous chunks each
            n = max(1, min(len(pieces), os.cpu_count() or 1))
            return [(None, pieces[i * len(pieces) // n : (i + 1) * len(pieces) // n]) for i in range(n)]
        holders = self.client.who_has([self.x_parts[c] for c, _, _ in pieces])
        groups: dict[str | None, list[tuple[int, int, int]]] = {}
        for piece in pieces:
            where = holders.get(self.x_parts[piece[0]].key) or [None]
            groups.setdefault(where[0], []).append(piece)
        return sorted(groups.items(), key=lambda item: item[1][0][0])  # a fixed order: by first chunk

    def _task_gradient(self, r0: int, r1: int):
        """One task per worker through the scheduler: the path without actors, and after a worker is lost."""
        groups = [(w, g) for w, g in self._groups(r0, r1) if g]
        args = [
            (
                type(self.backend),
                self.backend.threads,
                self.backend.strategy,
                self.W,
                self.b,
                [self.x_parts[c] for c, _, _ in g],
                [self.y_parts[c] for c, _, _ in g],
                None if self.sw_parts is None else [self.sw_parts[c] for c, _, _ in g],
                [(s0, s1) for _, s0, s1 in g],
                self.config,
            )
            for _, g in groups
        ]
        if self.client is None:
            return dask.compute(*[dask.delayed(_partial_gradient, pure=False)(*a) for a in args], scheduler="threads")
        futures = [self.client.submit(_partial_gradient, *a, pure=False, **_on(w)) for a, (w, _) in zip(args, groups)]
        from distributed import wait

        wait(futures, timeout=ITERATION_TIMEOUT)  # raises TimeoutError instead of waiting forever
        return self.client.gather(futures)

    def _gradient(self, r0: int, r1: int) -> Gradients:
        parts = self._actor_gradient(r0, r1) if self.actors is not None else None
        if parts is None:
            try:
                parts = self._task_gradient(r0, r1)
            except Exception as e:
                if self.client is None or not _is_timeout(e):
                    raise
                # every worker holding the data may be gone, and its keys stuck waiting for them: place
                # the chunks again, under new keys, on the workers there are now
                self._placement.clear()
                stuck = self.x_parts + self.y_parts + (self.sw_parts or [])
                try:
                    self._place(restricted=False, fresh=True)
                    self.client.cancel(stuck)
                    parts = self._task_gradient(r0, r1)
                except Exception as again:
                    raise RuntimeError(
                        f"the Dask cluster could not compute iteration's gradient within {ITERATION_TIMEOUT:g} s, "
                        "even after placing the data again: its workers may all be lost or overloaded "
                        f"({type(again).__name__}: {again}). The network keeps its last completed snapshot; "
                        "set $SIGMANET_DASK_TIMEOUT to wait longer"
                    ) from None
        self.tasks_per_iteration = len(parts)
        self.seconds_in_tasks += max(p[1] for p in parts)  # the slowest worker bounds the iteration
        total = parts[0][0]
        for part in parts[1:]:  # in the groups' fixed order
            total = total + part[0]
        return total

    def run(self, start: int, iterations: int) -> Stats:
        """Run ``iterations`` iterations from global iteration ``start``."""
        cfg = self.config
        stats = np.zeros(STATS_SIZE)
        L = len(self.W)
        nL = self.W[-1].shape[1]
        for i in range(iterations):
            j = start + i
            r0, r1 = batch_bounds(j, self.n_rows, cfg.batch_size)
            g = self._gradient(r0, r1)
            self._iterations_since_refresh += 1
            m = r1 - r0
            if i == 0:
                stats[0] += g.abs_error
                stats[1] += g.weight * nL
            if i == 0 or cfg.average_loss:
                per_row = m / g.weight if g.weight > 0 else 0.0
                stats[2] += g.loss * per_row
                stats[3] += m
                if cfg.alpha > 0:
                    stats[4] += 0.5 * cfg.alpha * sum(float(np.vdot(w, w)) for w in self.W) * per_row
            self.step += 1
            grads = g.weights + (g.biases or [])
            optimizers.update(
                np,
                cfg,
                self.params,
                grads,
                self.slots,
                self.scratch,
                n_weights=L,
                lr=learning_rate_at(cfg, j, self.n_rows),
                r=reduction_factor(cfg, g.weight),
                step=self.step,
            )
        return Stats(stats)

    def weights(self) -> tuple[list[np.ndarray], list[np.ndarray] | None]:
        """Host copies of the current weights and biases (held on the client)."""
        return [w.copy() for w in self.W], (None if self.b is None else [b.copy() for b in self.b])

    def optimizer_arrays(self) -> dict[str, list[np.ndarray]]:
        """Host copies of the optimizer's arrays (held on the client), by slot."""
        return {name: [a.copy() for a in arrays] for name, arrays in self.slots.items()}


def _is_timeout(e: BaseException) -> bool:
    import asyncio

    return isinstance(e, (TimeoutError, asyncio.TimeoutError)) or "timed out" in str(e).lower()
