"""Training on Dask arrays: the same network, the same backends, where the chunks live.

``Network.fit``, ``predict`` and ``error`` take row-chunked Dask arrays (extra
``dask``) and route them here through ``Backend.for_input``; ``import
sigmanet`` never imports Dask. The algorithm reads like its in-memory twin:
each iteration, every worker computes the gradient summed over the rows of
the batch that it holds (one task per worker, with the network's own backend:
numba on CPU workers, CuPy on GPU workers), the client adds the partial sums
in a fixed order, takes the step and sends the new weights with the next
iteration's tasks. Only weights and gradients travel; the data stays where it
was persisted. Mini-batches keep their in-memory meaning: the same rows, in
the same order, each computed where it lives.

With a ``distributed.Client`` in scope the work runs on its cluster; without
one, on Dask's local threaded scheduler. A worker lost mid-fit is survived:
its chunks are recomputed from their source by the scheduler, and the
iteration's task reruns elsewhere, so the fit ends with the same weights.
"""

from __future__ import annotations

import os
import time
from typing import Any

import dask
import dask.array as da
import numpy as np

from .backends import Backend, TrainConfig, Trainer, get_backend
from .backends.base import batch_bounds, step_scale

# Iterations between asking the scheduler where the chunks live (see DaskTrainer._groups).
REFRESH_EVERY = 50


def _client():
    """The distributed Client in scope, or None (then Dask's local scheduler runs the tasks)."""
    try:
        from distributed import get_client
    except ImportError:
        return None
    try:
        return get_client()
    except ValueError:  # no client
        return None


class DaskBackend(Backend):
    """A backend wrapped to take Dask arrays: checks are structural at once, values in one pass before training."""

    shuffles_rows = False  # a new global order each epoch would move every chunk between workers

    def __init__(self, inner: Backend):
        super().__init__(inner.threads)
        self.inner = inner

    @property  # a ClassVar on other backends; the inner backend's name here
    def name(self) -> str:  # type: ignore[override]
        """The inner backend's name: the network still trains on it."""
        return self.inner.name

    def device(self) -> str:
        """The inner backend's device, and the cluster (or local scheduler) it runs on."""
        client = _client()
        where = f"Dask cluster {client.scheduler.address}" if client is not None else "Dask's local scheduler"
        return f"{self.inner.device()}, on {where}"

    def check_inputs(self, X, n_inputs: int):
        """X's structure, at once: 2-D, numeric, ``n_inputs`` columns (its values: see :class:`DaskTrainer`)."""
        return _checked("X", X, n_inputs)

    def check_targets(self, y, n_outputs: int, n_rows: int):
        """y's structure, at once, like X's, with ``n_rows`` rows."""
        if y.ndim == 1 and n_outputs == 1:
            y = y.reshape(-1, 1)
        y = _checked("y", y, n_outputs)
        if y.shape[0] != n_rows:
            raise ValueError(f"X has {n_rows} rows but y has {y.shape[0]}; they must match")
        return y  # its values ([0, 1], finite) are checked in one pass by the trainer, before any step

    def column_range(self, X):
        """Each column's (min, max), in one pass over the chunks."""
        lo, hi = _compute(X.min(axis=0), X.max(axis=0))
        return np.asarray(lo, np.float64), np.asarray(hi, np.float64)

    def scale(self, X, input_range, dtype):
        """X scaled by the input range, lazily, chunk by chunk."""
        lo, hi = input_range
        span = np.where(hi > lo, hi - lo, 1.0)
        return X.map_blocks(lambda b: ((b - lo) / span).astype(dtype), dtype=dtype)

    def to_device(self, a, dtype):
        """A lazy cast to the network's dtype: the data stays where its chunks live."""
        return a.astype(dtype)

    def to_user(self, out, like):
        """Results stay Dask arrays."""
        return out

    def mean_abs_error(self, y, out):
        """``mean |y - out|`` as a 0-d Dask array."""
        return abs(y.astype(out.dtype) - out).mean()

    def predict(self, weights, biases, X):
        """A Dask array of the outputs, computed block by block where X's chunks live."""
        n_out = weights[-1].shape[1]
        return X.map_blocks(
            _predict_block,
            self.inner.name,
            self.inner.threads,
            weights,
            biases,
            chunks=(X.chunks[0], (n_out,)),
            dtype=X.dtype,
            meta=np.empty((0, n_out), X.dtype),
        )

    def trainer(self, weights, biases, X, y, config: TrainConfig) -> Trainer:
        """A :class:`DaskTrainer` for the inner backend."""
        return DaskTrainer(self.inner, weights, biases, X, y, config)


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


def _compute(*collections):
    client = _client()
    if client is not None:
        return client.compute(list(collections), sync=True)
    return dask.compute(*collections)


def _predict_block(block, backend_name, threads, weights, biases):
    be = get_backend(backend_name, threads=threads)
    return be.to_host(be.predict(weights, biases, be.to_device(block, block.dtype)))


def _partial_gradient(backend_name, threads, weights, biases, xs, ys, slices, loss):
    """Summed gradient over the given rows of the given chunks, on this worker.

    Returns (grads, bias grads, sum |e|, seconds spent computing them).
    """
    t0 = time.perf_counter()
    be = get_backend(backend_name, threads=threads)
    total: Any = None
    for x, y, (s0, s1) in zip(xs, ys, slices):
        part = be.gradient_sums(weights, biases, x[s0:s1], y[s0:s1], loss)
        total = part if total is None else _add(total, part)
    return (*total, time.perf_counter() - t0)


class _ChunkGradients:
    """A long-lived actor on one worker, holding that worker's chunks (no copies: the worker's own arrays).

    Each iteration the client calls :meth:`gradient` directly, without the
    scheduler in the loop: one call per worker per iteration (measured here:
    a 3 ms round trip for two workers, against 15 ms through the scheduler).
    """

    def __init__(self, backend_name, threads, loss, xs, ys):
        self.backend_name, self.threads, self.loss = backend_name, threads, loss
        self.xs, self.ys = xs, ys

    def gradient(self, weights, biases, pieces):
        """(grads, bias grads, sum |e|, seconds) over [(local chunk, first row, stop)]."""
        return _partial_gradient(
            self.backend_name,
            self.threads,
            weights,
            biases,
            [self.xs[j] for j, _, _ in pieces],
            [self.ys[j] for j, _, _ in pieces],
            [(s0, s1) for _, s0, s1 in pieces],
            self.loss,
        )


def _add(a, b):
    grads = [g + h for g, h in zip(a[0], b[0])]
    bias = None if a[1] is None else [g + h for g, h in zip(a[1], b[1])]
    return grads, bias, a[2] + b[2]


class DaskTrainer(Trainer):
    """Exact gradient descent over a Dask array: one task per worker per iteration, steps on the client."""

    def __init__(self, backend: Backend, weights, biases, X, y, config: TrainConfig):
        self.backend, self.config = backend, config
        dt = np.dtype(weights[0].dtype)
        self.W = [np.array(w, dt) for w in weights]
        self.b = None if biases is None else [np.array(b, dt) for b in biases]
        X = X.astype(dt)
        y = y.astype(dt).rechunk({0: X.chunks[0], 1: -1})
        finite_x, finite_y, lo, hi = _compute(da.isfinite(X).all(), da.isfinite(y).all(), y.min(), y.max())
        if not finite_x:
            raise ValueError("X holds NaN or infinite values; remove or impute them first")
        if not finite_y:
            raise ValueError("y holds NaN or infinite values; remove or impute them first")
        if lo < 0 or hi > 1:
            raise ValueError(f"y must lie in [0, 1], the range of the sigmoid output, got values in [{lo:g}, {hi:g}]")
        self.client = _client()
        x_blocks, y_blocks = list(X.to_delayed().ravel()), list(y.to_delayed().ravel())
        if self.client is not None:
            # Each chunk computed on, and kept by, one worker: contiguous ranges of chunks spread over
            # the workers, so each iteration's work is shared (a table built on the client would
            # otherwise land on one worker). If that worker is lost, the scheduler recomputes the chunk
            # from its source elsewhere.
            workers = sorted(self.client.scheduler_info()["workers"]) or [None]
            n = len(x_blocks)

            def place(blocks):
                return [self.client.compute(b, **_on(workers[i * len(workers) // n])) for i, b in enumerate(blocks)]

            self.x_parts, self.y_parts = place(x_blocks), place(y_blocks)
            from distributed import wait

            wait(self.x_parts + self.y_parts)  # in place before the first iteration asks where they are
            self.actors = self._start_actors()
        else:
            self.x_parts = list(dask.persist(*x_blocks))
            self.y_parts = list(dask.persist(*y_blocks))
        self.bounds = np.concatenate([[0], np.cumsum(X.chunks[0])]).astype(np.int64)
        self.n_rows = int(self.bounds[-1])
        self.tasks_per_iteration = 0
        self._placement: dict[tuple[int, int], Any] = {}
        self._iterations_since_refresh = 0
        self.seconds_in_tasks = 0.0  # summed compute time the workers report, for the overhead figure

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
                self.backend.name,
                self.backend.threads,
                self.config.loss,
                [self.x_parts[c] for c in chunks],
                [self.y_parts[c] for c in chunks],
                workers=[worker],
                actor=True,
                pure=False,
            )
            actors.append((chunks, future.result()))
        return actors

    def _actor_gradient(self, r0: int, r1: int):
        """Each actor's share of the batch, one direct call each; None if any call fails (a worker lost)."""
        calls = []
        for chunks, actor in self.actors:
            pieces = []
            for j, c in enumerate(chunks):
                s0, s1 = max(r0, self.bounds[c]), min(r1, self.bounds[c + 1])
                if s0 < s1:
                    pieces.append((j, int(s0 - self.bounds[c]), int(s1 - self.bounds[c])))
            if pieces:
                calls.append(actor.gradient(self.W, self.b, pieces))
        try:
            return [call.result() for call in calls]
        except Exception:  # a lost worker takes its actor: go on with tasks from here
            self.actors = None
            return None

    def _groups(self, r0: int, r1: int) -> list[tuple[str | None, list[tuple[int, int, int]]]]:
        """The batch's rows as (worker, [(chunk, first, stop)]) per worker holding them, in chunk order.

        Where the chunks live is asked of the scheduler once per batch and every ``REFRESH_EVERY``
        iterations after (a lost worker's chunks move; a stale answer costs a transfer, never a
        wrong result): asking every iteration cost a scheduler round trip each.
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
        pieces = []
        for c in range(len(self.x_parts)):
            s0, s1 = max(r0, self.bounds[c]), min(r1, self.bounds[c + 1])
            if s0 < s1:
                pieces.append((c, int(s0 - self.bounds[c]), int(s1 - self.bounds[c])))
        if self.client is None:  # the local scheduler: one task per thread, contiguous chunks each
            n = min(len(pieces), os.cpu_count() or 1)
            return [(None, pieces[i * len(pieces) // n : (i + 1) * len(pieces) // n]) for i in range(n)]
        holders = self.client.who_has([self.x_parts[c] for c, _, _ in pieces])
        groups: dict[str | None, list[tuple[int, int, int]]] = {}
        for piece in pieces:
            where = holders.get(self.x_parts[piece[0]].key) or [None]
            groups.setdefault(where[0], []).append(piece)
        return sorted(groups.items(), key=lambda item: item[1][0][0])  # a fixed order: by first chunk

    def _gradient(self, r0: int, r1: int):
        parts = self._actor_gradient(r0, r1) if self.actors is not None else None
        if parts is None:
            parts = self._task_gradient(r0, r1)
        self.tasks_per_iteration = len(parts)
        self.seconds_in_tasks += max(p[3] for p in parts)  # the slowest worker bounds the iteration
        total = parts[0][:3]
        for part in parts[1:]:  # in the groups' fixed order
            total = _add(total, part[:3])
        return total

    def _task_gradient(self, r0: int, r1: int):
        """One task per worker through the scheduler: the path without actors, and after a worker is lost."""
        groups = self._groups(r0, r1)
        args = [
            (
                self.backend.name,
                self.backend.threads,
                self.W,
                self.b,
                [self.x_parts[c] for c, _, _ in g],
                [self.y_parts[c] for c, _, _ in g],
                [(s0, s1) for _, s0, s1 in g],
                self.config.loss,
            )
            for _, g in groups
        ]
        if self.client is None:
            return dask.compute(*[dask.delayed(_partial_gradient, pure=False)(*a) for a in args], scheduler="threads")
        # one task per worker, on the worker holding its chunks (elsewhere if that worker is lost)
        futures = [self.client.submit(_partial_gradient, *a, pure=False, **_on(w)) for a, (w, _) in zip(args, groups)]
        return self.client.gather(futures)

    def run(self, start: int, iterations: int) -> float:
        """Run ``iterations`` iterations from global iteration ``start``; returns the first one's ``mean |y - out|``."""
        cfg, err0 = self.config, float("nan")
        for i in range(iterations):
            r0, r1 = batch_bounds(start + i, self.n_rows, cfg.batch_size)
            grads, bias_grads, err = self._gradient(r0, r1)
            self._iterations_since_refresh += 1
            if i == 0:
                err0 = err / ((r1 - r0) * self.W[-1].shape[1])
            scale = step_scale(cfg, r1 - r0)
            for k, g in enumerate(grads):  # as the in-memory step: g *= scale, then W += g
                if scale != 1.0:
                    g *= scale
                self.W[k] += g
                if self.b is not None:
                    gb = bias_grads[k]
                    if scale != 1.0:
                        gb *= scale
                    self.b[k] += gb
        return float(err0)

    def weights(self) -> tuple[list[np.ndarray], list[np.ndarray] | None]:
        """Host copies of the current weights and biases (held on the client)."""
        return [w.copy() for w in self.W], (None if self.b is None else [b.copy() for b in self.b])


def as_dask(X: Any, rows_per_chunk: int) -> Any:
    """A NumPy array as a Dask array chunked by rows (a convenience for tests and small examples)."""
    return da.from_array(X, chunks=(rows_per_chunk, -1))


def make_dask_table(n, d=3, o=1, *, blocks_per_chunk=4, seed=0, noise=0.02, dtype="float64"):
    """``datasets.make_table`` as two Dask arrays whose chunks are built where they are computed.

    Each chunk holds ``blocks_per_chunk`` x 65536 rows (the last fewer), and
    is drawn by the worker that computes it: nothing is sent from the client,
    and the rows equal ``make_table(n, ...)``'s.
    """
    from .datasets import ROW_BLOCK, make_table

    step = blocks_per_chunk * ROW_BLOCK
    starts = list(range(0, n, step))
    parts = [
        dask.delayed(make_table, nout=2, pure=True)(
            min(step, n - s), d, o, seed=seed, noise=noise, dtype=dtype, first_row=s
        )
        for s in starts
    ]
    X = da.concatenate([da.from_delayed(p[0], (min(step, n - s), d), dtype=dtype) for p, s in zip(parts, starts)])
    y = da.concatenate([da.from_delayed(p[1], (min(step, n - s), o), dtype=dtype) for p, s in zip(parts, starts)])
    return X, y
