"""The Network: owns the model (sizes, dtype, weights, iteration count).

It knows nothing of any array library beyond the backend it was given: the
backend owns the arrays and the training loop, and receives a whole report
interval at a time. The model's state lives in one immutable snapshot
(:class:`_State`) replaced in a single assignment after each completed
interval, so a fit that fails or is interrupted leaves the network exactly as
it was after its last completed interval.
"""

from __future__ import annotations

import math
import os
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from . import _validation as v
from . import checkpoint
from .backends import TrainConfig, get_backend
from .errors import DivergenceError, ModelFileError

INITS = ("glorot", "legacy")


@dataclass(frozen=True)
class _State:
    weights: tuple  # host NumPy arrays (n_k, n_{k+1}), read-only
    biases: tuple | None  # host NumPy arrays (n_{k+1},), read-only; None without bias
    iteration: int  # iterations trained so far


@dataclass
class History:
    """What ``fit`` reported: the error at each report point.

    ``iterations[i]`` is a global iteration number (it keeps counting across
    fits); ``errors[i]`` is ``mean |y - output|`` computed by that iteration's
    forward pass, before its update.
    """

    iterations: list[int] = field(default_factory=list)
    errors: list[float] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.iterations)


def _frozen(a: np.ndarray) -> np.ndarray:
    a = np.array(a, copy=True)
    a.flags.writeable = False
    return a


def init_weights(layers: Sequence[int], dtype: DTypeLike, seed: int | None, init: str) -> list[np.ndarray]:
    """Initial weights on the host, the same numbers for every backend.

    ``"legacy"``: the seed's draw, ``2*RandomState(seed).random_sample((n_k, n_{k+1})) - 1``
    for each layer in order from one RandomState.
    ``"glorot"``: uniform in +-4*sqrt(6 / (n_k + n_{k+1})), Glorot and Bengio's
    (2010) bound for sigmoid units (4 times the tanh bound): the scale adapts to
    the layer widths, which keeps deep sigmoid nets out of saturation and off
    the flat start that a smaller bound gives.
    Biases start at zero. NumPy's global random state is never touched.
    """
    shapes = list(zip(layers[:-1], layers[1:]))
    if init == "legacy":
        rs = np.random.RandomState(seed)
        ws = [2 * rs.random_sample(s) - 1 for s in shapes]
    else:
        rng = np.random.default_rng(seed)
        ws = [rng.uniform(-1, 1, s) * (4 * math.sqrt(6.0 / (s[0] + s[1]))) for s in shapes]
    return [w.astype(dtype) for w in ws]


class _EpochOrder:
    """Runs report intervals over shuffled epochs: each interval is cut at epoch ends, and the
    trainer gets each epoch's row order before that epoch's first iteration."""

    def __init__(self, n_rows: int, batch_size: int, seed: int):
        self.n_rows, self.seed = n_rows, seed
        self.n_batches = -(-n_rows // batch_size)
        self.epoch: int | None = None  # the epoch whose order the trainer holds (one trainer per fit)

    def order(self, epoch: int) -> np.ndarray:
        """Epoch ``epoch``'s permutation of the rows: a function of the seed and the epoch alone."""
        return np.random.default_rng([self.seed, epoch]).permutation(self.n_rows)

    def run(self, trainer: Any, start: int, iterations: int) -> float:
        err, at, end = float("nan"), start, start + iterations
        while at < end:
            epoch = at // self.n_batches
            if epoch != self.epoch:
                trainer.set_row_order(self.order(epoch))
                self.epoch = epoch
            count = min(end, (epoch + 1) * self.n_batches) - at
            e = trainer.run(at, count)
            if at == start:
                err = e  # the interval's first iteration, as unshuffled
            at += count
        return err


class Network:
    """A fully connected sigmoid network, trained by the seed's backpropagation.

    Parameters
    ----------
    layers : sequence of int
        Layer sizes ``[n0, n1, ..., nL]``, at least two: ``[3, 1]`` is the
        single-layer perceptron, ``[3, 4, 1]`` the seed's network.
    backend : str, default "auto"
        "numpy", "numba", "cupy" or "auto" (CuPy where a CUDA device is
        usable, else numba, else NumPy; ``$SIGMANET_BACKEND`` overrides).
    dtype : {"float64", "float32"}, default "float64"
    seed : int or None, default None
        Seeds the initial weights (None: fresh entropy).
    init : {"glorot", "legacy"}, default "glorot"
        "legacy" reproduces the seed program's draw exactly.
    bias : bool, default False
        Give each layer a bias unit. The seed has none: its constant input
        column plays that role.
    threads : int or None, default None
        Bound on the CPU threads (BLAS and numba) the backend uses.

    Raises
    ------
    ValueError, TypeError
        For invalid sizes, dtype, seed, init or threads.
    sigmanet.BackendUnavailableError
        If the backend is unknown or cannot run here.

    Examples
    --------
    >>> import numpy as np, sigmanet as sn
    >>> X = np.array([[0, 0, 1], [0, 1, 1], [1, 0, 1], [1, 1, 1]])
    >>> y = np.array([[0], [1], [1], [0]])
    >>> net = sn.Network([3, 4, 1], backend="numpy", seed=1, init="legacy")
    >>> hist = net.fit(X, y, iterations=60000)
    >>> hist.iterations
    [0, 10000, 20000, 30000, 40000, 50000]
    """

    def __init__(
        self,
        layers: Sequence[int],
        *,
        backend: str = "auto",
        dtype: DTypeLike = "float64",
        seed: int | None = None,
        init: str = "glorot",
        bias: bool = False,
        threads: int | None = None,
    ) -> None:
        self._configure(layers, backend, dtype, seed, init, bias, threads)
        weights = init_weights(self.layers, self.dtype, self.seed, init)
        biases = [np.zeros(n, self.dtype) for n in self.layers[1:]] if self.bias else None
        self._set_state(weights, biases, 0)

    def _configure(
        self,
        layers: Sequence[int],
        backend: str,
        dtype: DTypeLike,
        seed: int | None,
        init: str,
        bias: bool,
        threads: int | None,
    ) -> None:
        """Check and store everything but the weights (shared by ``__init__`` and :meth:`from_state`)."""
        self.layers = v.check_layers(layers)
        self.dtype = v.check_dtype(dtype)
        seed = v.check_seed(seed)
        v.check_choice("init", init, INITS)
        if not isinstance(bias, (bool, np.bool_)):
            raise TypeError(f"bias must be True or False, got {bias!r}")
        self.threads = None if threads is None else v.check_int("threads", threads)
        self._backend = get_backend(backend, threads=self.threads)
        self.bias = bool(bias)
        self.seed, self.init = seed, init
        self.input_range: tuple[np.ndarray, np.ndarray] | None = (
            None  # (min, max) per input column, applied by fit/predict; see set_input_range
        )
        self.fit_options: dict[str, Any] = {}  # the options of the last fit, stored in checkpoints
        self.input_names = self.target_names = None  # column names, when trained from a table

    # -- model state --

    def _set_state(self, weights: Sequence[np.ndarray], biases: Sequence[np.ndarray] | None, iteration: int) -> None:
        self._state = _State(
            tuple(_frozen(w) for w in weights),
            None if biases is None else tuple(_frozen(b) for b in biases),
            int(iteration),
        )

    def get_state(self) -> dict[str, Any]:
        """Everything that defines the model, as plain values and host NumPy arrays.

        The inverse of :meth:`from_state`; checkpoints store exactly this.

        Returns
        -------
        dict
            ``layers``, ``dtype``, ``bias``, ``seed``, ``init``, ``iteration``,
            ``weights``, ``biases`` (None without bias), ``input_range``
            (None, or a (min, max) pair of arrays), ``fit_options``,
            ``input_names`` and ``target_names``.
        """
        return {
            "layers": list(self.layers),
            "dtype": self.dtype.name,
            "bias": self.bias,
            "seed": self.seed,
            "init": self.init,
            "iteration": self.iteration,
            "weights": self.weights,
            "biases": self.biases,
            "input_range": None if self.input_range is None else tuple(a.copy() for a in self.input_range),
            "fit_options": dict(self.fit_options),
            "input_names": self.input_names,
            "target_names": self.target_names,
        }

    @classmethod
    def from_state(cls, state: dict, *, backend: str = "auto", threads: int | None = None) -> Network:
        """A network rebuilt from :meth:`get_state`'s dict, on ``backend``; no random draw is made.

        Raises
        ------
        ValueError, TypeError, KeyError
            If the state is inconsistent (weights of the wrong shape, a
            negative iteration, a missing key).
        """
        net = cls.__new__(cls)
        net._configure(
            state["layers"],
            backend,
            state["dtype"],
            state.get("seed"),
            state.get("init", "glorot"),
            state["bias"],
            threads,
        )
        weights, biases = net._checked_weights(state["weights"], state.get("biases"))
        net._set_state(weights, biases, v.check_int("iteration", state["iteration"], minimum=0))
        if state.get("input_range") is not None:
            net.set_input_range(*state["input_range"])
        net.fit_options = dict(state.get("fit_options") or {})
        net.input_names = state.get("input_names")
        net.target_names = state.get("target_names")
        return net

    @property
    def weights(self) -> list[np.ndarray]:
        """Host NumPy copies of the weight matrices, one per layer, ``(n_k, n_{k+1})``."""
        return [w.copy() for w in self._state.weights]

    @property
    def biases(self) -> list[np.ndarray] | None:
        """Host NumPy copies of the bias vectors, or None for a network without bias."""
        return None if self._state.biases is None else [b.copy() for b in self._state.biases]

    @property
    def iteration(self) -> int:
        """Iterations trained so far, across fits and checkpoints."""
        return self._state.iteration

    @property
    def backend(self) -> str:
        """The name of the backend the network trains and predicts on."""
        return self._backend.name

    @property
    def device(self) -> str:
        """What the backend runs on: the CPU's model, or the GPU's name."""
        return self._backend.device()

    def to(self, backend: str) -> Network:
        """Move the network to another backend (the weights are host arrays: nothing else changes)."""
        self._backend = get_backend(backend, threads=self.threads)
        return self

    def _checked_weights(
        self, weights: Sequence[ArrayLike], biases: Sequence[ArrayLike] | None
    ) -> tuple[list[np.ndarray], list[np.ndarray] | None]:
        """(weights, biases) as host arrays of the model's dtype, checked against the layer sizes."""
        shapes = list(zip(self.layers[:-1], self.layers[1:]))
        if len(weights) != len(shapes):
            raise ValueError(f"weights must hold {len(shapes)} matrices, got {len(weights)}")
        ws = []
        for k, (shape, w) in enumerate(zip(shapes, weights)):
            w = np.asarray(w)
            if w.shape != shape:
                raise ValueError(f"weights[{k}] must have shape {shape}, got {w.shape}")
            if w.dtype.kind not in "biuf" or not np.isfinite(w).all():
                raise ValueError(f"weights[{k}] must be finite real numbers")
            ws.append(w.astype(self.dtype))
        if not self.bias:
            if biases is not None:
                raise ValueError("biases given for a network built with bias=False")
            return ws, None
        if biases is None or len(biases) != len(ws):
            raise ValueError(f"biases must hold {len(ws)} vectors for a network with bias")
        bs = []
        for k, (n, b) in enumerate(zip(self.layers[1:], biases)):
            b = np.asarray(b)
            if b.shape != (n,) or b.dtype.kind not in "biuf" or not np.isfinite(b).all():
                raise ValueError(f"biases[{k}] must be {n} finite real numbers, got shape {b.shape}")
            bs.append(b.astype(self.dtype))
        return ws, bs

    def set_weights(self, weights: Sequence[ArrayLike], biases: Sequence[ArrayLike] | None = None) -> None:
        """Replace the weights (and biases); the iteration count is kept.

        Parameters
        ----------
        weights : sequence of array-like
            One matrix per layer, ``weights[k]`` of shape ``(n_k, n_{k+1})``;
            cast to the network's dtype.
        biases : sequence of array-like, optional
            One vector per layer, ``(n_{k+1},)``; required with ``bias=True``
            and refused without.

        Raises
        ------
        ValueError
            For a wrong count, a wrong shape, or a non-finite value; the
            network is left unchanged.
        """
        ws, bs = self._checked_weights(weights, biases)
        self._set_state(ws, bs, self.iteration)

    def set_input_range(self, lo: ArrayLike | None, hi: ArrayLike | None) -> None:
        """Scale inputs by ``(X - lo) / (hi - lo)`` in fit and predict, per column.

        Parameters
        ----------
        lo, hi : array-like of shape (n0,), or both None
            The smallest and largest value of each input column; columns with
            ``hi == lo`` map to 0. ``None, None`` turns scaling off. The range
            is saved with the model.

        Raises
        ------
        ValueError
            If the shapes do not match the inputs, or a value is not finite,
            or ``hi < lo`` in some column (the message names the columns).
        """
        if lo is None and hi is None:
            self.input_range = None
            return
        lo = np.asarray(lo, np.float64).reshape(-1)
        hi = np.asarray(hi, np.float64).reshape(-1)
        n = self.layers[0]
        if lo.shape != (n,) or hi.shape != (n,):
            raise ValueError(f"the input range needs {n} minima and maxima, got {lo.shape} and {hi.shape}")
        bad = np.flatnonzero(~(np.isfinite(lo) & np.isfinite(hi)) | (hi < lo))
        if bad.size:
            raise ValueError(
                f"the input range must be finite with max >= min in every column; "
                f"input column(s) {bad.tolist()} are not (min {lo[bad].tolist()}, max {hi[bad].tolist()})"
            )
        self.input_range = (lo, hi)

    # -- training --

    def fit(
        self,
        X: Any,
        y: Any,
        iterations: int = 60000,
        learning_rate: float = 1.0,
        report_every: int | None = 10000,
        *,
        loss: str = "mse",
        batch_size: int | None = None,
        reduction: str = "sum",
        scale_inputs: bool = False,
        callback: Callable[[int, float], bool | None] | None = None,
        progress: Callable[[int], object] | None = None,
        report_seconds: float | None = None,
        warn_stuck: bool = True,
        shuffle: bool | int = False,
    ) -> History:
        """Train by gradient descent; continues from the current weights.

        Parameters
        ----------
        X : array (n_rows, n0)
            Inputs; NumPy or (with the CuPy backend) CuPy.
        y : array (n_rows, nL), or (n_rows,) when nL == 1
            Targets in [0, 1]; class labels need one 0/1 column per class.
        iterations : int, default 60000
            Gradient steps to take (one per mini-batch when ``batch_size`` is set).
        learning_rate : float, default 1.0
        report_every : int or None, default 10000
            Record the error every this many iterations (None: only the first).
            Each report interval runs as one call into the backend.
        loss : {"mse", "bce"}, default "mse"
            "mse" is the seed's delta, ``(y - out) * out*(1-out)``; "bce"
            (cross-entropy) drops the sigmoid derivative: ``y - out``.
        batch_size : int or None, default None
            None: full batch (the seed). Otherwise consecutive mini-batches in
            row order (or, with ``shuffle``, in each epoch's order), the last
            possibly short, visited in turn.
        reduction : {"sum", "mean"}, default "sum"
            "sum" over examples (the seed); "mean" divides each step by the
            batch's rows, which keeps learning_rate ~1 stable on large data.
        scale_inputs : bool, default False
            Scale each input column to [0, 1] by its range in this X (see
            :meth:`set_input_range`), unless the network already has a range,
            which is then kept. The range is saved with the model and applied
            by :meth:`predict`. Unscaled inputs of large magnitude saturate the
            sigmoid units, and training then stalls.
        callback : callable(iteration, error), optional
            Called at each report point; return ``False`` to stop early.
        progress : callable(iterations_done), optional
            Called after each completed interval with the iterations done in
            this fit (``sigmanet train`` drives its progress bar with it).
        report_seconds : float, optional
            Size the report intervals by time instead: each lasts about this
            many seconds (at most ``report_every`` iterations), starting from
            a single iteration. What Ctrl-C can lose is then bounded in time,
            on 4 rows or on millions.

        warn_stuck : bool, default True
            Warn (once) when the fit is stuck; see Warns. Callers that run
            one short fit per epoch and judge progress themselves (the
            scikit-learn estimators) turn it off.
        shuffle : bool or int, default False
            With ``batch_size``: draw a new order of the rows for every epoch
            (an epoch is one pass over the mini-batches: global iterations
            ``e * n_batches`` to ``(e + 1) * n_batches - 1``). The order of epoch
            ``e`` is ``numpy.random.default_rng([seed, e]).permutation(n_rows)``,
            so it depends on the seed and the epoch alone: a fit continued
            later, or resumed from a checkpoint, goes on exactly as one fit
            would have. ``True`` takes the network's ``seed`` (or, for a network
            built without one, the seed the last shuffled fit used, else a new
            one, stored in ``fit_options``); an int is the seed itself. X and y
            are not modified: the backend trains on its own gathered copy,
            which costs one more copy of X and y in memory. Ignored for full
            batches (a full-batch step does not depend on the order). Not
            available for Dask arrays.

        Returns
        -------
        History

        Raises
        ------
        ValueError, TypeError
            For invalid data or options; raised before any training.
        sigmanet.DivergenceError
            If the weights or the error become non-finite; the network keeps the
            weights of its last finite report point.

        Warns
        -----
        RuntimeWarning
            Once, when the error did not move at all across the report points
            after the first, or a layer's sigmoid units are saturated: the fit
            is stuck.
        """
        iterations = v.check_int("iterations", iterations)
        learning_rate = v.check_positive_float("learning_rate", learning_rate)
        report_every = iterations if report_every is None else v.check_int("report_every", report_every)
        v.check_choice("loss", loss, v.LOSSES)
        v.check_choice("reduction", reduction, v.REDUCTIONS)
        if batch_size is not None:
            batch_size = v.check_int("batch_size", batch_size)
        if not isinstance(scale_inputs, (bool, np.bool_)):
            raise TypeError(f"scale_inputs must be True or False, got {scale_inputs!r}")
        for name, fn in (("callback", callback), ("progress", progress)):
            if fn is not None and not callable(fn):
                raise TypeError(f"{name} must be callable, got {type(fn).__name__}")
        if report_seconds is not None:
            report_seconds = v.check_positive_float("report_seconds", report_seconds)
        shuffle_seed = self._shuffle_seed(shuffle)
        be = self._backend.for_input(X)
        if shuffle_seed is not None and batch_size is not None and not be.shuffles_rows:
            raise ValueError(
                f"shuffle is not available on the {be.name} backend (for Dask arrays: shuffle the rows once "
                "before training, or train without shuffle)"
            )
        X = be.check_inputs(X, self.layers[0])
        y = be.check_targets(y, self.layers[-1], X.shape[0])
        if batch_size is not None and batch_size > X.shape[0]:
            raise ValueError(f"batch_size={batch_size} exceeds the {X.shape[0]} rows of X; use None for full batch")
        input_range = self.input_range
        if scale_inputs and input_range is None:
            input_range = be.column_range(X)
        config = TrainConfig(learning_rate=learning_rate, loss=loss, reduction=reduction, batch_size=batch_size)
        epochs = None  # shuffled mini-batches: each epoch's order (a full batch is not reordered)
        if shuffle_seed is not None and batch_size is not None:
            epochs = _EpochOrder(X.shape[0], batch_size, shuffle_seed)
            be.check_memory(  # the trainer's own gathered copy of X and y
                X.nbytes + y.nbytes, f"a shuffled copy of X and y ({X.shape[0]} rows), beside the originals"
            )
        Xs = X if input_range is None else be.scale(X, input_range, self.dtype)
        state = self._state
        trainer = be.trainer(list(state.weights), None if state.biases is None else list(state.biases), Xs, y, config)
        shuffle_option: bool | int = False if shuffle_seed is None else shuffle_seed
        options = dict(
            learning_rate=learning_rate, loss=loss, reduction=reduction, batch_size=batch_size, shuffle=shuffle_option
        )
        hist = History()
        done, n = 0, report_every if report_seconds is None else 1
        while done < iterations:
            n = min(n, iterations - done)
            start = state.iteration + done
            t0 = time.perf_counter()
            err = trainer.run(start, n) if epochs is None else epochs.run(trainer, start, n)
            weights, biases = trainer.weights()
            elapsed = time.perf_counter() - t0
            finite = (
                math.isfinite(err)
                and all(np.isfinite(w).all() for w in weights)
                and (biases is None or all(np.isfinite(b).all() for b in biases))
            )
            if not finite:
                raise DivergenceError(
                    f"training diverged in the interval starting at iteration {start} "
                    f"(error {err!r}); the network keeps its weights from iteration {self.iteration}. "
                    "Try a smaller learning_rate or reduction='mean'.",
                    iteration=self.iteration,
                )
            done += n
            self._set_state(weights, biases, start + n)  # one assignment: never half-updated
            self.input_range = input_range
            self.fit_options = options
            hist.iterations.append(start)
            hist.errors.append(err)
            if progress is not None:
                progress(done)
            if callback is not None and callback(start, err) is False:
                break
            if report_seconds is not None:  # grow towards report_seconds per interval, at most 4x at a time
                n = max(1, min(4 * n, report_every, int(n * report_seconds / max(elapsed, 1e-6))))
        if warn_stuck:
            self._warn_if_stuck(hist, be, Xs)
        return hist

    def _shuffle_seed(self, shuffle: bool | int) -> int | None:
        """The seed of the epochs' row orders for ``fit(shuffle=...)``, or None when not shuffling."""
        if isinstance(shuffle, (bool, np.bool_)):
            if not shuffle:
                return None
            if self.seed is not None:
                return int(self.seed)
            previous = self.fit_options.get("shuffle")
            if isinstance(previous, int) and not isinstance(previous, bool):
                return previous  # a network built without a seed: the seed its last shuffled fit drew
            return int(np.random.SeedSequence().entropy % 2**63)  # type: ignore[operator]
        return v.check_int("shuffle", shuffle, minimum=0)

    def _warn_if_stuck(self, hist: History, be: Any, Xs: Any) -> None:
        """One RuntimeWarning when the error never moved, or every unit of a hidden layer is saturated.

        Saturated: on the first 256 rows (at least 8), 99% or more of the
        outputs of a layer of two or more units lie within 1e-6 of 0 or 1, so
        almost no gradient flows back through it. One unit on a few rows saturates by chance; the output
        layer of a well-trained classifier may saturate, so only a
        perceptron's output layer, its only layer, is checked.
        """
        errs = hist.errors[1:]  # the first report is the starting point; stuck is what follows
        moved = len(errs) < 2 or max(errs) - min(errs) > 1e-9 * max(errs)
        a = be.to_host(be.to_device(Xs[:256], self.dtype))
        weights, biases = self._state.weights, self._state.biases
        saturated = False
        with np.errstate(over="ignore"):
            for k in range(max(1, len(weights) - 1)):
                z = a @ weights[k] + (0 if biases is None else biases[k])
                a = 1 / (1 + np.exp(-z))
                if a.shape[0] >= 8 and a.shape[1] >= 2:
                    saturated |= bool(np.mean((a < 1e-6) | (a > 1 - 1e-6)) >= 0.99)
        if moved and not saturated:
            return
        why = (
            f"the error did not move across the report points (stayed at {hist.errors[-1]:.6g})"
            if not moved
            else "the sigmoid units of a layer are saturated (99% of their outputs within 1e-6 of 0 or 1)"
        )
        warnings.warn(
            f"training is stuck: {why}. Try scale_inputs=True (or scale X to [0, 1]), reduction='mean', "
            "or a smaller learning_rate.",
            RuntimeWarning,
            stacklevel=3,
        )

    # -- inference --

    def predict(self, X: Any) -> Any:
        """The output layer for X.

        Parameters
        ----------
        X : array (n_rows, n0)
            NumPy, or CuPy; scaled by the network's input range if it has one.

        Returns
        -------
        array (n_rows, nL)
            The same kind of array as X (NumPy in, NumPy out; CuPy in, CuPy
            out), of the network's dtype. Computed in row blocks: memory is X,
            the output and one block, whatever the row count.

        Raises
        ------
        ValueError, TypeError
            If X is not a finite numeric 2-D array with n0 columns.
        """
        be, state = self._backend.for_input(X), self._state
        X = be.check_inputs(X, self.layers[0])
        Xs = X if self.input_range is None else be.scale(X, self.input_range, self.dtype)
        out = be.predict(
            list(state.weights),
            None if state.biases is None else list(state.biases),
            be.to_device(Xs, self.dtype),
        )
        return be.to_user(out, like=X)

    def error(self, X: Any, y: Any) -> Any:
        """The seed's figure, ``mean |y - predict(X)|``.

        Parameters
        ----------
        X : array (n_rows, n0)
        y : array (n_rows, nL), or (n_rows,) when nL == 1

        Returns
        -------
        float
            A Python float; for Dask arrays, a 0-d Dask array (``.compute()`` it).

        Raises
        ------
        ValueError, TypeError
            As :meth:`fit` does for bad X or y.
        """
        be = self._backend.for_input(X)
        X = be.check_inputs(X, self.layers[0])
        y = be.check_targets(y, self.layers[-1], X.shape[0])
        return be.mean_abs_error(y, self.predict(X))

    def __repr__(self) -> str:
        return (
            f"Network({list(self.layers)}, backend={self.backend!r}, dtype={self.dtype.name!r}, "
            f"bias={self.bias}, iteration={self.iteration})"
        )

    # -- checkpoints --

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the model to one .npz file, atomically; see :func:`sigmanet.load`."""
        checkpoint.write(path, self.get_state())


def load(path: str | os.PathLike[str], backend: str = "auto", *, threads: int | None = None) -> Network:
    """Load a model saved by :meth:`Network.save` onto ``backend``.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    sigmanet.ModelFileError
        If the file is truncated, corrupted, not a sigmanet model, or from a
        newer format.
    """
    state = checkpoint.read(path)
    try:
        return Network.from_state(state, backend=backend, threads=threads)
    except (KeyError, TypeError, ValueError) as e:
        if type(e).__module__.startswith("sigmanet"):
            raise
        raise ModelFileError(f"{os.fspath(path)!r} has an inconsistent model: {e}") from None
