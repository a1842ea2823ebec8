"""Numerical faults and interruptions: clear errors, nothing lost."""

import signal
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest

import sigmanet as sn
from sigmanet.datasets import tutorial_table

X, Y = tutorial_table()


def test_divergence_stops_with_the_iteration_and_keeps_the_last_finite_weights(backend):
    net = sn.Network([3, 1], backend=backend, seed=1, init="legacy")
    net.fit(X, Y, iterations=100, report_every=50)
    kept = net.weights
    # The perceptron cannot fit XOR, so some row is always wrong; cross-entropy's delta y - a is
    # then +-1 there (no vanishing slope), and the step 1e308 * X.T @ (y - a) overflows at once.
    with pytest.raises(sn.DivergenceError, match="iteration 100") as e, warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # the error says it all: no warning besides
        net.fit(X * 1000, Y, iterations=100, learning_rate=1e308, loss="bce", report_every=10)
    assert e.value.iteration == 100 and isinstance(e.value, FloatingPointError)
    assert net.iteration == 100
    for a, b in zip(net.weights, kept, strict=True):
        assert np.array_equal(a, b)
    net.fit(X, Y, iterations=10)  # still usable
    assert net.iteration == 110


def test_keyboard_interrupt_leaves_the_last_completed_interval(backend):
    """Ctrl-C arrives (here from the callback) mid-fit: the network keeps what completed, and resumes."""
    net = sn.Network([3, 4, 1], backend=backend, seed=1, init="legacy")

    def interrupt(iteration, error):
        if iteration == 300:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        net.fit(X, Y, iterations=1000, report_every=100, callback=interrupt)
    assert net.iteration == 400  # the interval starting at 300 had completed when its report ran
    ref = sn.Network([3, 4, 1], backend=backend, seed=1, init="legacy")
    ref.fit(X, Y, iterations=400)
    for a, b in zip(net.weights, ref.weights, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12)
    net.fit(X, Y, iterations=600)
    ref.fit(X, Y, iterations=600)
    for a, b in zip(net.weights, ref.weights, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12)


def test_callback_returning_false_stops_early(backend):
    net = sn.Network([3, 4, 1], backend=backend, seed=1)
    hist = net.fit(X, Y, iterations=1000, report_every=100, callback=lambda it, err: it < 200)
    assert hist.iterations == [0, 100, 200] and net.iteration == 300


SIGINT_SCRIPT = textwrap.dedent("""
    import sys, numpy as np, sigmanet as sn
    from sigmanet.datasets import make_table
    X, y = make_table(4096, 16, 2, seed=0)
    net = sn.Network([16, 64, 2], backend=sys.argv[1], seed=0)
    net.fit(X, y, iterations=2, report_every=1)  # compile before we are interrupted
    try:
        net.fit(X, y, iterations=10**7, report_every=20, reduction="mean",
                progress=lambda done: print("done", done, flush=True))
    except KeyboardInterrupt:
        # the network holds the last completed piece: finite weights and a matching optimizer step
        ok = all(np.isfinite(w).all() for w in net.weights) and net.iteration > 2
        before = net.iteration
        net.fit(X, y, iterations=5, reduction="mean")  # resumable
        print("interrupted", before, ok and net.iteration == before + 5, flush=True)
""")


@pytest.mark.parametrize("name", ["numpy", "numba"])
def test_a_real_sigint_during_fit_leaves_a_consistent_resumable_network(name):
    proc = subprocess.Popen([sys.executable, "-c", SIGINT_SCRIPT, name], stdout=subprocess.PIPE, text=True)
    # wait for an event, not a clock: progress is reported per completed piece; wait for 40 iterations
    done = 0
    while done < 40:
        word, count = proc.stdout.readline().split()
        assert word == "done" and int(count) > done
        done = int(count)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    word, iteration, ok = [line for line in out.splitlines() if not line.startswith("done")][0].split()
    assert word == "interrupted" and ok == "True" and int(iteration) >= 2 + done


# The CLI, with every progress report also printed to stdout: the test waits for one.
CLI_WITH_PROGRESS_LINES = textwrap.dedent("""
    import sys
    import sigmanet.network as network
    from sigmanet.cli import main
    fit = network.Network.fit
    def reporting_fit(self, *args, progress=None, **kwargs):
        def report(done):
            print("done", done, flush=True)
            if progress is not None:
                progress(done)
        return fit(self, *args, progress=report, **kwargs)
    network.Network.fit = reporting_fit
    sys.exit(main(sys.argv[1:]))
""")


def test_cli_train_saves_a_checkpoint_on_interrupt(tmp_path):
    from sigmanet.datasets import make_table

    Xt, yt = make_table(20000, 8, 1, seed=0)
    data = tmp_path / "t.npz"
    np.savez(data, X=Xt, y=yt)
    model = tmp_path / "m.npz"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            CLI_WITH_PROGRESS_LINES,
            "train",
            str(data),
            "--iterations",
            "100000000",
            "--save",
            str(model),
            "--backend",
            "numpy",
            "--no-progress",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().startswith("done")  # an interval has completed: now interrupt
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "checkpoint saved" in err and str(model) in err
    net = sn.load(model)
    assert net.iteration > 0 and net.input_range is not None
