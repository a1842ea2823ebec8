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
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from . import _validation as v
from .backends import TrainConfig, get_backend
from .errors import DivergenceError

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
    fits); ``errors[i]`` is mean |y - output| computed by that iteration's
    forward pass, before its update.
    """

    iterations: list[int] = field(default_factory=list)
    errors: list[float] = field(default_factory=list)

    def __len__(self):
        return len(self.iterations)


def _frozen(a: np.ndarray) -> np.ndarray:
    a = np.array(a, copy=True)
    a.flags.writeable = False
    return a


def init_weights(layers, dtype, seed, init):
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

    def __init__(self, layers, *, backend="auto", dtype="float64", seed=None, init="glorot",
                 bias=False, threads=None):
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
        weights = init_weights(self.layers, self.dtype, seed, init)
        biases = [np.zeros(n, self.dtype) for n in self.layers[1:]] if self.bias else None
        self._set_state(weights, biases, 0)
        self.input_range = None  # (min, max) per input column, applied by fit/predict; see set_input_range
        self.fit_options: dict = {}  # the options of the last fit, stored in checkpoints
        self.input_names = self.target_names = None  # column names, when trained from a CSV

    # -- model state --

    def _set_state(self, weights, biases, iteration):
        self._state = _State(
            tuple(_frozen(w) for w in weights),
            None if biases is None else tuple(_frozen(b) for b in biases),
            int(iteration),
        )

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
        return self._backend.name

    def to(self, backend: str) -> "Network":
        """Move the network to another backend (the weights are host arrays: nothing else changes)."""
        self._backend = get_backend(backend, threads=self.threads)
        return self

    def set_weights(self, weights, biases=None):
        """Replace the weights (and biases), checked against the layer sizes."""
        ws = []
        for k, (shape, w) in enumerate(zip(zip(self.layers[:-1], self.layers[1:]), weights)):
            w = np.asarray(w)
            if w.shape != shape:
                raise ValueError(f"weights[{k}] must have shape {shape}, got {w.shape}")
            if w.dtype.kind not in "biuf" or not np.isfinite(w).all():
                raise ValueError(f"weights[{k}] must be finite real numbers")
            ws.append(w.astype(self.dtype))
        if len(ws) != len(self.layers) - 1:
            raise ValueError(f"weights must hold {len(self.layers) - 1} matrices, got {len(weights)}")
        bs = None
        if self.bias:
            if biases is None or len(biases) != len(ws):
                raise ValueError(f"biases must hold {len(ws)} vectors for a network with bias")
            bs = []
            for k, (n, b) in enumerate(zip(self.layers[1:], biases)):
                b = np.asarray(b)
                if b.shape != (n,) or b.dtype.kind not in "biuf" or not np.isfinite(b).all():
                    raise ValueError(f"biases[{k}] must be {n} finite real numbers, got shape {b.shape}")
                bs.append(b.astype(self.dtype))
        elif biases is not None:
            raise ValueError("biases given for a network built with bias=False")
        self._set_state(ws, bs, self.iteration)

    def set_input_range(self, lo, hi):
        """Scale inputs by ``(X - lo) / (hi - lo)`` in fit and predict (None, None: off).

        Columns with ``hi == lo`` map to 0. The range is saved with the model.
        """
        if lo is None and hi is None:
            self.input_range = None
            return
        lo = np.asarray(lo, np.float64).reshape(-1)
        hi = np.asarray(hi, np.float64).reshape(-1)
        n = self.layers[0]
        if lo.shape != (n,) or hi.shape != (n,):
            raise ValueError(f"the input range needs {n} minima and maxima, got {lo.shape} and {hi.shape}")
        if not (np.isfinite(lo).all() and np.isfinite(hi).all()) or (hi < lo).any():
            raise ValueError("the input range must be finite with max >= min in every column")
        self.input_range = (lo, hi)

    def _scaled(self, X):
        if self.input_range is None:
            return X
        xp = v.array_module(X)
        lo, hi = (xp.asarray(a) for a in self.input_range)
        span = xp.where(hi > lo, hi - lo, 1.0)
        return (X - lo) / span

    # -- training --

    def fit(self, X, y, iterations=60000, learning_rate=1.0, report_every=10000, *,
            loss="mse", batch_size=None, reduction="sum", callback: Callable | None = None,
            progress=None) -> History:
        """Train by gradient descent; continues from the current weights.

        Parameters
        ----------
        X : array (n_rows, n0)
            Inputs; NumPy or (with the CuPy backend) CuPy.
        y : array (n_rows, nL), or (n_rows,) when nL == 1
            Targets in [0, 1].
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
            row order, the last possibly short, visited in turn.
        reduction : {"sum", "mean"}, default "sum"
            "sum" over examples (the seed); "mean" divides each step by the
            batch's rows, which keeps learning_rate ~1 stable on large data.
        callback : callable(iteration, error), optional
            Called at each report point; return ``False`` to stop early.
        progress : callable(iterations_done), optional
            Called after each completed interval with the iterations done in
            this fit (the CLI drives its progress bar with it).

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
        """
        iterations = v.check_int("iterations", iterations)
        learning_rate = v.check_positive_float("learning_rate", learning_rate)
        report_every = iterations if report_every is None else v.check_int("report_every", report_every)
        v.check_choice("loss", loss, v.LOSSES)
        v.check_choice("reduction", reduction, v.REDUCTIONS)
        if batch_size is not None:
            batch_size = v.check_int("batch_size", batch_size)
        if callback is not None and not callable(callback):
            raise TypeError(f"callback must be callable(iteration, error), got {type(callback).__name__}")
        X = v.check_inputs(X, self.layers[0])
        y = v.check_targets(y, self.layers[-1], X.shape[0])
        if batch_size is not None and batch_size > X.shape[0]:
            raise ValueError(f"batch_size={batch_size} exceeds the {X.shape[0]} rows of X; use None for full batch")
        config = TrainConfig(learning_rate=learning_rate, loss=loss, reduction=reduction, batch_size=batch_size)

        state = self._state
        trainer = self._backend.trainer(list(state.weights), None if state.biases is None else list(state.biases),
                                        self._to_backend(self._scaled(X)), self._to_backend(y), config)
        options = dict(learning_rate=learning_rate, loss=loss, reduction=reduction, batch_size=batch_size)
        hist = History()
        done = 0
        while done < iterations:
            n = min(report_every, iterations - done)
            start = state.iteration + done
            err = trainer.run(start, n)
            weights, biases = trainer.weights()
            finite = math.isfinite(err) and all(np.isfinite(w).all() for w in weights) and (
                biases is None or all(np.isfinite(b).all() for b in biases))
            if not finite:
                raise DivergenceError(
                    f"training diverged in the interval starting at iteration {start} "
                    f"(error {err!r}); the network keeps its weights from iteration {self.iteration}. "
                    "Try a smaller learning_rate or reduction='mean'.", iteration=self.iteration)
            done += n
            self._set_state(weights, biases, start + n)  # one assignment: never half-updated
            self.fit_options = options
            hist.iterations.append(start)
            hist.errors.append(err)
            if progress is not None:
                progress(done)
            if callback is not None and callback(start, err) is False:
                break
        return hist

    # -- inference --

    def predict(self, X):
        """The output layer for X, as the same kind of array as X (NumPy in, NumPy out; CuPy in, CuPy out)."""
        X = v.check_inputs(X, self.layers[0])
        kind = v.array_module(X)
        be = self._backend
        out = be.predict(list(self._state.weights),
                         None if self._state.biases is None else list(self._state.biases),
                         be.asarray(self._to_backend(self._scaled(X)), self.dtype))
        if kind is np:
            return be.to_host(out)
        return kind.asarray(out)

    def _to_backend(self, X):
        """Host copy of a CuPy array for a CPU backend; anything else as it is."""
        if v.array_module(X) is not np and self._backend.xp is np:
            return X.get()
        return X

    def error(self, X, y) -> float:
        """mean |y - predict(X)|, the seed's figure."""
        X = v.check_inputs(X, self.layers[0])
        y = v.check_targets(y, self.layers[-1], X.shape[0])
        out = self.predict(X)
        xp = v.array_module(out)
        return float(xp.mean(xp.abs(xp.asarray(y, dtype=out.dtype) - out)))

    def __repr__(self):
        return (f"Network({list(self.layers)}, backend={self.backend!r}, dtype={self.dtype.name!r}, "
                f"bias={self.bias}, iteration={self.iteration})")

    # -- checkpoints --

    def save(self, path) -> None:
        """Write the model to one .npz file, atomically; see :func:`sigmanet.load`."""
        from .checkpoint import save

        save(self, path)
