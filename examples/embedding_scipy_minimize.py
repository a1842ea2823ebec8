"""Training with scipy.optimize.minimize on sigmanet.loss_and_gradients.

    python examples/embedding_scipy_minimize.py [--maxiter 300]

``sigmanet.loss_and_gradients(weights, biases, X, y, ...)`` returns the
objective a fit minimises and its exact gradient for weights the caller
holds, without training. Here SciPy's L-BFGS-B drives it: the weights and
biases are packed into one vector, and ``minimize(..., jac=True)`` gets the
loss and the gradient from one call. The problem: points inside or outside
a circle of the plane, learned by a 2-8-1 network with a logistic output,
binary cross-entropy and a small L2 penalty (scikit-learn's MLPClassifier
with ``solver="lbfgs"`` minimises the same objective). The optimum goes
back into a Network with ``set_weights`` and predicts held-out points.
"""

import argparse

import numpy as np
from scipy.optimize import minimize

import sigmanet as sn

LAYERS = [2, 8, 1]
OPTIONS = dict(output="sigmoid", loss="bce", reduction="mean", alpha=1e-4)


def circle(n, rng):
    """n points in [-1, 1]^2, labelled 1 inside the circle of radius 0.6."""
    X = rng.uniform(-1, 1, size=(n, 2))
    return X, (np.hypot(X[:, 0], X[:, 1]) < 0.6).astype(float)[:, None]


def pack(weights, biases):
    return np.concatenate([a.ravel() for a in [*weights, *biases]])


def unpack(theta):
    """The vector back into weight matrices (n_k, n_{k+1}) and bias vectors (n_{k+1},)."""
    weights, biases, at = [], [], 0
    for p, q in zip(LAYERS[:-1], LAYERS[1:]):
        weights.append(theta[at : at + p * q].reshape(p, q))
        at += p * q
    for q in LAYERS[1:]:
        biases.append(theta[at : at + q])
        at += q
    return weights, biases


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backend", default="auto")
    p.add_argument("--maxiter", type=int, default=300, help="L-BFGS-B iterations at most")
    args = p.parse_args(argv)

    rng = np.random.default_rng(0)
    X, y = circle(1000, rng)
    X_test, y_test = circle(1000, rng)
    start = sn.Network(LAYERS, backend=args.backend, seed=0, bias=True)  # its initial weights, Glorot's

    def objective(theta):
        weights, biases = unpack(theta)
        loss, weight_grads, bias_grads = sn.loss_and_gradients(weights, biases, X, y, backend=args.backend, **OPTIONS)
        return loss, pack(weight_grads, bias_grads)

    result = minimize(
        objective, pack(start.weights, start.biases), jac=True, method="L-BFGS-B", options={"maxiter": args.maxiter}
    )
    print(f"L-BFGS-B: {result.nit} iterations, {result.nfev} evaluations, loss {result.fun:.4f} ({result.message})")

    net = sn.Network(LAYERS, backend=args.backend, bias=True)
    net.set_weights(*unpack(result.x))
    accuracy = float(np.mean((net.predict(X_test) > 0.5) == (y_test > 0.5)))
    loss_again = net.loss_and_gradients(X, y, loss="bce", reduction="mean", alpha=1e-4)[0]
    print(f"held-out accuracy {accuracy:.3f} on {len(X_test)} points; the network's own loss {loss_again:.4f}")
    return accuracy, result.fun, loss_again


if __name__ == "__main__":
    main()
