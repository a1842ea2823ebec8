"""Reference implementations that every backend is checked against.

``seed_program`` is the seed's program, verbatim as a plain NumPy loop (only
wrapped in a function). ``reference_fit`` is the same loop written plainly
for any depth, with the options beyond the seed (bias, loss, reduction,
mini-batches); it shares no code with sigmanet.
"""

import numpy as np


def seed_program(iterations=60000):
    def nonlin(x, deriv=False):
        if deriv:
            return x * (1 - x)
        return 1 / (1 + np.exp(-x))

    X = np.array([[0, 0, 1], [0, 1, 1], [1, 0, 1], [1, 1, 1]])
    y = np.array([[0], [1], [1], [0]])
    np.random.seed(1)
    syn0 = 2 * np.random.random((3, 4)) - 1
    syn1 = 2 * np.random.random((4, 1)) - 1
    errors = []
    for j in range(iterations):
        l0 = X
        l1 = nonlin(np.dot(l0, syn0))
        l2 = nonlin(np.dot(l1, syn1))
        l2_error = y - l2
        if (j % 10000) == 0:
            errors.append(np.mean(np.abs(l2_error)))
        l2_delta = l2_error * nonlin(l2, deriv=True)
        l1_error = l2_delta.dot(syn1.T)
        l1_delta = l1_error * nonlin(l1, deriv=True)
        syn1 += l1.T.dot(l2_delta)
        syn0 += l0.T.dot(l1_delta)
    return errors, [syn0, syn1], l2


def reference_fit(
    weights,
    X,
    y,
    iterations,
    lr=1.0,
    report_every=None,
    biases=None,
    loss="mse",
    reduction="sum",
    batch_size=None,
    start=0,
):
    """Plain loop; returns (errors at report points, weights, biases). float64 throughout."""
    W = [np.array(w, dtype=np.float64) for w in weights]
    B = None if biases is None else [np.array(b, dtype=np.float64) for b in biases]
    X = np.asarray(X, np.float64)
    y = np.asarray(y, np.float64).reshape(len(X), -1)
    n = len(X)
    report_every = report_every or iterations
    errors = []
    for i in range(iterations):
        it = start + i
        if batch_size is None or batch_size >= n:
            r0, r1 = 0, n
        else:
            nb = -(-n // batch_size)
            r0 = (it % nb) * batch_size
            r1 = min(r0 + batch_size, n)
        a = [X[r0:r1]]
        for k, w in enumerate(W):
            z = a[-1] @ w
            if B is not None:
                z = z + B[k]
            with np.errstate(over="ignore"):
                a.append(1 / (1 + np.exp(-z)))
        err = y[r0:r1] - a[-1]
        if i % report_every == 0:
            errors.append(np.mean(np.abs(err)))
        delta = err * (a[-1] * (1 - a[-1])) if loss == "mse" else err
        deltas = [delta]
        for k in range(len(W) - 1, 0, -1):
            delta = (delta @ W[k].T) * (a[k] * (1 - a[k]))
            deltas.insert(0, delta)
        scale = lr / (r1 - r0) if reduction == "mean" else lr
        for k in range(len(W)):
            W[k] += scale * (a[k].T @ deltas[k])
            if B is not None:
                B[k] += scale * deltas[k].sum(axis=0)
    return errors, W, B


def random_problem(rng, n, layers):
    """Random inputs in [0, 1) and 0/1 targets for a network of these sizes."""
    X = rng.random((n, layers[0]))
    y = (rng.random((n, layers[-1])) > 0.5).astype(float)
    return X, y
