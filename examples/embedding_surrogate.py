"""A trained network as a surrogate inside a compiled time-stepping loop.

    python examples/embedding_surrogate.py [--iterations 2000] [--steps 20000]

A pendulum with quadratic air drag, ``theta'' = a(theta, omega)`` with
``a = -(g/l) sin(theta) - c omega |omega|``, stands for a simulation whose
force law is expensive to evaluate. A small network learns ``a`` from
samples, and ``net.compiled_predict()`` hands the simulation a numba function
with the trained weights bound in: the integrator below is one ``@njit``
loop that calls it four times per Runge-Kutta step, with no Python in
between and nothing allocated per call. The surrogate trajectory is
compared with the one integrated from the exact force law.
"""

import argparse
import math
import time

import numba
import numpy as np

import sigmanet as sn

G_OVER_L, DRAG = 9.81, 0.15
THETA_MAX, OMEGA_MAX = math.pi, 6.0  # the region the surrogate is trained on


@numba.njit
def exact_force(state, out):
    """The force law the surrogate replaces: ``out[0] = a(theta, omega)``."""
    theta, omega = state[0], state[1]
    out[0] = -G_OVER_L * math.sin(theta) - DRAG * omega * abs(omega)


@numba.njit
def integrate(force, theta0, omega0, dt, steps):
    """Classical Runge-Kutta for theta'' = force(theta, omega); every force call fills a one-element array.

    ``force`` is any compiled ``f(state, out)``: the exact law, or the network's compiled predict.
    Returns the trajectory (steps + 1, 2).
    """
    path = np.empty((steps + 1, 2))
    path[0, 0], path[0, 1] = theta0, omega0
    s, a = np.empty(2), np.empty(1)  # the only buffers, allocated once
    for n in range(steps):
        theta, omega = path[n, 0], path[n, 1]
        s[0], s[1] = theta, omega
        force(s, a)
        k1t, k1w = omega, a[0]
        s[0], s[1] = theta + 0.5 * dt * k1t, omega + 0.5 * dt * k1w
        force(s, a)
        k2t, k2w = s[1], a[0]
        s[0], s[1] = theta + 0.5 * dt * k2t, omega + 0.5 * dt * k2w
        force(s, a)
        k3t, k3w = s[1], a[0]
        s[0], s[1] = theta + dt * k3t, omega + dt * k3w
        force(s, a)
        k4t, k4w = s[1], a[0]
        path[n + 1, 0] = theta + dt / 6 * (k1t + 2 * k2t + 2 * k3t + k4t)
        path[n + 1, 1] = omega + dt / 6 * (k1w + 2 * k2w + 2 * k3w + k4w)
    return path


def train_surrogate(iterations, backend="auto", seed=0):
    """A [2, 16, 1] network fitted to the force law on the training region (identity output)."""
    rng = np.random.default_rng(seed)
    X = np.column_stack([rng.uniform(-THETA_MAX, THETA_MAX, 4000), rng.uniform(-OMEGA_MAX, OMEGA_MAX, 4000)])
    y = np.empty((len(X), 1))
    for i in range(len(X)):
        exact_force(X[i], y[i])
    net = sn.Network([2, 16, 1], backend=backend, seed=seed, bias=True, output="identity")
    net.set_input_range([-THETA_MAX, -OMEGA_MAX], [THETA_MAX, OMEGA_MAX])
    net.fit(X, y, iterations=iterations, learning_rate=0.05, optimizer="adam", reduction="mean", report_every=None)
    return net, X, y


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backend", default="auto")
    p.add_argument("--iterations", type=int, default=2000, help="training iterations (Adam, full batch)")
    p.add_argument("--steps", type=int, default=20000, help="time steps of 1 ms")
    args = p.parse_args(argv)

    net, X, y = train_surrogate(args.iterations, args.backend)
    rms = float(np.sqrt(np.mean((net.predict(X) - y) ** 2)))
    print(f"surrogate {list(net.layers)}: RMS error of the force on its training samples {rms:.4f} (forces up to ~15)")

    surrogate = net.compiled_predict()  # f(x, out): the trained weights are a snapshot inside it
    integrate(surrogate, 2.0, 0.0, 1e-3, 2)  # compile both paths once, outside the timing
    integrate(exact_force, 2.0, 0.0, 1e-3, 2)
    t0 = time.perf_counter()
    learned = integrate(surrogate, 2.0, 0.0, 1e-3, args.steps)
    took = time.perf_counter() - t0
    exact = integrate(exact_force, 2.0, 0.0, 1e-3, args.steps)
    gap = float(np.abs(learned[:, 0] - exact[:, 0]).max())
    print(
        f"{args.steps} steps ({args.steps * 4} surrogate calls) in {took * 1e3:.1f} ms; "
        f"largest angle difference from the exact law over {args.steps * 1e-3:.0f} s: {gap:.4f} rad"
    )
    return gap


if __name__ == "__main__":
    main()
