"""Where a fit would quietly go nowhere, the library helps: opt-in input scaling, and a warning when stuck."""

import sys
import warnings

import numpy as np
import pytest

import sigmanet as sn
from sigmanet.datasets import make_table


def unscaled_table(n=2000, d=20, seed=0):
    """Inputs in the thousands, as in a new user's raw table; the target a learnable rule."""
    X, y = make_table(n, d, 1, seed=seed, noise=0.0)
    return X * 5000 + 1000, y


def test_unscaled_inputs_stall_with_a_warning_that_says_what_to_do():
    X, y = unscaled_table()
    net = sn.Network([20, 8, 1], backend="numpy", seed=0)
    with pytest.warns(RuntimeWarning, match=r"training is stuck.*scale_inputs=True.*reduction='mean'"):
        net.fit(X, y, iterations=200, report_every=50)


def test_scale_inputs_trains_the_same_table_stores_the_range_and_predict_applies_it(tmp_path):
    X, y = unscaled_table()
    net = sn.Network([20, 8, 1], backend="numpy", seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # not stuck: no warning
        net.fit(
            X, y, iterations=3000, learning_rate=2.0, reduction="mean", loss="bce", report_every=500, scale_inputs=True
        )
    lo, hi = net.input_range
    np.testing.assert_array_equal(lo, X.min(axis=0))
    np.testing.assert_array_equal(hi, X.max(axis=0))
    assert net.error(X, y) < 0.3
    # the same outputs as a network fed pre-scaled inputs by hand
    span = np.where(hi > lo, hi - lo, 1.0)
    manual = sn.Network([20, 8, 1], backend="numpy", seed=0)
    manual.set_weights(net.weights)
    np.testing.assert_allclose(net.predict(X), manual.predict((X - lo) / span), rtol=1e-12)
    net.save(tmp_path / "m.npz")
    np.testing.assert_array_equal(sn.load(tmp_path / "m.npz").predict(X), net.predict(X))


def test_scale_inputs_keeps_a_range_the_network_already_has():
    X, y = unscaled_table(200)
    net = sn.Network([20, 4, 1], backend="numpy", seed=0)
    net.set_input_range(np.zeros(20), np.full(20, 1e5))
    net.fit(X, y, iterations=5, scale_inputs=True, reduction="mean")
    assert net.input_range[1][0] == 1e5


def test_a_failed_fit_leaves_the_input_range_as_it_was():
    X, y = unscaled_table(200)
    net = sn.Network([20, 4, 1], backend="numpy", seed=0)
    with pytest.raises(TypeError, match="scale_inputs"):
        net.fit(X, y, iterations=5, scale_inputs="yes")
    with pytest.raises(ValueError, match="y must lie"):
        net.fit(X, y * 3, iterations=5, scale_inputs=True)
    assert net.input_range is None and net.iteration == 0


def test_a_healthy_fit_gives_no_warning(backend):
    from sigmanet.datasets import tutorial_table

    net = sn.Network([3, 4, 1], backend=backend, seed=1, init="legacy")
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        net.fit(*tutorial_table(), iterations=20000, report_every=5000)


def test_the_generated_kernel_cache_is_bounded(tmp_path, monkeypatch):
    from sigmanet.backends.numba import _specialise, strategy

    folder = tmp_path / "generated"
    folder.mkdir()
    monkeypatch.setenv("SIGMANET_CACHE_DIR", str(tmp_path))
    assert strategy.cache_folder() == tmp_path
    for i in range(6):
        path = folder / f"sigmanet_generated_{i}_x.py"
        path.write_text("train = None\n")
        (folder / "__pycache__").mkdir(exist_ok=True)
        (folder / "__pycache__" / f"{path.stem}.train-1.py311.nbi").write_text("")
        path.with_suffix(".used").touch()
        import os

        os.utime(path.with_suffix(".used"), (1000 + i, 1000 + i))
    _specialise.prune(folder, keep=3)
    kept = sorted(p.name for p in folder.glob("*.py"))
    assert kept == [f"sigmanet_generated_{i}_x.py" for i in (3, 4, 5)]
    assert sorted(p.name.split(".")[0] for p in (folder / "__pycache__").iterdir()) == [
        f"sigmanet_generated_{i}_x" for i in (3, 4, 5)
    ]


def test_diagnose_names_the_cause_and_the_history_records_it_without_a_warning_filter():
    X, y = unscaled_table()
    net = sn.Network([20, 8, 1], backend="numpy", seed=0)
    quiet = net.fit(X, y, iterations=200, report_every=50, warn_stuck=False)  # no warning, no check
    assert quiet.stuck is None
    assert net.diagnose(X, quiet) == "saturated"
    with pytest.warns(sn.StuckWarning) as caught:
        hist = net.fit(X, y, iterations=200, report_every=50)
    assert hist.stuck == "saturated" == caught[0].message.cause
    scaled = sn.Network([20, 8, 1], backend="numpy", seed=0)
    good = scaled.fit(X, y, iterations=600, learning_rate=2.0, reduction="mean", loss="bce", report_every=100,
                      scale_inputs=True)  # fmt: skip
    assert good.stuck is None and scaled.diagnose(X, good) is None  # diagnose scales X as fit did
    frozen = sn.History(iterations=[0, 1, 2], errors=[0.5, 0.5, 0.5], losses=[1.0] * 3)
    assert scaled.diagnose(X, frozen) == "frozen"
    with pytest.raises(TypeError, match="history"):
        scaled.diagnose(X, [0.5, 0.5])


def test_on_report_sees_each_report_with_the_loss_in_its_two_parts_and_can_stop_the_fit():
    X, y = make_table(256, 6, 2, seed=1)
    net = sn.Network([6, 5, 2], backend="numpy", seed=0, bias=True)
    seen = []

    def on_report(hist):
        seen.append((hist.iterations[-1], hist.losses[-1], hist.data_losses[-1], hist.penalties[-1]))
        return len(seen) < 3

    hist = net.fit(X, y, iterations=1000, report_every=100, alpha=0.01, reduction="mean", on_report=on_report)
    assert [s[0] for s in seen] == [0, 100, 200] and net.iteration == 300  # stopped after the third
    assert hist.data_losses == [s[2] for s in seen] and hist.penalties == [s[3] for s in seen]
    np.testing.assert_allclose(np.add(hist.data_losses, hist.penalties), hist.losses, rtol=1e-12)
    assert all(p > 0 for p in hist.penalties)  # the L2 term, apart
    plain = sn.Network([6, 5, 2], backend="numpy", seed=0, bias=True).fit(X, y, iterations=100, report_every=100)
    assert plain.penalties == [0.0]
    with pytest.raises(TypeError, match="on_report"):
        net.fit(X, y, iterations=1, on_report="yes")


def test_sigmanets_warnings_point_at_the_callers_line():
    """Found by a review: a fixed stacklevel put the StuckWarning at a line inside network.py, so
    ``filterwarnings(module=...)`` on the caller's module could not reach it."""
    from sigmanet.sklearn import SigmaNetClassifier

    X, y = unscaled_table()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sn.Network([20, 8, 1], backend="numpy", seed=0).fit(X, y, iterations=200, report_every=50)
        line = sys._getframe().f_lineno - 1
        SigmaNetClassifier(max_iter=3, backend="numpy").fit(X, y.ravel())
    stuck = [w for w in caught if issubclass(w.category, sn.StuckWarning)]
    assert stuck and all(w.filename == __file__ for w in caught)
    assert stuck[0].lineno == line
    assert {w.lineno for w in caught} >= {line, line + 2}  # the estimator's ConvergenceWarning too
