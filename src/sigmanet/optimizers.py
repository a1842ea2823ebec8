"""The optimizers' update rules, written once against an array module, and the state they keep.

The rules are scikit-learn's (``sklearn/neural_network/_stochastic_optimizers.py``),
so that its path can be followed exactly:

* ``sgd``: ``p -= lr * grad`` (the seed's rule; ``grad`` is the loss's gradient);
* ``momentum``: ``v = mu v - lr grad; p += v`` (heavy ball, scikit-learn's velocity);
* ``nesterov``: the same velocity, then ``p += mu v - lr grad``;
* ``adam``: ``m = b1 m + (1 - b1) grad``, ``v = b2 v + (1 - b2) grad**2``,
  ``p -= lr sqrt(1 - b2**t) / (1 - b1**t) * m / (sqrt(v) + eps)``.

The gradient of the objective, for weights W and the ascent sum ``G = a.T @ d``
(``d`` the sample-weighted delta, ``y - out`` at the output) is
``grad = r (alpha W - G)``, with ``r`` the reduction factor (1 for summed steps,
1 / the batch's rows or weights for mean steps); biases have no penalty.

The state (velocities, moments, the step count) belongs to the network: it is
handed to each trainer and taken back after each interval, saved in
checkpoints, so a resumed fit continues bit for bit. The numba and CUDA
engines implement the same rules element by element (their ``update`` pieces).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._plan import TrainConfig, adam_correction

# The per-parameter arrays each rule keeps, in the order the compiled engines hold them.
SLOTS: dict[str, tuple[str, ...]] = {
    "sgd": (),
    "momentum": ("velocity",),
    "nesterov": ("velocity",),
    "adam": ("m", "v"),
}


@dataclass(frozen=True)
class OptimizerState:
    """An optimizer's state: the rule, the steps taken, and its arrays (host NumPy, read-only).

    ``slots[name][i]`` belongs to parameter i, in the order ``W[0] .. W[L-1]``,
    then ``b[0] .. b[L-1]`` for a network with biases.
    """

    rule: str
    step: int = 0
    slots: dict[str, tuple[np.ndarray, ...]] = field(default_factory=dict)

    @classmethod
    def fresh(cls, rule: str, params: Sequence[np.ndarray]) -> OptimizerState:
        """Zeros for every slot of ``rule``, shaped like ``params``; no steps taken."""
        slots = {name: tuple(_frozen(np.zeros_like(p)) for p in params) for name in SLOTS[rule]}
        return cls(rule, 0, slots)

    def fits(self, rule: str, params: Sequence[np.ndarray]) -> bool:
        """Whether this state can continue a fit of ``rule`` on parameters shaped like ``params``."""
        if rule != self.rule or set(self.slots) != set(SLOTS[rule]):
            return False
        return all(
            len(arrays) == len(params) and all(a.shape == p.shape for a, p in zip(arrays, params))
            for arrays in self.slots.values()
        )

    def with_arrays(self, step: int, slots: Mapping[str, Sequence[Any]]) -> OptimizerState:
        """A new state with these (host) arrays and step count."""
        return OptimizerState(self.rule, int(step), {k: tuple(_frozen(a) for a in v) for k, v in slots.items()})


def _frozen(a: Any) -> np.ndarray:
    a = np.array(a, copy=True)
    a.flags.writeable = False
    return a


def update(
    xp: Any,
    config: TrainConfig,
    params: Sequence[Any],
    grads: Sequence[Any],
    slots: Mapping[str, Sequence[Any]],
    scratch: Sequence[Any],
    *,
    n_weights: int,
    lr: float,
    r: float,
    step: int,
) -> None:
    """One optimizer step on every parameter, in place.

    ``grads[i]``: parameter i's ascent sum ``G`` (overwritten: it is scratch);
    ``scratch[i]``: a buffer of its shape; ``params[:n_weights]`` are the
    weights (penalised by ``alpha``), the rest biases; ``lr``: this step's
    learning rate; ``r``: the reduction factor; ``step``: this step's number
    (1 for the first), for Adam's bias correction. Allocates nothing.
    """
    rule = config.optimizer
    mu = config.momentum
    for i, (p, g, tmp) in enumerate(zip(params, grads, scratch)):
        decay = config.alpha if i < n_weights else 0.0
        if decay:  # g <- G - alpha W: the ascent direction with the penalty
            xp.multiply(p, decay, out=tmp)
            g -= tmp
        if rule == "adam":
            g *= -r  # g <- grad
            m, v = slots["m"][i], slots["v"][i]
            m *= config.beta_1
            xp.multiply(g, 1.0 - config.beta_1, out=tmp)
            m += tmp
            v *= config.beta_2
            xp.multiply(g, g, out=tmp)
            tmp *= 1.0 - config.beta_2
            v += tmp
            xp.sqrt(v, out=tmp)
            tmp += config.epsilon
            xp.divide(m, tmp, out=tmp)
            tmp *= -lr * adam_correction(config, step)
            p += tmp
            continue
        scale = lr * r
        if scale != 1.0:  # the seed's step is 1: W += a.T @ d, bit for bit
            g *= scale  # g <- -lr * grad
        if rule == "sgd":
            p += g
            continue
        vel = slots["velocity"][i]
        vel *= mu
        vel += g  # v <- mu v - lr grad
        if rule == "momentum":
            p += vel
        else:  # nesterov: p += mu v - lr grad
            xp.multiply(vel, mu, out=tmp)
            tmp += g
            p += tmp
