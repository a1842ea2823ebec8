"""Embedding a network in other numerical code: its loss and gradients for given weights.

``loss_and_gradients`` returns what a fit minimises and its gradient, for
weights the caller holds, without training: to drive ``scipy.optimize`` or an
update of the caller's own. It runs on any backend, through the backend's own
gradient function (the one Dask workers call), so it is the same arithmetic
as a training step. The scikit-learn estimators' ``solver="lbfgs"`` is built
on it.

The objective, for a batch of rows with weights ``sw`` (1 when not given)::

    r * (sum_i sw_i l_i + alpha/2 * sum_k ||W[k]||^2)

with ``l_i`` the row's loss (half its squared error summed over the outputs,
or its cross-entropy) and ``r = 1 / sum_i sw_i`` for ``reduction="mean"``, 1
for ``"sum"``. Its gradient is exact: the checks compare it with central
finite differences.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from . import _validation as v
from ._arrays import from_user
from ._plan import TrainConfig, reduction_factor
from .backends import for_input, get_backend


def loss_and_gradients(
    weights: Sequence[Any],
    biases: Sequence[Any] | None,
    X: Any,
    y: Any,
    *,
    backend: str = "auto",
    output: str = "sigmoid",
    loss: str | None = None,
    reduction: str = "sum",
    alpha: float = 0.0,
    sample_weight: Any = None,
    class_weight: dict | str | None = None,
    threads: int | None = None,
) -> tuple[float, list[np.ndarray], list[np.ndarray] | None]:
    """The objective a fit minimises, and its gradient, at ``weights`` (and ``biases``), on (X, y).

    Parameters
    ----------
    weights : sequence of arrays (n_k, n_{k+1})
    biases : sequence of arrays (n_{k+1},), or None for a network without bias
    X, y : arrays
        As :meth:`sigmanet.Network.fit` takes them (NumPy, CuPy, Dask, SciPy sparse X, DLPack).
    backend, output, loss, reduction, alpha, sample_weight, class_weight
        As :class:`sigmanet.Network` and :meth:`~sigmanet.Network.fit` take them.

    Returns
    -------
    (loss, weight_gradients, bias_gradients)
        A float and host NumPy arrays shaped like ``weights`` and ``biases``
        (None without biases), in the weights' dtype.

    Raises
    ------
    ValueError, TypeError
        For inconsistent shapes, bad data or options, before any work.
    """
    ws = [np.asarray(w) for w in weights]
    if not ws or any(w.ndim != 2 for w in ws):
        raise ValueError("weights must be a non-empty sequence of 2-D arrays (n_k, n_{k+1})")
    layers = v.check_layers([ws[0].shape[0]] + [w.shape[1] for w in ws])
    for k in range(1, len(ws)):
        if ws[k].shape[0] != ws[k - 1].shape[1]:
            raise ValueError(f"weights[{k}] has {ws[k].shape[0]} rows, but weights[{k - 1}] gives {ws[k - 1].shape[1]}")
    dtype = v.check_dtype(ws[0].dtype if ws[0].dtype.kind == "f" else np.float64)
    ws = [w.astype(dtype) for w in ws]
    bs = None
    if biases is not None:
        bs = [np.asarray(b, dtype) for b in biases]
        if len(bs) != len(ws) or any(b.shape != (n,) for b, n in zip(bs, layers[1:])):
            raise ValueError(f"biases must hold {len(ws)} vectors of sizes {list(layers[1:])}")
    output = v.check_output(output, layers[-1])
    loss = v.check_loss(loss, output)
    v.check_choice("reduction", reduction, v.REDUCTIONS)
    alpha = v.check_real("alpha", alpha, 0.0, np.inf, high_open=True)
    X, _ = from_user("X", X)
    y, _ = from_user("y", y)
    be = for_input(get_backend(backend, threads=threads), X)
    X = be.check_inputs(X, layers[0])
    y = be.check_targets(y, layers[-1], X.shape[0], output)
    sw = None
    if sample_weight is not None:
        sample_weight, _ = from_user("sample_weight", sample_weight)
        sw = be.check_sample_weight(sample_weight, X.shape[0])
    if class_weight is not None:
        per_class = be.class_weights(class_weight, y, output)
        sw = per_class if sw is None else sw * per_class
    config = TrainConfig(loss=loss, reduction=reduction, output=output, alpha=alpha)
    if hasattr(be, "inner"):  # Dask: each chunk's sums where it lives, added here
        g = _dask_gradients(be, ws, bs, X, y, config, sw)
    else:
        g = be.gradients(ws, bs, X, y, config, None if sw is None else be.to_device(sw, dtype))
    r = reduction_factor(config, g.weight)
    penalty = 0.5 * alpha * sum(float(np.vdot(w, w)) for w in ws)
    value = r * (g.loss + penalty)
    weight_grads = [(r * (alpha * w - gw)).astype(dtype) for w, gw in zip(ws, g.weights)]
    bias_grads = None if g.biases is None else [(-r * gb).astype(dtype) for gb in g.biases]
    return float(value), weight_grads, bias_grads


def _dask_gradients(be: Any, ws: list, bs: list | None, X: Any, y: Any, config: TrainConfig, sw: Any) -> Any:
    from .backends.dask import DaskTrainer

    trainer = DaskTrainer(be.inner, ws, bs, X, y, config, sw, None, output=config.output)
    return trainer._gradient(0, trainer.n_rows)


def compiled_predict(net: Any, **options: Any) -> Any:
    """A numba-compiled ``f(x, out)`` with ``net``'s weights bound in (issue 26; to be written)."""
    raise NotImplementedError("compiled_predict is not written yet")
