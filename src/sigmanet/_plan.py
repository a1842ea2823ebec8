"""A step's plan: what every engine computes the same way, computed here once.

Every engine (the xp reference loop, numba's compiled loops, the CUDA kernels,
Dask's client) trains by the same plan, and this module is its single
statement:

* which rows global iteration ``j`` uses (:func:`batch_bounds`): consecutive
  slices in row order, the last possibly short, visited in turn; keying on the
  global iteration makes a continued or resumed fit go on exactly where it
  stopped;
* the step's size (:func:`learning_rate_at` times :func:`reduction_factor`):
  the learning rate under its schedule, divided by the batch's rows (or its
  sample weights' sum) when the reduction is a mean;
* the output delta (:func:`delta_uses_derivative`): ``y - a``, times the
  sigmoid's slope ``a (1 - a)`` only for the seed's squared error on a
  sigmoid output;
* the numbers a compiled interval takes besides its arrays
  (:func:`kernel_options`), by keyword, in one order, and the report it fills
  (:class:`Stats`).

Index convention, everywhere: layer k has n_k units; ``W[k]`` is (n_k,
n_{k+1}); ``a[k]`` is layer k's activations ((m, n_k), ``a[0]`` the batch's
rows of X); ``d[k]`` is layer k's delta; ``a[k+1] = act(a[k] @ W[k] + b[k])``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

OUTPUTS = ("sigmoid", "softmax", "identity")
LOSSES = ("mse", "bce", "cross_entropy")
# The losses each output layer trains with: each pairs with its output so that the output delta is
# y - a (bce with sigmoid, cross-entropy with softmax, squared error with identity), except the seed's
# squared error on a sigmoid, whose delta keeps the sigmoid's slope.
LOSSES_FOR_OUTPUT = {"sigmoid": ("mse", "bce"), "softmax": ("cross_entropy",), "identity": ("mse",)}
DEFAULT_LOSS = {"sigmoid": "mse", "softmax": "cross_entropy", "identity": "mse"}
REDUCTIONS = ("sum", "mean")
SCHEDULES = ("constant", "invscaling", "adaptive")
OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam")

# Integer codes the compiled engines take (numba and CUDA read the same numbers).
OUTPUT_CODE = {name: i for i, name in enumerate(OUTPUTS)}
LOSS_CODE = {name: i for i, name in enumerate(LOSSES)}
OPTIMIZER_CODE = {name: i for i, name in enumerate(OPTIMIZERS)}


@dataclass(frozen=True)
class TrainConfig:
    """Everything a trainer needs besides the arrays; validated by ``Network.fit``."""

    learning_rate: float = 1.0
    loss: str = "mse"  # see LOSSES_FOR_OUTPUT
    reduction: str = "sum"  # "sum" over examples (the seed) or "mean" (divide by the batch's rows or weights)
    batch_size: int | None = None  # None: full batch; else mini-batches in row order, cycling
    output: str = "sigmoid"  # the output layer's activation; hidden layers are always sigmoid
    optimizer: str = "sgd"
    momentum: float = 0.9
    beta_1: float = 0.9
    beta_2: float = 0.999
    epsilon: float = 1e-8
    alpha: float = 0.0  # L2 penalty on the weights (not the biases), scikit-learn's alpha
    schedule: str = "constant"  # "invscaling" decays per epoch; "adaptive" is applied by Network.fit (lr_scale)
    power_t: float = 0.5
    lr_scale: float = 1.0  # the adaptive schedule's current factor (1 / 5**k)
    average_loss: bool = False  # the loss of every step of an interval (its mean), not only the first's

    @property
    def mean(self) -> bool:
        return self.reduction == "mean"


def rows_per_step(n_rows: int, batch_size: int | None) -> int:
    """Rows in the largest step: the table, or one mini-batch."""
    return n_rows if batch_size is None else min(batch_size, n_rows)


def n_batches(n_rows: int, batch_size: int | None) -> int:
    """Mini-batches per epoch (1 for a full batch)."""
    if batch_size is None or batch_size >= n_rows:
        return 1
    return -(-n_rows // batch_size)


def batch_bounds(iteration: int, n_rows: int, batch_size: int | None) -> tuple[int, int]:
    """Rows ``[start, stop)`` used by global iteration ``iteration``."""
    nb = n_batches(n_rows, batch_size)
    if nb == 1:
        return 0, n_rows
    assert batch_size is not None
    start = (iteration % nb) * batch_size
    return start, min(start + batch_size, n_rows)


def learning_rate_at(config: TrainConfig, iteration: int, n_rows: int) -> float:
    """The learning rate of global iteration ``iteration``.

    "invscaling" is scikit-learn's: constant within an epoch, and in epoch e
    ``learning_rate / (e * n_rows + 1) ** power_t`` (its ``t_`` counts the
    rows seen before the epoch). "adaptive" is applied by ``Network.fit``
    through ``lr_scale``.
    """
    lr = config.learning_rate * config.lr_scale
    if config.schedule == "invscaling":
        epoch = iteration // n_batches(n_rows, config.batch_size)
        lr = lr / (epoch * n_rows + 1) ** config.power_t
    return lr


def reduction_factor(config: TrainConfig, weight_sum: float) -> float:
    """1 for summed steps; 1 / (the batch's rows, or its sample weights' sum) for mean steps (0 if that is 0)."""
    if not config.mean:
        return 1.0
    return 1.0 / weight_sum if weight_sum > 0 else 0.0


def step_scale(config: TrainConfig, iteration: int, n_rows: int, weight_sum: float) -> float:
    """What plain gradient descent multiplies ``a.T @ d`` by: the learning rate times the reduction."""
    return learning_rate_at(config, iteration, n_rows) * reduction_factor(config, weight_sum)


def delta_uses_derivative(config: TrainConfig) -> bool:
    """Whether the output delta is ``(y - a) * a (1 - a)`` (the seed's squared error on a sigmoid) or ``y - a``."""
    return config.output == "sigmoid" and config.loss == "mse"


def adam_correction(config: TrainConfig, step: int) -> float:
    """Adam's bias correction at step ``step`` (1 for the first): ``sqrt(1 - b2**t) / (1 - b1**t)``."""
    return math.sqrt(1.0 - config.beta_2**step) / (1.0 - config.beta_1**step)


def kernel_options(
    config: TrainConfig, start: int, iterations: int, use_bias: bool, weighted: bool, step: int
) -> dict[str, Any]:
    """What every compiled interval (numba's and CUDA's) takes besides its arrays, by keyword, in one order.

    ``step``: optimizer steps taken before this interval (Adam's t).
    """
    return dict(
        start=start,
        iterations=iterations,
        batch_size=config.batch_size or 0,
        learning_rate=config.learning_rate * config.lr_scale,
        invscaling=config.schedule == "invscaling",
        power_t=config.power_t,
        mean=config.mean,
        output=OUTPUT_CODE[config.output],
        loss=LOSS_CODE[config.loss],
        derivative=delta_uses_derivative(config),
        use_bias=use_bias,
        weighted=weighted,
        optimizer=OPTIMIZER_CODE[config.optimizer],
        momentum=config.momentum,
        beta_1=config.beta_1,
        beta_2=config.beta_2,
        epsilon=config.epsilon,
        alpha=config.alpha,
        step=step,
        track_all=config.average_loss,
    )


STATS_SIZE = 5


class Stats:
    """What an interval reports, from five float64 sums its engine fills as it trains.

    ``values[0]``: sum of ``sw_i |y_ij - a_ij|`` over the first step's batch;
    ``values[1]``: that batch's ``sum sw_i * n_L`` (its element count when unweighted);
    ``values[2]``: sum over the tracked steps of ``m_b * sum_i sw_i l_i / sum_i sw_i``, the data loss
    (``l_i`` the row's loss: half its squared error summed over the outputs, or its cross-entropy);
    ``values[3]``: sum over the tracked steps of ``m_b``, their rows;
    ``values[4]``: sum over the tracked steps of ``m_b * (alpha / 2) ||W||^2 / sum_i sw_i``, the penalty.
    So ``(values[2] + values[4]) / values[3]`` is scikit-learn's batch loss, averaged over the tracked
    steps by their rows; the tracked steps are the first alone, or every one with ``average_loss``.
    """

    __slots__ = ("values",)

    def __init__(self, values: Any):
        self.values = np.array(values, np.float64).reshape(STATS_SIZE)  # a copy: engines reuse their buffer

    @property
    def error(self) -> float:
        """The first step's (weighted) mean ``|y - out|``, the seed's printed figure."""
        return float(self.values[0] / self.values[1]) if self.values[1] > 0 else float("nan")

    def _per_row(self, total: float) -> float:
        """A sum over the tracked steps divided by their rows (NaN when none was tracked)."""
        return float(total / self.values[3]) if self.values[3] > 0 else float("nan")

    @property
    def loss(self) -> float:
        """The tracked steps' loss (data and penalty): the first's, or their mean weighted by rows."""
        return self._per_row(self.values[2] + self.values[4])

    @property
    def data_loss(self) -> float:
        """The loss's data part alone (no L2 penalty), per row as :attr:`loss`."""
        return self._per_row(self.values[2])

    @property
    def penalty(self) -> float:
        """The loss's L2 penalty part, per row as :attr:`loss`."""
        return self._per_row(self.values[4])

    def then(self, later: Stats, average_loss: bool) -> Stats:
        """This part of an interval followed by a later part: the first part's error, and its loss,
        or with ``average_loss`` (every step tracked) both parts' losses together."""
        values = self.values.copy()
        if average_loss:
            values[2:] += later.values[2:]
        return Stats(values)


def loss_eps(dtype: Any) -> float:
    """Probabilities are clipped to [eps, 1 - eps] in the cross-entropies, eps the dtype's (as scikit-learn)."""
    return float(np.finfo(np.dtype(dtype)).eps)


# Activations held at once by predict and error: about 8 MiB per block.
PREDICT_BLOCK_BYTES = 1 << 23


def predict_block_rows(widest: int, itemsize: int) -> int:
    """Rows per predict block: the widest layer's activations in ``PREDICT_BLOCK_BYTES``, at least 64."""
    return max(64, PREDICT_BLOCK_BYTES // (2 * widest * itemsize))
