"""The seed's loop, written once against an array module ``xp`` (thinc's ``Ops`` pattern).

:class:`ReferenceTrainer` is the seed's program on preallocated buffers: matrix
products through ``xp.matmul(..., out=)`` and elementwise steps in place, so
an iteration allocates nothing (unless it measures a loss). It works for any
NumPy-like ``xp``: the NumPy backend runs it as it is, CuPy's eager engine
overrides the elementwise hooks (:meth:`~ReferenceTrainer.forward_activation`,
:meth:`~ReferenceTrainer.output_delta`, :meth:`~ReferenceTrainer.hidden_delta`)
with fused kernels, and Dask workers call :meth:`~ReferenceTrainer.gradient_sums`.
The optimizers' rules are :func:`sigmanet.optimizers.update`, on the same ``xp``.

One iteration, for a batch of m rows and layers n_0 .. n_L (the index
convention of :mod:`sigmanet._plan`)::

    a[0] = X[rows]
    a[k+1] = act(a[k] @ W[k] + b[k])             act: sigmoid; the output's: sigmoid, softmax or identity
    d[L] = sw * (y - a[L]) (* a[L] (1 - a[L]) for the seed's squared error on a sigmoid)
    d[k] = (d[k+1] @ W[k].T) * a[k] (1 - a[k])  from the output down, all before any update
    G[k] = a[k].T @ d[k+1], Gb[k] = column sums of d[k+1]
    every parameter p: the optimizer's step from G (with the penalty alpha on the weights)

With the NumPy backend, float64, plain gradient descent and the seed's
options this is the seed's program bit for bit.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from .. import optimizers
from .._arrays import copy_bytes, is_sparse
from .._plan import (
    STATS_SIZE,
    Stats,
    TrainConfig,
    batch_bounds,
    delta_uses_derivative,
    learning_rate_at,
    loss_eps,
    n_batches,
    predict_block_rows,
    reduction_factor,
    rows_per_step,
)
from ..numerics import sigmoid_derivative, sigmoid_unchecked
from .base import Backend, Gradients, Trainer


def activate(xp: Any, z: Any, bias: Any, kind: str) -> Any:
    """``act(z + bias)`` in place on z (m, n): "sigmoid", "softmax" (over each row) or "identity"."""
    if bias is not None:
        z += bias
    if kind == "sigmoid":
        sigmoid_unchecked(z, out=z)
    elif kind == "softmax":
        z -= z.max(axis=1, keepdims=True)
        xp.exp(z, out=z)
        z /= z.sum(axis=1, keepdims=True)
    return z


def row_losses(xp: Any, y: Any, a: Any, loss: str, eps: float) -> Any:
    """Each row's loss (m,): half its squared error summed over the outputs, or its cross-entropy summed
    over them (probabilities clipped to [eps, 1 - eps], as scikit-learn clips them). Its gradient with
    respect to the output layer's input is the negated output delta, exactly."""
    if loss == "mse":
        e = y - a
        return 0.5 * (e * e).sum(axis=1)
    p = xp.clip(a, eps, 1 - eps)
    if loss == "bce":
        return -(y * xp.log(p) + (1 - y) * xp.log1p(-p)).sum(axis=1)
    return -(y * xp.log(p)).sum(axis=1)


class ReferenceTrainer(Trainer):
    """The seed's loop on preallocated buffers, for any NumPy-like ``xp``.

    Shapes, for a batch of m rows: ``a[k]`` (m, n_k) activations (``a[0]`` a
    view of X), ``d[k]`` (m, n_k) deltas for k >= 1, ``W[k]`` (n_k, n_{k+1}),
    ``g[k]`` its gradient sum; ``tmp[k]`` scratch for the NumPy epilogues.
    """

    uses_scratch = True  # tmp[k] (m, n_k) buffers for the epilogues; fused epilogues need none

    def __init__(
        self,
        backend: Backend,
        weights: list[np.ndarray],
        biases: list[np.ndarray] | None,
        X: Any,
        y: Any,
        config: TrainConfig,
        sample_weight: Any = None,
        optimizer: optimizers.OptimizerState | None = None,
    ):
        xp = self.xp = backend.xp
        self.backend, self.config = backend, config
        dt = self.dtype = np.dtype(weights[0].dtype)
        self.W = [xp.array(w, dtype=dt, order="C") for w in weights]
        self.b: list[Any] | None = None if biases is None else [xp.array(b, dtype=dt) for b in biases]
        self.X = backend.to_device(X, dt)
        self.sparse = is_sparse(self.X)
        self.y = backend.to_device(y, dt)
        self.sw = None if sample_weight is None else backend.to_device(sample_weight, dt)
        self.n_rows = self.X.shape[0]
        m = rows_per_step(self.n_rows, config.batch_size)
        sizes = [w.shape[0] for w in weights] + [weights[-1].shape[1]]
        self.a: list[Any] = [None] + [xp.empty((m, n), dt) for n in sizes[1:]]
        self.d: list[Any] = [None] + [xp.empty((m, n), dt) for n in sizes[1:]]
        self.tmp: list[Any] = [None] + [xp.empty((m, n), dt) if self.uses_scratch else None for n in sizes[1:]]
        self.g = [xp.empty_like(w) for w in self.W]
        self.gb: list[Any] | None = None if self.b is None else [xp.empty_like(b) for b in self.b]
        self.params = self.W + (self.b or [])
        self.grads = self.g + (self.gb or [])
        state = optimizer
        if state is None or not state.fits(config.optimizer, weights + (biases or [])):
            state = optimizers.OptimizerState.fresh(config.optimizer, weights + (biases or []))
        self.step = state.step
        self.slots = {name: [xp.array(a, dtype=dt) for a in arrays] for name, arrays in state.slots.items()}
        needs_scratch = config.alpha > 0 or config.optimizer != "sgd"
        self.scratch = [xp.empty_like(p) if needs_scratch else None for p in self.params]
        self.stats = xp.zeros(STATS_SIZE, np.float64)
        self.eps = loss_eps(dt)
        self.derivative = delta_uses_derivative(config)
        self._batch_weights = self._weigh_batches()

    # -- elementwise epilogues: NumPy ufuncs in place; fast backends fuse them --

    def forward_activation(self, z: Any, k: int) -> None:
        """z (m, n_{k+1}) holds a[k] @ W[k]; add the bias and apply the layer's activation in place."""
        last = k == len(self.W) - 1
        activate(self.xp, z, None if self.b is None else self.b[k], self.config.output if last else "sigmoid")

    def measure(self, y: Any, a: Any, sw: Any, tmp: Any, want_error: bool, want_loss: bool) -> None:
        """Add the batch's error (first step) and loss (tracked steps) to ``self.stats`` (see ``Stats``)."""
        xp, s = self.xp, self.stats
        if want_error:
            xp.subtract(y, a, out=tmp)
            xp.abs(tmp, out=tmp)
            if sw is None:
                s[0] += tmp.mean()  # the seed's figure, bit for bit
                s[1] += 1.0
            else:
                s[0] += (tmp * sw[:, None]).sum()
                s[1] += sw.sum() * a.shape[1]
        if want_loss:
            m = a.shape[0]
            data = row_losses(xp, y, a, self.config.loss, self.eps)
            total = data.sum() if sw is None else (data * sw).sum()
            weight = m if sw is None else sw.sum()
            per_row = xp.where(weight > 0, m / xp.maximum(weight, 1e-300), 0.0)
            s[2] += total * per_row
            s[3] += m
            if self.config.alpha > 0:
                s[4] += 0.5 * self.config.alpha * sum(xp.vdot(w, w) for w in self.W) * per_row

    def output_delta(self, y: Any, a: Any, d: Any, tmp: Any, sw: Any) -> None:
        """d = sw * (y - a), times a*(1-a) for the seed's squared error on a sigmoid output."""
        self.xp.subtract(y, a, out=d)
        if self.derivative:
            d *= sigmoid_derivative(a, out=tmp)
        if sw is not None:
            d *= sw[:, None]

    def hidden_delta(self, d: Any, a: Any, tmp: Any) -> None:
        """d holds d[k+1] @ W[k].T; multiply by the sigmoid derivative a*(1-a) in place."""
        d *= sigmoid_derivative(a, out=tmp)

    def weight_gradient(self, k: int, a_in: Any, d_out: Any) -> None:
        """g[k] = a_in.T @ d_out, and the bias's gradient gb[k] = d_out's column sums."""
        if k == 0 and self.sparse:
            self.g[0][...] = a_in.T @ d_out
        else:
            self.xp.matmul(a_in.T, d_out, out=self.g[k])
        if self.gb is not None:
            d_out.sum(axis=0, out=self.gb[k])

    def step_parameters(self, lr: float, r: float) -> None:
        """The optimizer's step on every parameter from the gradient sums (:func:`sigmanet.optimizers.update`)."""
        self.step += 1
        optimizers.update(
            self.xp,
            self.config,
            self.params,
            self.grads,
            self.slots,
            self.scratch,
            n_weights=len(self.W),
            lr=lr,
            r=r,
            step=self.step,
        )

    # -- the loop --

    def _weigh_batches(self) -> np.ndarray | None:
        """Each batch's sample-weight sum, on the host (None when unweighted): the mean steps' divisor."""
        if self.sw is None:
            return None
        nb = n_batches(self.n_rows, self.config.batch_size)
        sums = [self.sw[slice(*batch_bounds(b, self.n_rows, self.config.batch_size))].sum() for b in range(nb)]
        return np.array([float(s) for s in sums])

    def set_row_order(self, order: np.ndarray) -> None:
        super().set_row_order(order)
        self._batch_weights = self._weigh_batches()

    def _views(self, r0: int, r1: int) -> tuple[list[Any], list[Any], list[Any], Any, Any]:
        """Buffers cut to the batch's rows (a[0] is a view of X's rows)."""
        m = r1 - r0
        return (
            [self.X[r0:r1]] + [buf[:m] for buf in self.a[1:]],
            [None] + [buf[:m] for buf in self.d[1:]],
            [None] + [None if buf is None else buf[:m] for buf in self.tmp[1:]],
            self.y[r0:r1],
            None if self.sw is None else self.sw[r0:r1],
        )

    def forward_backward(self, a: list, d: list, tmp: list, y: Any, sw: Any, want_error: bool, want_loss: bool):
        """Forward pass, the error and loss if asked, then every delta from the output down."""
        xp, L = self.xp, len(self.W)
        for k in range(L):  # a[k+1] = act(a[k] @ W[k] + b[k])
            if k == 0 and self.sparse:
                a[1][...] = a[0] @ self.W[0]  # sparse x dense: the first layer reads only the stored values
            else:
                xp.matmul(a[k], self.W[k], out=a[k + 1])
            self.forward_activation(a[k + 1], k)
        if want_error or want_loss:
            self.measure(y, a[L], sw, tmp[L], want_error, want_loss)
        self.output_delta(y, a[L], d[L], tmp[L], sw)
        for k in range(L - 1, 0, -1):  # deltas from the output down, all before any update
            xp.matmul(d[k + 1], self.W[k].T, out=d[k])
            self.hidden_delta(d[k], a[k], tmp[k])

    def run(self, start: int, iterations: int) -> Stats:
        cfg, L = self.config, len(self.W)
        self.stats[...] = 0
        rows = None
        # over: exp(-x) -> inf is the sigmoid's exact 0. invalid: only non-finite
        # weights make NaN, and Network.fit reports that as DivergenceError.
        with self.backend.limits(), np.errstate(over="ignore", invalid="ignore"):
            for i in range(iterations):
                j = start + i
                r0, r1 = batch_bounds(j, self.n_rows, cfg.batch_size)
                if (r0, r1) != rows:  # full batch: cut once per interval
                    rows = (r0, r1)
                    a, d, tmp, y, sw = self._views(r0, r1)
                    if self._batch_weights is None:
                        weight = float(r1 - r0)
                    else:
                        weight = float(self._batch_weights[r0 // (cfg.batch_size or self.n_rows)])
                    r = reduction_factor(cfg, weight)
                self.forward_backward(a, d, tmp, y, sw, want_error=i == 0, want_loss=i == 0 or cfg.average_loss)
                for k in range(L):  # gradient sums: G[k] = a[k].T @ d[k+1]
                    self.weight_gradient(k, a[k], d[k + 1])
                self.step_parameters(learning_rate_at(cfg, j, self.n_rows), r)
        return Stats(self.backend.to_host(self.stats))

    def gradient_sums(self) -> Gradients:
        """The gradient summed over every row of X, with no step taken: what a Dask worker returns."""
        xp, host, L = self.xp, self.backend.to_host, len(self.W)
        with self.backend.limits(), np.errstate(over="ignore", invalid="ignore"):
            a, d, tmp, y, sw = self._views(0, self.n_rows)
            self.forward_backward(a, d, tmp, y, sw, want_error=False, want_loss=False)
            out = a[L]
            e = xp.abs(y - out)
            data = row_losses(xp, y, out, self.config.loss, self.eps)
            if sw is None:
                abs_error, weight, loss = e.sum(), float(self.n_rows), data.sum()
            else:
                abs_error, weight, loss = (e * sw[:, None]).sum(), sw.sum(), (data * sw).sum()
            for k in range(L):
                self.weight_gradient(k, a[k], d[k + 1])
        return Gradients(
            [host(g).copy() for g in self.g],
            None if self.gb is None else [host(g).copy() for g in self.gb],
            float(abs_error),
            float(weight),
            float(loss),
        )

    def weights(self) -> tuple[list[np.ndarray], list[np.ndarray] | None]:
        host = self.backend.to_host
        return [host(w).copy() for w in self.W], (None if self.b is None else [host(b).copy() for b in self.b])

    def optimizer_arrays(self) -> dict[str, list[np.ndarray]]:
        host = self.backend.to_host
        return {name: [host(a).copy() for a in arrays] for name, arrays in self.slots.items()}


class ReferenceBackend(Backend):
    """A backend whose training, gradients and prediction are the reference loop on its ``xp``
    (NumPy's, CuPy's); a backend with its own engines overrides what they replace."""

    def trainer(
        self,
        weights: list[np.ndarray],
        biases: list[np.ndarray] | None,
        X: Any,
        y: Any,
        config: TrainConfig,
        sample_weight: Any = None,
        optimizer: Any = None,
    ) -> Trainer:
        """:meth:`Backend.trainer`: the reference loop's trainer, after the memory check."""
        dt = np.dtype(weights[0].dtype)
        m = rows_per_step(X.shape[0], config.batch_size)
        units = sum(w.shape[1] for w in weights)
        params = sum(w.size for w in weights) + (0 if biases is None else sum(b.size for b in biases))
        self.check_memory(
            3 * m * units * dt.itemsize + copy_bytes(X, dt) + copy_bytes(y, dt) + 4 * params * dt.itemsize,
            f"activations, deltas and scratch: 3 x {m} rows x {units} units x {dt.itemsize} bytes, "
            "plus X and y in the network's dtype and the optimizer's arrays",
        )
        return ReferenceTrainer(self, weights, biases, X, y, config, sample_weight, optimizer)

    def gradients(
        self,
        weights: list[np.ndarray],
        biases: list[np.ndarray] | None,
        X: Any,
        y: Any,
        config: TrainConfig,
        sample_weight: Any = None,
    ) -> Gradients:
        """:meth:`Backend.gradients` by the reference loop."""
        dt = np.dtype(weights[0].dtype)
        sw = None if sample_weight is None else self.to_device(sample_weight, dt)
        whole = dataclasses.replace(config, batch_size=None)
        trainer = ReferenceTrainer(self, weights, biases, self.to_device(X, dt), self.to_device(y, dt), whole, sw)
        return trainer.gradient_sums()

    def predict(self, weights: list[Any], biases: list[Any] | None, X: Any, output: str = "sigmoid") -> Any:
        """Output layer for X (a contiguous backend array of the model's dtype), in row blocks.

        Peak memory is X, the output and one block's activations, whatever
        the row count; every row's result is the same as in one block (rows
        never mix).
        """
        xp = self.xp
        W = [xp.asarray(w) for w in weights]
        b = None if biases is None else [xp.asarray(v) for v in biases]
        out = xp.empty((X.shape[0], W[-1].shape[1]), X.dtype)
        step = predict_block_rows(max(max(w.shape) for w in W), X.dtype.itemsize)
        L = len(W)
        # extreme inputs overflow the products (inf - inf is NaN): no warning, as fit gives none
        with self.limits(), np.errstate(over="ignore", invalid="ignore"):
            for r0 in range(0, X.shape[0], step):
                a = X[r0 : r0 + step]
                for k, w in enumerate(W):
                    z = a @ w
                    a = activate(xp, z, None if b is None else b[k], output if k == L - 1 else "sigmoid")
                out[r0 : r0 + step] = a
        return out
