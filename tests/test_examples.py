"""The examples run and reach the accuracy they promise (they need scikit-learn, in the test extra)."""

import importlib.util
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_breast_cancer_held_out_accuracy():
    assert load("breast_cancer").main(["--backend", "numba"]) > 0.92


@pytest.mark.slow
def test_digits_held_out_accuracy():
    assert load("digits").main(["--backend", "numba"]) > 0.95


def test_momentum_and_adam_beat_plain_gradient_descent_at_the_same_rate(tmp_path):
    plot = str(tmp_path / "o.png")
    curves, accuracy = load("optimizers").main(["--backend", "numba", "--epochs", "8", "--plot", plot])
    assert curves["momentum"][-1] < 0.6 * curves["sgd"][-1] and curves["adam"][-1] < curves["sgd"][-1]
    assert accuracy["adam"] > 0.9
    assert (tmp_path / "o.png").read_bytes()[:4] == b"\x89PNG"


def test_xor_perceptron_fails_where_the_hidden_layer_succeeds(tmp_path):
    final = load("xor_hidden_layer").main(["--iterations", "20000", "--plot", str(tmp_path / "xor.png")])
    assert final["[3, 1]"] > 0.45 and final["[3, 4, 1]"] < 0.05
    assert (tmp_path / "xor.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_sklearn_pipeline_grid_search_and_loss_curve(tmp_path):
    accuracy = load("sklearn_pipeline").main(["--backend", "numba", "--plot", str(tmp_path / "loss.png")])
    assert accuracy > 0.93
    assert (tmp_path / "loss.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_embedding_surrogate_follows_the_exact_force_law_inside_an_njit_loop():
    gap = load("embedding_surrogate").main(["--backend", "numpy", "--iterations", "2000", "--steps", "10000"])
    assert gap < 0.3  # radians, over 10 s of a pendulum swinging through +-2 rad


def test_embedding_scipy_minimize_trains_through_loss_and_gradients():
    accuracy, loss, loss_again = load("embedding_scipy_minimize").main(["--backend", "numpy", "--maxiter", "200"])
    assert accuracy > 0.97
    assert loss_again == pytest.approx(loss, rel=1e-12)  # the network set to the optimum has the optimum's loss


@pytest.mark.slow
def test_embedding_torch_pipeline_keeps_tensors_and_torch_optim_lowers_the_loss():
    pytest.importorskip("torch", reason="PyTorch is not installed (pip install torch, the CPU build)")
    accuracy, tuned, first, last = load("embedding_torch_pipeline").main(["--backend", "numpy", "--epochs", "30"])
    assert accuracy > 0.9 and tuned > 0.9
    assert last < first


def test_sklearn_drop_in_gives_mlpclassifiers_scores():
    ours, theirs, gap = load("sklearn_drop_in").main(["--backend", "numba", "--epochs", "15"])
    assert ours == theirs > 0.8 and gap < 1e-9  # the same held-out accuracy, the same loss curve
