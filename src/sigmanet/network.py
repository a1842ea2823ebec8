"""The Network: owns the model (sizes, dtype, weights, iteration count) and its optimizer's state.

It knows nothing of any array library beyond the backend it was given: the
backend owns the arrays and the training loop, and receives a whole report
interval at a time. The model's state lives in one immutable snapshot
(:class:`_State`: weights, biases, iteration, input range, the options it was
trained with, the optimizer's state) replaced in a single assignment after
each completed piece of training, so a fit that fails or is interrupted leaves
the network exactly as it was after its last completed piece, with every part
of the state agreeing.
"""

from __future__ import annotations

import dataclasses
import math
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from . import _validation as v
from . import checkpoint
from ._arrays import from_user, is_sparse
from ._plan import Stats, TrainConfig, rows_per_step
from .backends import for_input, get_backend, on_stream
from .backends._blas import blas_threads
from .errors import DivergenceError, ModelFileError, warn_at_caller
from .numerics import saturated_share
from .optimizers import OptimizerState

INITS = ("glorot", "legacy")
# Global iterations a model may reach: every engine counts them in 64-bit integers, with room to add.
MAX_ITERATION = 1 << 62
# The longest stretch of training between two snapshots of the state: what Ctrl-C can lose, and how
# long an interrupt can wait, whatever report_every says.
SNAPSHOT_SECONDS = 0.5

# What fit uses for an option it is not given and the network has no stored value for.
FIT_DEFAULTS: dict[str, Any] = dict(
    learning_rate=1.0,
    loss=None,  # the output layer's own: "mse" for sigmoid (the seed's) and identity, "cross_entropy" for softmax
    reduction="sum",
    batch_size=None,
    shuffle=False,
    optimizer="sgd",
    momentum=0.9,
    beta_1=0.9,
    beta_2=0.999,
    epsilon=1e-8,
    alpha=0.0,
    schedule="constant",
    power_t=0.5,
    tol=1e-4,
    n_iter_no_change=10,
    average_loss=False,
    class_weight=None,
)


@dataclass(frozen=True)
class _Schedule:
    """The adaptive schedule's state: its factor on the learning rate, the best loss, intervals without gain."""

    scale: float = 1.0
    best: float = math.inf
    stalled: int = 0


@dataclass(frozen=True)
class _State:
    weights: tuple  # host NumPy arrays (n_k, n_{k+1}), read-only
    biases: tuple | None  # host NumPy arrays (n_{k+1},), read-only; None without bias
    iteration: int  # iterations trained so far
    input_range: tuple[np.ndarray, np.ndarray] | None = None  # (min, max) per input column
    fit_options: dict = field(default_factory=dict)  # the options of the last fit
    optimizer: OptimizerState | None = None
    schedule: _Schedule = _Schedule()


@dataclass
class History:
    """What ``fit`` reported: the error and the loss at each report point, and the options it used.

    ``iterations[i]`` is a global iteration number (it keeps counting across
    fits); ``errors[i]`` is ``mean |y - output|`` computed by that iteration's
    forward pass, before its update (weighted by ``sample_weight`` when
    given); ``losses[i]`` is the loss the fit minimises (per row, weighted,
    with the L2 penalty), measured by the same pass, or with
    ``average_loss=True`` the mean over the interval's steps;
    ``data_losses[i]`` and ``penalties[i]`` are its two parts (their sum).
    ``stuck`` is what :meth:`Network.diagnose` found after the fit ("saturated",
    "frozen" or None; also None when ``warn_stuck=False`` skipped the check).
    """

    iterations: list[int] = field(default_factory=list)
    errors: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)
    data_losses: list[float] = field(default_factory=list)
    penalties: list[float] = field(default_factory=list)
    stuck: str | None = None

    def __len__(self) -> int:
        return len(self.iterations)


class StuckWarning(RuntimeWarning):
    """A fit is stuck: ``cause`` is "saturated" (a layer's sigmoid units are pinned at 0 or 1, usually
    unscaled inputs) or "frozen" (the error stopped moving, usually a learning rate far too large or small)."""

    def __init__(self, message: str, cause: str):
        super().__init__(message)
        self.cause = cause


def _frozen(a: Any) -> np.ndarray:
    out: np.ndarray = np.array(a, copy=True)
    out.flags.writeable = False
    return out


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
    """Runs stretches of training over shuffled epochs: each stretch is cut at epoch ends, and the
    trainer gets each epoch's row order before that epoch's first iteration."""

    def __init__(self, n_rows: int, batch_size: int, seed: int, average_loss: bool):
        self.n_rows, self.seed, self.average_loss = n_rows, seed, average_loss
        self.n_batches = -(-n_rows // batch_size)
        self.epoch: int | None = None  # the epoch whose order the trainer holds (one trainer per fit)

    def order(self, epoch: int) -> np.ndarray:
        """Epoch ``epoch``'s permutation of the rows: a function of the seed and the epoch alone."""
        return np.random.default_rng([self.seed, epoch]).permutation(self.n_rows)

    def run(self, trainer: Any, start: int, iterations: int) -> Stats:
        stats: Stats | None = None
        at, end = start, start + iterations
        while at < end:
            epoch = at // self.n_batches
            if epoch != self.epoch:
                trainer.set_row_order(self.order(epoch))
                self.epoch = epoch
            count = min(end, (epoch + 1) * self.n_batches) - at
            part = trainer.run(at, count)
            stats = part if stats is None else stats.then(part, self.average_loss)  # the first iteration's error
            at += count
        assert stats is not None
        return stats


def _class_weight_keys(cw: Any) -> Any:
    """A ``class_weight`` dict with its class indices as ints again (a model file's JSON header holds them
    as strings); anything else as it is."""
    if not isinstance(cw, dict):
        return cw
    return {int(k) if isinstance(k, str) and k.lstrip("-").isdigit() else k: w for k, w in cw.items()}


class Network:
    """A fully connected sigmoid network, trained by the seed's backpropagation.

    Parameters
    ----------
    layers : sequence of int
        Layer sizes ``[n0, n1, ..., nL]``, at least two: ``[3, 1]`` is the
        single-layer perceptron, ``[3, 4, 1]`` the seed's network.
    backend : str, default "auto"
        "numpy", "numba", "cupy" or "auto" (CuPy where a CUDA device is
        usable, else numba, else NumPy; ``$SIGMANET_BACKEND`` overrides). A
        suffix pins one of the backend's engines: "numba:fused",
        "numba:compiled", "cupy:graph" (see each backend's ``strategies``).
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
    output : {"sigmoid", "softmax", "identity"}, default "sigmoid"
        The output layer's activation (hidden layers are always sigmoid):
        "sigmoid" (the seed's; binary and multi-label targets in [0, 1]),
        "softmax" (mutually exclusive classes, one-hot rows; cross-entropy),
        "identity" (regression on any real targets; squared error).

    Raises
    ------
    ValueError, TypeError
        For invalid sizes, dtype, seed, init, threads or output.
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
        output: str = "sigmoid",
    ) -> None:
        self._configure(layers, backend, dtype, seed, init, bias, threads, output)
        try:
            weights = init_weights(self.layers, self.dtype, self.seed, init)
        except MemoryError as e:
            n = sum(p * q for p, q in zip(self.layers[:-1], self.layers[1:]))
            raise MemoryError(
                f"layers {list(self.layers)} need {n:,} weights ({n * self.dtype.itemsize / 2**30:,.1f} GiB in "
                f"{self.dtype.name}), more than this machine could allocate ({e}); use smaller layers"
            ) from None
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
        output: str,
    ) -> None:
        """Check and store everything but the weights (shared by ``__init__`` and :meth:`from_state`)."""
        self.layers = v.check_layers(layers)
        self.dtype = v.check_dtype(dtype)
        seed = v.check_seed(seed)
        v.check_choice("init", init, INITS)
        if init == "legacy" and seed is not None and seed >= 2**32:
            raise ValueError(
                f"init='legacy' draws from NumPy's RandomState, whose seed must be below 2**32; got {seed}"
            )
        self.bias = v.check_bool("bias", bias)
        self.output = v.check_output(output, self.layers[-1])
        if threads is not None:
            threads = v.check_int("threads", threads, maximum=1024)
        self.threads = threads
        self._backend = get_backend(backend, threads=self.threads)
        self.seed, self.init = seed, init
        self.input_names: list[str] | None = None  # column names, when trained from a table
        self.target_names: list[str] | None = None
        self._lock = threading.Lock()  # one fit at a time on one network
        self._fitting_in: int | None = None  # the thread whose fit holds the lock

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_lock", None)
        state.pop("_fitting_in", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()
        self._fitting_in = None

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
            ``layers``, ``dtype``, ``bias``, ``output``, ``seed``, ``init``,
            ``iteration``, ``weights``, ``biases`` (None without bias),
            ``input_range`` (None, or a (min, max) pair of arrays),
            ``fit_options``, ``optimizer`` (None, or a dict with ``rule``,
            ``step`` and ``slots``), ``schedule`` (the adaptive schedule's
            ``scale``, ``best`` and ``stalled``), ``input_names`` and
            ``target_names``.
        """
        s = self._state
        opt = s.optimizer
        return {
            "layers": list(self.layers),
            "dtype": self.dtype.name,
            "bias": self.bias,
            "output": self.output,
            "seed": self.seed,
            "init": self.init,
            "iteration": s.iteration,
            "weights": self.weights,
            "biases": self.biases,
            "input_range": None if s.input_range is None else tuple(a.copy() for a in s.input_range),
            "fit_options": dict(s.fit_options),
            "optimizer": None
            if opt is None
            else {
                "rule": opt.rule,
                "step": opt.step,
                "slots": {k: [a.copy() for a in v] for k, v in opt.slots.items()},
            },
            "schedule": dataclasses.asdict(s.schedule),
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
            state.get("output") or "sigmoid",
        )
        weights, biases = net._checked_weights(state["weights"], state.get("biases"))
        iteration = v.check_int("iteration", state["iteration"], minimum=0, maximum=MAX_ITERATION)
        input_range = None
        if state.get("input_range") is not None:
            input_range = net._checked_range(*state["input_range"])
        optimizer = None
        if state.get("optimizer") is not None:
            optimizer = net._checked_optimizer(state["optimizer"], weights + (biases or []))
        schedule = _Schedule(**(state.get("schedule") or {}))
        fit_options = dict(state.get("fit_options") or {})
        if "class_weight" in fit_options:
            fit_options["class_weight"] = _class_weight_keys(fit_options["class_weight"])
        net._state = _State(
            tuple(_frozen(w) for w in weights),
            None if biases is None else tuple(_frozen(b) for b in biases),
            iteration,
            input_range,
            fit_options,
            optimizer,
            schedule,
        )
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
    def input_range(self) -> tuple[np.ndarray, np.ndarray] | None:
        """The (min, max) per input column that fit and predict scale by, or None (see :meth:`set_input_range`)."""
        r = self._state.input_range
        return None if r is None else (r[0].copy(), r[1].copy())

    @property
    def fit_options(self) -> dict[str, Any]:
        """The options of the last fit (a continued fit takes each one it is not given)."""
        return dict(self._state.fit_options)

    @property
    def optimizer_state(self) -> OptimizerState | None:
        """The optimizer's state (velocities, moments, steps taken), or None before any fit."""
        return self._state.optimizer

    @property
    def backend(self) -> str:
        """The name of the backend the network trains and predicts on (with its pinned engine, if any)."""
        return self._backend.spec

    @property
    def device(self) -> str:
        """What the backend runs on: the CPU's model, or the GPU's name."""
        return self._backend.device()

    def to(self, backend: str) -> Network:
        """Move the network to another backend (the weights are host arrays: nothing else changes)."""
        self._backend = get_backend(backend, threads=self.threads)
        return self

    def reset_optimizer(self) -> None:
        """Forget the optimizer's state (velocities, moments, steps) and the adaptive schedule's: the next
        fit starts them afresh, as a new scikit-learn ``fit`` does."""
        self._state = dataclasses.replace(self._state, optimizer=None, schedule=_Schedule())

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
            ws.append(v.check_parameter(f"weights[{k}]", w, self.dtype))
        if not self.bias:
            if biases is not None:
                raise ValueError("biases given for a network built with bias=False")
            return ws, None
        if biases is None or len(biases) != len(ws):
            raise ValueError(f"biases must hold {len(ws)} vectors for a network with bias")
        bs = []
        for k, (n, b) in enumerate(zip(self.layers[1:], biases)):
            b = np.asarray(b)
            if b.shape != (n,):
                raise ValueError(f"biases[{k}] must be {n} finite real numbers, got shape {b.shape}")
            bs.append(v.check_parameter(f"biases[{k}]", b, self.dtype, f"{n} finite real numbers"))
        return ws, bs

    def _checked_optimizer(self, opt: dict, params: list[np.ndarray]) -> OptimizerState:
        """An optimizer state dict (from :meth:`get_state`) checked against the parameters' shapes."""
        from .optimizers import SLOTS

        rule = v.check_choice("optimizer rule", opt.get("rule"), tuple(SLOTS))
        step = v.check_int("optimizer step", opt.get("step"), minimum=0, maximum=MAX_ITERATION)
        slots = opt.get("slots") or {}
        if set(slots) != set(SLOTS[rule]):
            raise ValueError(f"the {rule} optimizer keeps {list(SLOTS[rule])}, the state holds {sorted(slots)}")
        checked = {}
        for name, arrays in slots.items():
            if len(arrays) != len(params):
                raise ValueError(f"optimizer slot {name!r} holds {len(arrays)} arrays for {len(params)} parameters")
            out = []
            for i, (a, p) in enumerate(zip(arrays, params)):
                a = np.asarray(a)
                if a.shape != p.shape or a.dtype.kind != "f":
                    raise ValueError(f"optimizer slot {name!r}[{i}] must be finite, of shape {p.shape}")
                out.append(v.check_parameter(f"optimizer slot {name!r}[{i}]", a, self.dtype, "finite"))
            checked[name] = out
        return OptimizerState(rule, 0).with_arrays(step, checked)

    def set_weights(self, weights: Sequence[ArrayLike], biases: Sequence[ArrayLike] | None = None) -> None:
        """Replace the weights (and biases); the iteration count and the optimizer's state are kept.

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
        self._state = dataclasses.replace(
            self._state,
            weights=tuple(_frozen(w) for w in ws),
            biases=None if bs is None else tuple(_frozen(b) for b in bs),
        )

    def _checked_range(self, lo: ArrayLike | None, hi: ArrayLike | None) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = v.check_input_range(lo, hi, self.layers[0])
        return _frozen(lo), _frozen(hi)

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
            self._state = dataclasses.replace(self._state, input_range=None)
            return
        self._state = dataclasses.replace(self._state, input_range=self._checked_range(lo, hi))

    # -- training --

    def _resolve_options(self, given: dict[str, Any]) -> dict[str, Any]:
        """Each option: as given, else as the last fit stored it, else its default; then checked."""
        stored = self._state.fit_options
        opts = {k: (given[k] if given.get(k) is not None else stored.get(k, FIT_DEFAULTS[k])) for k in FIT_DEFAULTS}
        if given.get("batch_size") == "full":
            opts["batch_size"] = None
        opts["loss"] = v.check_loss(opts["loss"], self.output)
        opts = v.check_optimizer_options(opts)
        if opts["batch_size"] is not None:
            opts["batch_size"] = v.check_int("batch_size", opts["batch_size"])
        opts["tol"] = v.check_real("tol", opts["tol"], 0.0, math.inf, high_open=True)
        opts["n_iter_no_change"] = v.check_int("n_iter_no_change", opts["n_iter_no_change"])
        opts["average_loss"] = v.check_bool("average_loss", opts["average_loss"])
        cw = opts["class_weight"] = _class_weight_keys(opts["class_weight"])
        if isinstance(cw, dict):
            if not cw:
                opts["class_weight"] = None
        elif cw is not None and cw != "balanced":
            raise ValueError(f"class_weight must be a dict {{class: weight}}, 'balanced' or None, got {cw!r}")
        return opts

    def fit(
        self,
        X: Any,
        y: Any,
        iterations: int = 60000,
        learning_rate: float | None = None,
        report_every: int | None = 10000,
        *,
        loss: str | None = None,
        batch_size: int | str | None = None,
        reduction: str | None = None,
        scale_inputs: bool = False,
        callback: Callable[[int, float], bool | None] | None = None,
        progress: Callable[[int], object] | None = None,
        report_seconds: float | None = None,
        warn_stuck: bool = True,
        on_report: Callable[[History], bool | None] | None = None,
        shuffle: bool | int | None = None,
        optimizer: str | None = None,
        momentum: float | None = None,
        beta_1: float | None = None,
        beta_2: float | None = None,
        epsilon: float | None = None,
        alpha: float | None = None,
        schedule: str | None = None,
        power_t: float | None = None,
        tol: float | None = None,
        n_iter_no_change: int | None = None,
        average_loss: bool | None = None,
        sample_weight: Any = None,
        class_weight: dict | str | None = None,
        stream: Any = None,
    ) -> History:
        """Train by gradient descent; continues from the current weights and optimizer state.

        Every training option left unset takes the value the last fit used
        (stored with the model, so also after :func:`sigmanet.load`), else the
        default below; ``History.options`` says which were used.

        Parameters
        ----------
        X : array (n_rows, n0)
            Inputs: NumPy, CuPy, SciPy sparse (CSR/CSC), a Dask array, or any
            array with ``__dlpack__`` (PyTorch, JAX), read without a copy
            where the memory allows.
        y : array (n_rows, nL), or (n_rows,) when nL == 1
            Targets: in [0, 1] for a sigmoid output (class labels need one 0/1
            column per class); one-hot rows for softmax; any real numbers for
            identity.
        iterations : int, default 60000
            Gradient steps to take (one per mini-batch when ``batch_size`` is set).
        learning_rate : float, default 1.0
        report_every : int or None, default 10000
            Record the error and loss every this many iterations (None: only
            the first). Each report interval runs in the backend as one call
            (or, past half a second, a few). Given per call, not stored with
            the model's options: with ``schedule="adaptive"``, whose rule runs
            once per report interval, give a continued fit the same one.
        loss : {"mse", "bce", "cross_entropy"}, default: the output's
            "mse" is the seed's squared error; on a sigmoid output its delta is
            ``(y - out) * out*(1-out)``. "bce" (binary cross-entropy, sigmoid
            outputs) and "cross_entropy" (softmax outputs) drop the output's
            slope: ``y - out``; so does "mse" on an identity output.
        batch_size : int, "full" or None, default full batch
            Rows per step: consecutive mini-batches in row order (or, with
            ``shuffle``, in each epoch's order), the last possibly short,
            visited in turn. "full": the whole table (the seed).
        reduction : {"sum", "mean"}, default "sum"
            "sum" over examples (the seed); "mean" divides each step by the
            batch's rows (or its sample weights' sum), which keeps
            learning_rate ~1 stable on large data.
        scale_inputs : bool, default False
            Scale each input column to [0, 1] by its range in this X (see
            :meth:`set_input_range`), unless the network already has a range,
            which is then kept. Unscaled inputs of large magnitude saturate
            the sigmoid units, and training then stalls.
        callback : callable(iteration, error), optional
            Called at each report point; return ``False`` to stop early.
        on_report : callable(history), optional
            Called at each report point, after ``callback``, with the
            :class:`History` being filled (its last entries are this report's:
            the iteration, the error, the loss and its data and penalty
            parts); return ``False`` to stop early.
        progress : callable(iterations_done), optional
            Called after each completed piece of training with the iterations
            done in this fit (``sigmanet train`` drives its progress bar with it).
        report_seconds : float, optional
            Size the report intervals by time instead: each lasts about this
            many seconds (at most ``report_every`` iterations).
        warn_stuck : bool, default True
            Check whether the fit is stuck (:meth:`diagnose`), record the
            finding in ``History.stuck`` and warn (once) when it is; see Warns.
        shuffle : bool or int, default False
            With ``batch_size``: a new order of the rows every epoch (an epoch
            is one pass over the mini-batches: global iterations
            ``e * n_batches`` to ``(e + 1) * n_batches - 1``). The order of epoch
            ``e`` is ``numpy.random.default_rng([seed, e]).permutation(n_rows)``,
            so a fit continued later, or resumed from a checkpoint, goes on
            exactly as one fit would have. ``True`` takes the network's
            ``seed`` (or a new one, stored in ``fit_options``); an int is the
            seed itself. Not available for Dask arrays.
        optimizer : {"sgd", "momentum", "nesterov", "adam"}, default "sgd"
            The update rule, scikit-learn's (see :mod:`sigmanet.optimizers`):
            plain gradient descent (the seed's), heavy-ball momentum,
            Nesterov's momentum, or Adam. Its state (velocities, moments,
            steps) is the network's: a continued or resumed fit goes on with it.
        momentum : float in [0, 1], default 0.9
        beta_1, beta_2 : float in [0, 1), defaults 0.9 and 0.999
        epsilon : float > 0, default 1e-8
            Adam's decay rates and its guard.
        alpha : float >= 0, default 0.0
            L2 penalty on the weights (not the biases), scikit-learn's: the
            objective gains ``alpha/2 * ||W||^2`` per batch (divided by the
            batch's rows, or weights, with ``reduction="mean"``).
        schedule : {"constant", "invscaling", "adaptive"}, default "constant"
            scikit-learn's learning-rate schedules: "invscaling" uses
            ``learning_rate / (e * n_rows + 1) ** power_t`` in epoch e;
            "adaptive" divides the rate by 5 each time the interval's loss has
            not improved by ``tol`` for ``n_iter_no_change`` intervals in a
            row (use ``report_every`` = batches per epoch for epochs).
        power_t : float >= 0, default 0.5
        tol : float >= 0, default 1e-4
        n_iter_no_change : int, default 10
        average_loss : bool, default False
            ``History.losses`` holds each interval's mean batch loss (as
            scikit-learn's ``loss_curve_`` and Keras's epoch loss) instead of
            the loss of its first step; costs a loss evaluation per step.
        sample_weight : array (n_rows,), optional
            Each row's weight on the loss and every gradient (as
            ``MLPClassifier.fit(sample_weight=)``), mini-batches and Dask included.
        class_weight : dict {class: weight} or "balanced", optional
            Per-class weights, multiplied into ``sample_weight``: a class is
            the 0/1 value of a single output, or the column of a one-hot row.
            "balanced" weighs each class by ``n_rows / (n_classes * count)``.
            ``{}`` turns a stored class weighting off.
        stream : CUDA stream, optional
            CuPy networks only: run on this stream (a CuPy stream, a
            ``torch.cuda.Stream``, or any ``__cuda_stream__`` object), as on
            the caller's current stream when it is left out. Not stored.

        Returns
        -------
        History

        Raises
        ------
        ValueError, TypeError
            For invalid data or options; raised before any training.
        RuntimeError
            If another thread is fitting this network at the same time.
        sigmanet.DivergenceError
            If the weights or the error become non-finite; the network keeps the
            weights of its last finite snapshot.

        Warns
        -----
        StuckWarning (a RuntimeWarning)
            Once, when the error did not move at all across the report points
            after the first, or a layer's sigmoid units are saturated: the fit
            is stuck.
        """
        if not self._lock.acquire(blocking=False):
            if self._fitting_in == threading.get_ident():
                raise RuntimeError(
                    "fit was called from inside this network's own fit (its callback, progress or on_report "
                    "function); return from that first, or train a copy (sigmanet.Network.from_state(net.get_state()))"
                )
            raise RuntimeError(
                "this network is already being trained by another thread; fit one network from one thread at a "
                "time (copy it with sigmanet.Network.from_state(net.get_state()) to train two)"
            )
        self._fitting_in = threading.get_ident()
        try:
            with on_stream(self._backend, stream, X):
                return self._fit(
                    X,
                    y,
                    iterations,
                    report_every,
                    scale_inputs,
                    callback,
                    progress,
                    report_seconds,
                    warn_stuck,
                    on_report,
                    sample_weight,
                    dict(
                        learning_rate=learning_rate,
                        loss=loss,
                        reduction=reduction,
                        batch_size=batch_size,
                        shuffle=shuffle,
                        optimizer=optimizer,
                        momentum=momentum,
                        beta_1=beta_1,
                        beta_2=beta_2,
                        epsilon=epsilon,
                        alpha=alpha,
                        schedule=schedule,
                        power_t=power_t,
                        tol=tol,
                        n_iter_no_change=n_iter_no_change,
                        average_loss=average_loss,
                        class_weight=class_weight,
                    ),
                )
        finally:
            self._fitting_in = None
            self._lock.release()

    def _fit(
        self,
        X: Any,
        y: Any,
        iterations: int,
        report_every: int | None,
        scale_inputs: bool,
        callback: Callable[[int, float], bool | None] | None,
        progress: Callable[[int], object] | None,
        report_seconds: float | None,
        warn_stuck: bool,
        on_report: Callable[[History], bool | None] | None,
        sample_weight: Any,
        given: dict[str, Any],
    ) -> History:
        iterations = v.check_int("iterations", iterations, maximum=MAX_ITERATION)
        if self.iteration + iterations > MAX_ITERATION:
            raise ValueError(
                f"iterations={iterations} would take the network past {MAX_ITERATION} iterations in total "
                f"(it has trained {self.iteration})"
            )
        report_every = iterations if report_every is None else v.check_int("report_every", report_every)
        scale_inputs = v.check_bool("scale_inputs", scale_inputs)
        warn_stuck = v.check_bool("warn_stuck", warn_stuck)
        for name, fn in (("callback", callback), ("progress", progress), ("on_report", on_report)):
            if fn is not None and not callable(fn):
                raise TypeError(f"{name} must be callable, got {type(fn).__name__}")
        if report_seconds is not None:
            report_seconds = v.check_positive_float("report_seconds", report_seconds)
        opts = self._resolve_options(given)
        shuffle_seed = self._shuffle_seed(opts["shuffle"])
        X, _ = from_user("X", X)
        y, _ = from_user("y", y)
        be = for_input(self._backend, X)
        batch_size = opts["batch_size"]
        if shuffle_seed is not None and batch_size is not None and not be.shuffles_rows:
            raise ValueError(
                "shuffle is not available for Dask arrays: shuffle the rows once before training "
                "(e.g. with dask.dataframe's shuffle), or train without shuffle"
            )
        X = be.check_inputs(X, self.layers[0], dtype=self.dtype)
        y = be.check_targets(y, self.layers[-1], X.shape[0], self.output, dtype=self.dtype)
        if batch_size is not None and batch_size > X.shape[0]:
            raise ValueError(f"batch_size={batch_size} exceeds the {X.shape[0]} rows of X; use None for full batch")
        sw = None
        if sample_weight is not None:
            sample_weight, _ = from_user("sample_weight", sample_weight)
            sw = be.check_sample_weight(sample_weight, X.shape[0], dtype=self.dtype)
        if opts["class_weight"] is not None:
            per_class = be.class_weights(opts["class_weight"], y, self.output)
            sw = per_class if sw is None else sw * per_class
        input_range = self._state.input_range
        if scale_inputs and input_range is None:
            if is_sparse(X):
                raise ValueError(
                    "scale_inputs=True would densify a sparse X (it subtracts each column's minimum); scale it "
                    "without centring first, e.g. with sklearn.preprocessing.MaxAbsScaler"
                )
            input_range = tuple(_frozen(a) for a in be.column_range(X))  # type: ignore[assignment]
        state = self._state
        schedule = state.schedule if opts["schedule"] == "adaptive" else _Schedule()
        config = self._config(opts, schedule.scale)
        epochs = None  # shuffled mini-batches: each epoch's order (a full batch is not reordered)
        if shuffle_seed is not None and batch_size is not None:
            epochs = _EpochOrder(X.shape[0], batch_size, shuffle_seed, config.average_loss)
            be.check_memory(  # the trainer's own gathered copy of X and y
                X.nbytes + y.nbytes if not is_sparse(X) else X.data.nbytes * 2 + y.nbytes,
                f"a shuffled copy of X and y ({X.shape[0]} rows), beside the originals",
            )
        if input_range is not None:
            be.check_memory(int(np.prod(X.shape)) * self.dtype.itemsize, "the scaled copy of X")
        Xs = X if input_range is None else be.scale(X, input_range, self.dtype)
        params = list(state.weights) + list(state.biases or [])
        opt_state = (
            state.optimizer if state.optimizer is not None and state.optimizer.fits(config.optimizer, params) else None
        )
        trainer = be.trainer(
            list(state.weights), None if state.biases is None else list(state.biases), Xs, y, config, sw, opt_state
        )
        stored = dict(opts, shuffle=False if shuffle_seed is None else shuffle_seed)
        hist = History(options=dict(stored))
        return self._train(
            trainer,
            epochs,
            iterations,
            report_every,
            report_seconds,
            (callback, on_report),
            progress,
            hist,
            config,
            schedule,
            input_range,
            stored,
            warn_stuck,
            be,
            Xs,
        )

    def _config(self, opts: dict[str, Any], lr_scale: float) -> TrainConfig:
        return TrainConfig(
            learning_rate=opts["learning_rate"],
            loss=opts["loss"],
            reduction=opts["reduction"],
            batch_size=opts["batch_size"],
            output=self.output,
            optimizer=opts["optimizer"],
            momentum=opts["momentum"],
            beta_1=opts["beta_1"],
            beta_2=opts["beta_2"],
            epsilon=opts["epsilon"],
            alpha=opts["alpha"],
            schedule=opts["schedule"],
            power_t=opts["power_t"],
            lr_scale=lr_scale,
            average_loss=opts["average_loss"] or opts["schedule"] == "adaptive",
        )

    def _train(
        self,
        trainer: Any,
        epochs: _EpochOrder | None,
        iterations: int,
        report_every: int,
        report_seconds: float | None,
        callbacks: tuple[Any, Any],
        progress: Any,
        hist: History,
        config: TrainConfig,
        schedule: _Schedule,
        input_range: Any,
        stored: dict[str, Any],
        warn_stuck: bool,
        be: Any,
        Xs: Any,
    ) -> History:
        """The report loop: intervals of ``report_every`` iterations (or ``report_seconds``), each run in
        pieces of at most about SNAPSHOT_SECONDS, with the state published after every piece."""
        done = 0
        interval = report_every if report_seconds is None else 1
        # The first piece: about 0.1 s at a modest 1e11 FLOP/s (one iteration on a large table); then
        # grown to about SNAPSHOT_SECONDS of work, as measured.
        flops = (
            6
            * rows_per_step(trainer.X.shape[0], config.batch_size)
            * sum(p * q for p, q in zip(self.layers[:-1], self.layers[1:]))
        )
        piece = max(1, min(interval, 1024, int(0.1 * 1e11 / max(flops, 1))))
        while done < iterations:
            interval = min(interval, iterations - done)
            first = self.iteration
            stats: Stats | None = None
            t_interval = time.perf_counter()
            ran = 0
            while ran < interval:
                n = min(piece, interval - ran)
                start = self.iteration
                t0 = time.perf_counter()
                part = trainer.run(start, n) if epochs is None else epochs.run(trainer, start, n)
                weights, biases = trainer.weights()
                elapsed = time.perf_counter() - t0
                finite = (
                    (ran > 0 or math.isfinite(part.error))
                    and all(np.isfinite(w).all() for w in weights)
                    and (biases is None or all(np.isfinite(b).all() for b in biases))
                )
                if not finite:
                    raise DivergenceError(
                        f"training diverged in the iterations from {start} "
                        f"(error {part.error!r}); the network keeps its weights from iteration {self.iteration}. "
                        "Try a smaller learning_rate or reduction='mean'.",
                        iteration=self.iteration,
                    )
                stats = part if stats is None else stats.then(part, config.average_loss)
                arrays = trainer.optimizer_arrays()
                old = self._state.optimizer
                opt = (
                    old if old is not None and old.rule == config.optimizer else OptimizerState(config.optimizer)
                ).with_arrays(trainer.step, arrays)
                self._state = _State(  # one assignment: never half-updated
                    tuple(_frozen(w) for w in weights),
                    None if biases is None else tuple(_frozen(b) for b in biases),
                    start + n,
                    input_range,
                    stored,
                    opt,
                    self._state.schedule if config.schedule == "adaptive" else _Schedule(),
                )
                ran += n
                done += n
                if progress is not None:
                    progress(done)
                per = elapsed / n
                piece = max(1, min(4 * n, int(SNAPSHOT_SECONDS / max(per, 1e-9)))) if elapsed > 0 else 4 * n
            assert stats is not None
            hist.iterations.append(first)
            hist.errors.append(stats.error)
            hist.losses.append(stats.loss)
            hist.data_losses.append(stats.data_loss)
            hist.penalties.append(stats.penalty)
            if config.schedule == "adaptive":
                schedule = self._adapt(schedule, stats.loss, stored)
                config = dataclasses.replace(config, lr_scale=schedule.scale)
                trainer.config = config
            callback, on_report = callbacks
            if callback is not None and callback(first, stats.error) is False:
                break
            if on_report is not None and on_report(hist) is False:
                break
            if report_seconds is not None:  # grow towards report_seconds per interval, at most 4x at a time
                took = time.perf_counter() - t_interval
                interval = max(1, min(4 * interval, report_every, int(interval * report_seconds / max(took, 1e-6))))
        if warn_stuck:
            self._warn_if_stuck(hist, be, Xs)
        return hist

    def diagnose(self, X: Any, history: History) -> str | None:
        """Whether a fit on X that reported ``history`` is stuck: "saturated", "frozen" or None.

        "saturated": on X's first 256 rows (at least 8), 99% or more of the
        outputs of a layer of two or more units lie within 1e-6 of 0 or 1, so
        almost no gradient flows back through it (usually unscaled inputs).
        One unit on a few rows saturates by chance, and the output layer of a
        well-trained classifier may saturate, so only a perceptron's output
        layer, its only layer, is checked. "frozen": the error did not move
        across the report points after the first (usually a learning rate far
        too large or too small). This is the check ``fit(warn_stuck=True)``
        runs; X is scaled by the network's input range, as ``fit`` does.
        """
        if not isinstance(history, History):
            raise TypeError(f"history must be the History a fit returned, got {type(history).__name__}")
        X, _ = from_user("X", X)
        be, state = for_input(self._backend, X), self._state
        head = be.check_inputs(X, self.layers[0], dtype=self.dtype)[:256]
        if state.input_range is not None:
            head = be.scale(head, state.input_range, self.dtype)
        return self._stuck(history, be, head)

    def _adapt(self, schedule: _Schedule, loss: float, opts: dict[str, Any]) -> _Schedule:
        """scikit-learn's adaptive rule after an interval: divide the rate by 5 once the loss has failed to
        improve by ``tol`` for more than ``n_iter_no_change`` intervals (down to 1e-6 of the rate)."""
        stalled = schedule.stalled + 1 if loss > schedule.best - opts["tol"] else 0
        best = min(schedule.best, loss)
        scale = schedule.scale
        if stalled > opts["n_iter_no_change"]:
            if opts["learning_rate"] * scale > 1e-6:
                scale /= 5.0
            stalled = 0
        new = _Schedule(scale, best, stalled)
        self._state = dataclasses.replace(self._state, schedule=new)
        return new

    def _shuffle_seed(self, shuffle: bool | int) -> int | None:
        """The seed of the epochs' row orders for ``fit(shuffle=...)``, or None when not shuffling."""
        if isinstance(shuffle, (bool, np.bool_)):
            if not shuffle:
                return None
            if self.seed is not None:
                return int(self.seed)
            previous = self._state.fit_options.get("shuffle")
            if isinstance(previous, int) and not isinstance(previous, bool):
                return previous  # a network built without a seed: the seed its last shuffled fit drew
            return int(np.random.SeedSequence().entropy % 2**63)  # type: ignore[operator]
        return v.check_int("shuffle", shuffle, minimum=0)

    def _stuck(self, hist: History, be: Any, Xs: Any) -> str | None:
        """:meth:`diagnose` on X as the fit saw it (on the backend's side, scaled)."""
        errs = hist.errors[1:]  # the first report is the starting point; stuck is what follows
        moved = len(errs) < 2 or max(errs) - min(errs) > 1e-9 * max(errs)
        head = Xs[:256]
        if is_sparse(head):
            head = head.toarray()
        a = be.to_host(be.to_device(head, self.dtype))
        weights = self._state.weights
        hidden = max(1, len(weights) - 1)  # a one-layer network's output is its only layer
        if hidden == len(weights) and self.output != "sigmoid":
            hidden = 0
        saturated = saturated_share(a, weights, self._state.biases, hidden) >= 0.99
        return "saturated" if saturated else None if moved else "frozen"

    def _warn_if_stuck(self, hist: History, be: Any, Xs: Any) -> None:
        """One StuckWarning when :meth:`diagnose` finds the fit stuck; the finding goes in ``hist.stuck``."""
        with blas_threads(1):  # 256 rows, and no OpenBLAS thread left spinning beside the next fit (_blas)
            cause = hist.stuck = self._stuck(hist, be, Xs)
        if cause is None:
            return
        if cause == "saturated":
            why = "the sigmoid units of a layer are saturated (99% of their outputs within 1e-6 of 0 or 1)"
            cure = "scale the inputs (scale_inputs=True, or X scaled to [0, 1]), or use reduction='mean'"
        else:
            why = f"the error did not move across the report points (stayed at {hist.errors[-1]:.6g})"
            cure = "try a smaller learning_rate (or a larger one if it is tiny), and reduction='mean'"
        warn_at_caller(StuckWarning(f"training is stuck: {why}. Cure: {cure}.", cause))

    # -- inference --

    def predict(self, X: Any, *, stream: Any = None) -> Any:
        """The output layer for X.

        Parameters
        ----------
        X : array (n_rows, n0)
            NumPy, CuPy, SciPy sparse, Dask, or any ``__dlpack__`` array
            (PyTorch, JAX); scaled by the network's input range if it has one.
        stream : CUDA stream, optional
            As :meth:`fit` takes it (CuPy networks only).

        Returns
        -------
        array (n_rows, nL)
            The same kind of array as X (NumPy in, NumPy out; CuPy, PyTorch,
            JAX likewise), of the network's dtype. Computed in row blocks:
            memory is X, the output and one block, whatever the row count.

        Raises
        ------
        ValueError, TypeError
            If X is not a finite numeric 2-D array with n0 columns.
        """
        with on_stream(self._backend, stream, X):  # the caller's kind is made there too: its reader waits
            X, caller = from_user("X", X)
            be = for_input(self._backend, X)
            X = be.check_inputs(X, self.layers[0], dtype=self.dtype)
            return be.to_user(self._predict_native(be, X), caller)

    def error(self, X: Any, y: Any, *, stream: Any = None) -> Any:
        """The seed's figure, ``mean |y - predict(X)|``.

        Parameters
        ----------
        X : array (n_rows, n0)
        y : array (n_rows, nL), or (n_rows,) when nL == 1
        stream : CUDA stream, optional
            As :meth:`fit` takes it (CuPy networks only).

        Returns
        -------
        float
            A Python float; for Dask arrays, a 0-d Dask array (``.compute()`` it).

        Raises
        ------
        ValueError, TypeError
            As :meth:`fit` does for bad X or y.
        """
        with on_stream(self._backend, stream, X):
            X, _ = from_user("X", X)
            y, _ = from_user("y", y)
            be = for_input(self._backend, X)
            X = be.check_inputs(X, self.layers[0], dtype=self.dtype)
            y = be.check_targets(y, self.layers[-1], X.shape[0], self.output, dtype=self.dtype)
            return be.mean_abs_error(y, self._predict_native(be, X))

    def _predict_native(self, be: Any, X: Any) -> Any:
        state = self._state
        Xs = X if state.input_range is None else be.scale(X, state.input_range, self.dtype)
        return be.predict(
            list(state.weights),
            None if state.biases is None else list(state.biases),
            be.to_device(Xs, self.dtype),
            self.output,
        )

    def compiled_predict(self, **options: Any) -> Any:
        """A numba-compiled ``f(x, out)`` with this network's weights bound in, for the caller's own
        ``@njit`` code; see :func:`sigmanet.embedding.compiled_predict` (options pass through)."""
        from .embedding import compiled_predict

        return compiled_predict(self, **options)

    def loss_and_gradients(self, X: Any, y: Any, **options: Any) -> tuple[float, list[np.ndarray], Any]:
        """The objective a fit minimises and its gradient at the current weights, without training.

        ``options``: ``loss``, ``reduction``, ``alpha``, ``sample_weight``,
        ``class_weight``, ``stream``, as :meth:`fit` takes them; each one not given is
        the stored option of the last fit, else fit's default. See
        :func:`sigmanet.loss_and_gradients`.

        Returns
        -------
        (loss, weight_gradients, bias_gradients)
        """
        from .embedding import loss_and_gradients

        allowed = {"loss", "reduction", "alpha", "sample_weight", "class_weight", "stream"}
        unknown = sorted(set(options) - allowed)
        if unknown:
            raise TypeError(f"loss_and_gradients takes {sorted(allowed)}, not {unknown}")
        stored = self._state.fit_options
        kw: dict[str, Any] = {
            k: options[k] if options.get(k) is not None else stored.get(k, FIT_DEFAULTS.get(k))
            for k in ("loss", "reduction", "alpha", "class_weight")
        }
        state = self._state
        return loss_and_gradients(
            list(state.weights),
            None if state.biases is None else list(state.biases),
            X,
            y,
            backend=self._backend.spec,
            output=self.output,
            sample_weight=options.get("sample_weight"),
            stream=options.get("stream"),
            input_range=state.input_range,
            threads=self.threads,
            **kw,
        )

    def __repr__(self) -> str:
        return (
            f"Network({list(self.layers)}, backend={self.backend!r}, dtype={self.dtype.name!r}, "
            f"bias={self.bias}, output={self.output!r}, iteration={self.iteration})"
        )

    # -- checkpoints --

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the model (and its optimizer's state) to one .npz file, atomically; see :func:`sigmanet.load`."""
        checkpoint.write(path, self.get_state())


def load(path: str | os.PathLike[str], backend: str = "auto", *, threads: int | None = None) -> Network:
    """Load a model saved by :meth:`Network.save` onto ``backend``.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    sigmanet.ModelFileError
        If the file is truncated, corrupted, not a sigmanet model, from a
        newer format, or inconsistent.
    """
    if threads is not None:  # the arguments first: their faults are the caller's, not the file's
        threads = v.check_int("threads", threads, maximum=1024)
    get_backend(backend, threads=threads)
    state = checkpoint.read(path)
    try:
        return Network.from_state(state, backend=backend, threads=threads)
    except (KeyError, TypeError, ValueError) as e:
        if type(e).__module__.startswith("sigmanet"):
            raise
        raise ModelFileError(f"{os.fspath(path)!r} has an inconsistent model: {e}") from None
