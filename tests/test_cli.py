"""The command line: demo, backends, --version."""

import argparse
import contextlib
import re
import subprocess
import sys

import numpy as np
import pytest
from helpers import set_patched_flag, write_csv
from reference import seed_program

import sigmanet as sn
from sigmanet.cli import main


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "sigmanet.cli", *args], capture_output=True, text=True)


@pytest.mark.slow  # the seed's 60,000 iterations on NumPy too (CI also runs the wheel's demo)
def test_demo_prints_the_seed_errors_output_backend_and_time(capsys):
    assert main(["demo", "--backend", "numpy"]) == 0
    out = capsys.readouterr().out
    errors, _, _ = seed_program()
    lines = [ln for ln in out.splitlines() if ln.startswith("Error:")]
    assert len(lines) == 6
    for line, ref in zip(lines, errors, strict=True):
        assert abs(float(line[len("Error:") :]) - ref) <= 1e-9 * ref
    assert "Output After Training:" in out
    assert "backend: numpy" in out and "us/iteration" in out and "compile" in out


def test_demo_iterations_option(capsys):
    assert main(["demo", "--backend", "numpy", "--iterations", "20001"]) == 0
    assert capsys.readouterr().out.count("Error:") == 3


@pytest.mark.parametrize("iterations", [1, 2, 10001])
def test_demo_prints_the_seeds_l2_its_last_forward_pass_before_the_last_update(capsys, iterations):
    """Found by a review: the demo printed the output after the last update; the seed prints l2."""
    assert main(["demo", "--backend", "numpy", "--iterations", str(iterations)]) == 0
    out = capsys.readouterr().out
    printed = out.split("Output After Training:\n")[1].split("\n\n")[0]
    values = np.array([float(v) for v in printed.replace("[", " ").replace("]", " ").split()])
    errors, _, l2 = seed_program(iterations)
    assert np.allclose(values, l2.ravel(), rtol=0, atol=1e-8)  # as NumPy prints it: 8 decimals
    assert out.count("Error:") == len(errors)


def test_backends_lists_every_backend_with_status():
    r = run_cli("backends")
    assert r.returncode == 0
    for name in ("numpy", "numba", "cupy"):
        assert name in r.stdout
    for name, reason in sn.backend_status().items():
        line = next(ln for ln in r.stdout.splitlines() if ln.startswith(name))
        assert ("unavailable" in line) == (reason is not None)
    assert "auto ->" in r.stdout


def test_version():
    r = run_cli("--version")
    assert r.returncode == 0 and sn.__version__ in r.stdout


@pytest.mark.parametrize("args", [["demo", "--backend", "nope"], ["demo", "--iterations", "0"]])
def test_bad_arguments_fail_with_a_message_not_a_traceback(args):
    r = run_cli(*args)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr and "error" in r.stderr


# -- train and predict on a user's own data --


@pytest.fixture
def xor_csv(tmp_path):
    """A noisy XOR of two features at large, unscaled values, plus an ignored-by-name extra column."""
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 2, 400), rng.integers(0, 2, 400)
    rows = [[100 * x + rng.normal(), -50 + 30 * z + rng.normal(), x ^ z] for x, z in zip(a, b, strict=True)]
    path = tmp_path / "xor.csv"
    write_csv(path, ["alpha", "beta", "label"], rows)
    return path


def test_train_then_predict_round_trip(tmp_path, xor_csv, capsys):
    model, png = tmp_path / "m.npz", tmp_path / "curve.png"
    assert (
        main(
            [
                "train",
                str(xor_csv),
                "--target",
                "label",
                "--hidden",
                "8",
                "--iterations",
                "3000",
                "--backend",
                "numpy",
                "--save",
                str(model),
                "--plot",
                str(png),
                "--no-progress",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    acc = float(out.split("training accuracy:")[1].split()[0])
    assert acc > 0.95
    assert png.read_bytes()[:4] == b"\x89PNG"
    net = sn.load(model)
    assert net.input_names == ["alpha", "beta"] and net.target_names == ["label"]
    assert net.input_range is not None and net.layers == (2, 8, 1)

    # predict: input columns found by name, in any order; CSV out in input order
    pred_in = tmp_path / "new.csv"
    write_csv(pred_in, ["beta", "alpha"], [[-50, 0], [-20, 0], [-50, 100], [-20, 100]])
    pred_out = tmp_path / "pred.csv"
    assert main(["predict", str(model), str(pred_in), "--out", str(pred_out)]) == 0
    lines = pred_out.read_text().splitlines()
    assert lines[0] == "label,class"  # the probability, then the predicted class
    rows = [line.split(",") for line in lines[1:]]
    assert [float(p) > 0.5 for p, _ in rows] == [False, True, True, False]
    assert [c for _, c in rows] == ["0", "1", "1", "0"]

    # stdout without --out
    assert main(["predict", str(model), str(pred_in)]) == 0
    assert capsys.readouterr().out.splitlines()[1:] == lines[1:]


def test_resume_continues_where_it_stopped(tmp_path, xor_csv, capsys):
    model = tmp_path / "m.npz"
    base = ["train", str(xor_csv), "--target", "label", "--backend", "numpy", "--no-progress"]
    assert main(base + ["--iterations", "300", "--save", str(model)]) == 0
    assert main(base + ["--iterations", "200", "--resume", str(model), "--save", str(model)]) == 0
    assert sn.load(model).iteration == 500
    assert "iterations in total: 500" in capsys.readouterr().out


def test_train_from_npz_and_npy(tmp_path, capsys):
    from sigmanet.datasets import make_table

    X, y = make_table(300, 4, 2, seed=1, noise=0.0)
    np.savez(tmp_path / "t.npz", X=X, y=y)
    np.save(tmp_path / "t.npy", np.hstack([X, y]))
    assert main(["train", str(tmp_path / "t.npz"), "--iterations", "50", "--no-progress"]) == 0
    assert (
        main(
            [
                "train",
                str(tmp_path / "t.npy"),
                "--target=-2,-1",
                "--iterations",
                "50",
                "--no-progress",
                "--save",
                str(tmp_path / "m.npz"),
            ]
        )
        == 0
    )
    assert sn.load(tmp_path / "m.npz").layers == (4, 16, 2)
    # predict on the same .npy: the model knows its input columns by index, the targets are left out
    capsys.readouterr()
    assert main(["predict", str(tmp_path / "m.npz"), str(tmp_path / "t.npy")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "4,5,class" and len(lines) == 301


@pytest.mark.parametrize(
    "content,args,message",
    [
        ("a,b,label\n1,x,0\n", ["--target", "label"], "line 2, column 'b': 'x' is not a number"),
        ("a,b,label\n1,2,x\n3,4,x\n", ["--target", "label"], r"'label' holds one class only \('x'\)"),
        ("a,b,label\n1,2,x\n3,4, \n", ["--target", "label"], "line 3, column 'label': the label is empty"),
        ("a,b,label\n1,2,x\n3,4,1\n", ["--target", "label", "--task", "regression"], "holds text .*regression"),
        ("a,b,label\n1,2\n", ["--target", "label"], "line 2: 2 fields"),
        ("a,b,label\n", ["--target", "label"], "no data rows"),
        ("", ["--target", "label"], "is empty"),
        ("a,b,label\n1,2,0\n", ["--target", "nope"], "'nope' is not in"),
        ("a,b,label\n1,2,0\n", [], "--target is required"),
        ("a,b\n1,0\n", ["--target", "a,b"], "no input column is left"),
        ("a,b,label\n1,2,0\n3,nan,1\n", ["--target", "label"], "line 3, column 'b': 'nan' is not a finite number"),
        ("a,b,label\n1,2,0\n3,4,1\n-inf,5,0\n", ["--target", "label"], "line 4, column 'a': '-inf' is not a finite"),
    ],
)
@pytest.mark.parametrize("reader", ["pyarrow", "stdlib"])
def test_train_rejects_bad_tables_with_a_clear_message(tmp_path, capsys, monkeypatch, content, args, message, reader):
    import sigmanet.io

    if reader == "stdlib":
        monkeypatch.setattr(sigmanet.io, "_read_selected_arrow", lambda *a: (_ for _ in ()).throw(ImportError()))
    else:
        pytest.importorskip("pyarrow")
    path = tmp_path / "d.csv"
    path.write_text(content)
    assert main(["train", str(path), *args, "--no-progress"]) == 2
    assert re.search(message, capsys.readouterr().err)


def test_train_reports_a_damaged_npz_cleanly(tmp_path, capsys):
    path = tmp_path / "d.npz"
    np.savez(path, X=np.ones((3, 2)), y=np.ones((3, 1)))
    path.write_bytes(set_patched_flag(path.read_bytes()))
    assert main(["train", str(path), "--no-progress"]) == 2
    assert "not a readable .npz file" in capsys.readouterr().err


def test_train_missing_file(capsys):
    assert main(["train", "/nonexistent.csv", "--target", "y"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_predict_refuses_a_table_without_the_models_columns(tmp_path, xor_csv, capsys):
    model = tmp_path / "m.npz"
    main(["train", str(xor_csv), "--target", "label", "--iterations", "10", "--save", str(model), "--no-progress"])
    write_csv(tmp_path / "bad.csv", ["alpha", "gamma"], [[1, 2]])
    assert main(["predict", str(model), str(tmp_path / "bad.csv")]) == 2
    assert "lacks the model's input column(s) ['beta']" in capsys.readouterr().err


# -- what a new user hit (issue 13): each a regression test --


def test_plot_without_matplotlib_fails_before_training_and_loses_nothing(tmp_path, xor_csv, capsys, monkeypatch):
    import sigmanet.cli as cli

    def no_matplotlib():
        raise ValueError("--plot needs matplotlib: pip install 'sigmanet[bench]'")

    trained = []
    monkeypatch.setattr(cli, "_matplotlib", no_matplotlib)
    monkeypatch.setattr(sn.Network, "fit", lambda *a, **k: trained.append(1))
    assert (
        main(
            [
                "train",
                str(xor_csv),
                "--target",
                "label",
                "--save",
                str(tmp_path / "m.npz"),
                "--plot",
                str(tmp_path / "c.png"),
                "--no-progress",
            ]
        )
        == 2
    )
    assert "--plot needs matplotlib" in capsys.readouterr().err and not trained


def test_the_model_is_saved_before_the_plot_is_drawn(tmp_path, xor_csv, monkeypatch, capsys):
    import sigmanet.cli as cli

    model = tmp_path / "m.npz"

    def failing_plot(path, curves, title=""):
        assert model.exists(), "the plot ran before the save"
        raise OSError("disk full")

    monkeypatch.setattr(cli, "write_error_plot", failing_plot)
    argv = ["train", str(xor_csv), "--target", "label", "--iterations", "10", "--save", str(model)]
    rc = main([*argv, "--plot", str(tmp_path / "c.png"), "--no-progress"])
    assert rc == 2  # one line naming the fault, not a traceback
    assert capsys.readouterr().err.strip().splitlines()[-1] == "sigmanet train: error: disk full"
    assert sn.load(model).iteration == 10


@pytest.fixture
def iris_like_csv(tmp_path):
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 3, 300)
    rows = [[i, *(rng.normal(size=2) + c), c == 0, c == 1, c == 2] for i, c in enumerate(labels)]
    path = tmp_path / "iris.csv"
    write_csv(
        path,
        ["id", "f1", "f2", "setosa", "versicolor", "virginica"],
        [[int(v) for v in r[:1]] + r[1:3] + [int(v) for v in r[3:]] for r in rows],
    )
    return path


def test_repeated_target_adds_targets_instead_of_leaking_the_first_into_the_inputs(tmp_path, iris_like_csv):
    model = tmp_path / "m.npz"
    assert (
        main(
            [
                "train",
                str(iris_like_csv),
                "--target",
                "setosa",
                "--target",
                "versicolor",
                "--target",
                "virginica",
                "--exclude",
                "id",
                "--iterations",
                "20",
                "--save",
                str(model),
                "--no-progress",
            ]
        )
        == 0
    )
    net = sn.load(model)
    assert net.target_names == ["setosa", "versicolor", "virginica"] and net.input_names == ["f1", "f2"]


@pytest.mark.parametrize(
    "args,message",
    [
        (["--target", "setosa", "--target", "setosa"], r"--target names column\(s\) \['setosa'\] more than once"),
        (["--target", "setosa", "--inputs", "f1,setosa"], "both --inputs and --target: a target that is also an input"),
        (["--target", "setosa", "--exclude", "setosa"], "both --target and --exclude"),
        (["--target", "setosa", "--exclude", "nope"], "--exclude column 'nope' is not in"),
    ],
)
def test_target_and_input_mistakes_are_refused(iris_like_csv, capsys, args, message):
    assert main(["train", str(iris_like_csv), *args, "--no-progress"]) == 2
    assert re.search(message, capsys.readouterr().err)


def test_inputs_picks_the_input_columns(tmp_path, iris_like_csv):
    model = tmp_path / "m.npz"
    assert (
        main(
            [
                "train",
                str(iris_like_csv),
                "--target",
                "setosa",
                "--inputs",
                "f2",
                "--iterations",
                "5",
                "--backend",
                "numpy",
                "--save",
                str(model),
                "--no-progress",
            ]
        )
        == 0
    )
    assert sn.load(model).input_names == ["f2"]


def test_validation_fraction_reports_held_out_scores_and_patience_stops_early(tmp_path, xor_csv, capsys):
    png = tmp_path / "c.png"
    assert (
        main(
            [
                "train",
                str(xor_csv),
                "--target",
                "label",
                "--hidden",
                "8",
                "--iterations",
                "100000",
                "--validation-fraction",
                "0.25",
                "--patience",
                "3",
                "--check-every",
                "200",
                "--backend",
                "numpy",
                "--plot",
                str(png),
                "--no-progress",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "held-out accuracy:" in out and "held-out error" in out
    trained = int(out.split("trained ")[1].split()[0])
    assert trained < 100000  # stopped early: the held-out error stopped improving
    assert float(out.split("held-out accuracy:")[1].split()[0]) > 0.9


def test_patience_without_held_out_rows_is_refused(xor_csv, capsys):
    assert main(["train", str(xor_csv), "--target", "label", "--patience", "3", "--no-progress"]) == 2
    assert "--patience needs --validation-fraction" in capsys.readouterr().err


def test_the_training_curve_ends_at_the_last_iteration(monkeypatch, tmp_path, xor_csv):
    import sigmanet.cli as cli

    seen = {}
    monkeypatch.setattr(cli, "write_error_plot", lambda path, curves, title="": seen.update(curves=curves, title=title))
    assert (
        main(
            [
                "train",
                str(xor_csv),
                "--target",
                "label",
                "--iterations",
                "2000",
                "--validation-fraction",
                "0.2",
                "--backend",
                "numpy",
                "--plot",
                str(tmp_path / "c.png"),
                "--no-progress",
            ]
        )
        == 0
    )
    assert set(seen["curves"]) == {"training rows", "held-out rows"}
    for points in seen["curves"].values():
        assert points[-1][0] == 2000
    assert "xor.csv" in seen["title"]


def test_predict_on_a_file_that_is_not_a_model_says_so(tmp_path, capsys):
    junk = tmp_path / "junk.npz"
    junk.write_bytes(bytes(range(256)) * 4)
    assert main(["predict", str(junk), str(junk)]) == 2
    err = capsys.readouterr().err
    assert "is not a sigmanet model" in err and "allow_pickle" not in err


def test_a_closed_pipe_ends_quietly(tmp_path, xor_csv):
    model = tmp_path / "m.npz"
    assert (
        main(["train", str(xor_csv), "--target", "label", "--iterations", "5", "--save", str(model), "--no-progress"])
        == 0
    )
    big = tmp_path / "big.csv"
    write_csv(big, ["alpha", "beta"], [[1.0, 2.0]] * 20000)
    shell = f"{sys.executable} -m sigmanet predict {model} {big} | head -n 1"
    r = subprocess.run(["bash", "-c", shell], capture_output=True, text=True)
    assert r.stdout == "label,class\n"
    assert r.stderr == ""


@pytest.mark.parametrize(
    "args,message",
    [
        (
            ["train", "x.csv", "--learning-rate", "fast"],
            "argument --learning-rate: must be a positive number, got 'fast'",
        ),
        (["demo", "--iterations", "lots"], "argument --iterations: must be a whole number from 1 to 2**62, got 'lots'"),
        (["demo", "--backend", "gpu"], "argument --backend: invalid choice: 'gpu'"),
    ],
)
def test_argument_errors_name_the_option_not_a_private_function(args, message):
    r = run_cli(*args)
    assert r.returncode == 2 and message in r.stderr
    assert "_positive" not in r.stderr


def test_unknown_backend_message_does_not_say_from_backend():
    with pytest.raises(sn.BackendUnavailableError) as e:
        sn.Network([3, 1], backend="gpu")
    assert "from backend" not in str(e.value) and "'gpu'" in str(e.value)


@pytest.mark.parametrize(
    "command,words",
    [
        ("train", ["--target", "repeat it", "--validation-fraction", "--patience", "numpy", "numba", "cupy"]),
        ("predict", ["predicted class", "--probabilities-only", "numba"]),
        ("bench", ["--layers", "sigmanet[peers]", "sigmanet[bench]"]),
        ("demo", ["--iterations", "auto"]),
    ],
)
def test_subcommand_help_describes_options_and_backends(command, words):
    r = run_cli(command, "--help")
    assert r.returncode == 0
    for word in words:
        assert word in r.stdout, word


# -- what users of the CLI expect (issue 25): classes, regressions, options, early stopping --


def _train(*args):
    return main(["train", *map(str, args), "--no-progress"])


@pytest.fixture
def species_csv(tmp_path):
    """Three classes named by text, an id column of text, and a numeric regression target."""
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 3, 300)
    X = rng.normal(size=(300, 2)) * 0.4 + labels[:, None] * np.array([1.0, -1.0])
    price = 1000 + 300 * X[:, 0] ** 2 - 200 * X[:, 1]
    names = np.array(["setosa", "versicolor", "virginica"])[labels]
    path = tmp_path / "species.csv"
    write_csv(
        path,
        ["id", "f1", "f2", "species", "price"],
        [[f"row-{i}", *X[i], names[i], price[i]] for i in range(300)],
    )
    return path, X, labels, price


def test_text_class_labels_train_a_softmax_and_predict_writes_the_label_back(tmp_path, species_csv, capsys):
    path, X, labels, _ = species_csv
    model = tmp_path / "m.npz"
    assert _train(path, "--target", "species", "--exclude", "id,price", "--save", model, "--backend", "numpy") == 0
    out = capsys.readouterr().out
    assert "softmax over 3 classes of 'species'" in out
    assert float(out.split("training accuracy:")[1].split()[0]) > 0.9
    net = sn.load(model)
    assert net.output == "softmax" and net.layers[-1] == 3
    assert net.target_names == ["setosa", "versicolor", "virginica"]
    pred = tmp_path / "pred.csv"
    assert main(["predict", str(model), str(path), "--keep", "id", "--out", str(pred)]) == 0
    lines = pred.read_text().splitlines()
    assert lines[0] == "id,setosa,versicolor,virginica,class"
    rows = [line.split(",") for line in lines[1:]]
    assert [r[0] for r in rows] == [f"row-{i}" for i in range(300)]  # the id passed through, in order
    names = np.array(["setosa", "versicolor", "virginica"])
    assert np.mean(np.array([r[-1] for r in rows]) == names[labels]) > 0.9
    probabilities = np.array([[float(v) for v in r[1:4]] for r in rows])
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-9)


def test_whole_number_class_labels_are_classes_and_come_back_as_written(tmp_path, capsys):
    rng = np.random.default_rng(2)
    labels = rng.choice([3, 5, 10], 240)
    x = labels + rng.normal(size=240) * 0.2
    path = tmp_path / "n.csv"
    write_csv(path, ["x", "digit"], [[a, int(c)] for a, c in zip(x, labels, strict=True)])
    model = tmp_path / "m.npz"
    assert _train(path, "--target", "digit", "--save", model, "--backend", "numpy") == 0
    assert "softmax over 3 classes of 'digit'" in capsys.readouterr().out
    net = sn.load(model)
    assert net.target_names == ["3", "5", "10"]  # numeric order, written as the table wrote them
    write_csv(tmp_path / "new.csv", ["x"], [[3.0], [10.0]])
    assert main(["predict", str(model), str(tmp_path / "new.csv")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "3,5,10,class" and [ln.split(",")[-1] for ln in lines[1:]] == ["3", "10"]


def test_a_regression_target_trains_an_identity_output_in_its_own_units(tmp_path, species_csv, capsys):
    path, X, _, price = species_csv
    model = tmp_path / "m.npz"
    assert _train(path, "--target", "price", "--exclude", "id,species", "--save", model, "--backend", "numpy") == 0
    out = capsys.readouterr().out
    assert "regression of 'price'" in out and "accuracy" not in out
    spread = np.mean(np.abs(price - price.mean()))
    assert float(out.split("training error (mean |y - output|):")[1].split()[0]) < 0.2 * spread
    net = sn.load(model)
    assert net.output == "identity"
    # the file predicts in the targets' units, for Python users too
    assert np.mean(np.abs(net.predict(X)[:, 0] - price)) < 0.2 * spread
    assert main(["predict", str(model), str(path), "--keep", "id"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "id,price"  # no class column for a regression
    predicted = np.array([float(ln.split(",")[1]) for ln in lines[1:]])
    np.testing.assert_allclose(predicted, net.predict(X)[:, 0], rtol=1e-12)
    # a resumed regression goes on from what it learnt, in the same units
    before = np.mean(np.abs(predicted - price))
    resumed = ["--exclude", "id,species", "--resume", model, "--save", model, "--iterations", "500"]
    assert _train(path, "--target", "price", *resumed, "--backend", "numpy") == 0
    assert "iterations in total: 2500" in capsys.readouterr().out
    assert np.mean(np.abs(sn.load(model).predict(X)[:, 0] - price)) < before


def test_task_regression_makes_whole_numbers_a_regression(tmp_path):
    path = tmp_path / "n.csv"
    write_csv(path, ["x", "count"], [[i / 50, i % 7] for i in range(100)])
    model = tmp_path / "m.npz"
    args = ["--target", "count", "--iterations", "5", "--save", model, "--backend", "numpy"]
    assert _train(path, *args, "--task", "regression") == 0
    assert sn.load(model).output == "identity"
    assert _train(path, *args) == 0
    assert sn.load(model).output == "softmax"


def test_the_fit_options_reach_network_fit_and_a_resumed_fit_keeps_them(tmp_path, xor_csv, capsys):
    model = tmp_path / "m.npz"
    options = [
        *("--batch-size", "32", "--shuffle", "--no-bias", "--loss", "mse", "--optimizer", "adam"),
        *("--learning-rate", "0.01", "--beta-1", "0.8", "--beta-2", "0.99", "--epsilon", "1e-7", "--alpha", "0.001"),
        *("--schedule", "invscaling", "--power-t", "0.25", "--reduction", "sum"),
    ]
    common = ["--target", "label", "--backend", "numpy"]
    assert _train(xor_csv, *common, "--iterations", "50", *options, "--save", model) == 0
    net = sn.load(model)
    expected = dict(
        batch_size=32, loss="mse", optimizer="adam", learning_rate=0.01, beta_1=0.8, beta_2=0.99, epsilon=1e-7,
        alpha=0.001, schedule="invscaling", power_t=0.25, reduction="sum",
    )  # fmt: skip
    assert {k: net.fit_options[k] for k in expected} == expected
    assert net.fit_options["shuffle"] == 0 and net.bias is False  # shuffled, seeded by --seed 0
    assert net.optimizer_state.rule == "adam"
    assert _train(xor_csv, *common, "--iterations", "10", "--resume", model, "--save", model) == 0
    resumed = sn.load(model)
    assert {k: resumed.fit_options[k] for k in expected} == expected and resumed.iteration == 60
    capsys.readouterr()
    assert _train(xor_csv, *common, "--resume", model, "--bias") == 2
    assert "--bias conflicts with the resumed model" in capsys.readouterr().err


@pytest.mark.parametrize(
    "args,message",
    [
        (["--loss", "bce", "--target", "species", "--exclude", "price"], "--loss bce does not fit .* softmax output"),
        (["--loss", "cross_entropy", "--target", "price", "--exclude", "species"], "use --loss mse"),
        (["--batch-size", "lots", "--target", "price"], "argument --batch-size: must be a whole number"),
        (["--momentum", "2", "--target", "price"], r"argument --momentum: must be a number in \[0, 1\]"),
    ],
)
def test_training_options_that_do_not_fit_are_refused_in_option_names(species_csv, capsys, args, message):
    path = species_csv[0]
    with pytest.raises(SystemExit) if "argument" in message else contextlib.nullcontext():
        assert _train(path, "--exclude", "id", *args) == 2
    assert re.search(message, capsys.readouterr().err)


def test_early_stopping_saves_the_kept_weights_under_their_own_iteration(tmp_path, capsys):
    """Issue 25.3: the saved iteration, the printed line and a resumed fit agree with the weights kept."""
    rng = np.random.default_rng(0)
    X = rng.random((80, 3))
    label = (X[:, 0] + 0.3 * rng.normal(size=80) > 0.5).astype(int)  # noisy: a wide network overfits
    data = tmp_path / "noisy.csv"
    write_csv(data, ["a", "b", "c", "label"], [[*x, c] for x, c in zip(X, label, strict=True)])
    common = ["--target", "label", "--backend", "numpy", "--validation-fraction", "0.25", "--check-every", "100"]
    common += ["--hidden", "32"]
    stopped, plain = tmp_path / "stopped.npz", tmp_path / "plain.npz"
    assert _train(data, *common, "--iterations", "100000", "--patience", "3", "--save", stopped) == 0
    out = capsys.readouterr().out
    kept = sn.load(stopped).iteration
    ran = int(out.split("to iteration ")[1].split()[0])
    assert kept < ran < 100000  # stopped early, past the best check, whose weights it kept
    assert f"trained {kept} iterations" in out and f"iterations in total: {kept}" in out
    check = re.search(rf"kept the weights of check (\d+) of \d+ \(iteration {kept}, held-out error", out)
    assert check and int(check.group(1)) * 100 == kept
    # the same run without early stopping, to the kept iteration: the very same weights
    assert _train(data, *common, "--iterations", kept, "--save", plain) == 0
    for a, b in zip(sn.load(stopped).weights, sn.load(plain).weights, strict=True):
        np.testing.assert_array_equal(a, b)
    # and both resume alike
    for model in (stopped, plain):
        assert _train(data, *common, "--iterations", "50", "--resume", model, "--save", model) == 0
    a, b = sn.load(stopped), sn.load(plain)
    assert a.iteration == b.iteration == kept + 50
    for wa, wb in zip(a.weights, b.weights, strict=True):
        np.testing.assert_array_equal(wa, wb)


def test_class_targets_are_held_out_in_proportion(tmp_path, monkeypatch):
    import sigmanet.training as training

    seen = {}
    real = training.split_rows

    def spy(n, fraction, seed, labels=None):
        seen["labels"] = labels
        return real(n, fraction, seed, labels)

    monkeypatch.setattr(training, "split_rows", spy)
    rng = np.random.default_rng(0)
    labels = np.array(["a"] * 90 + ["b"] * 10)
    path = tmp_path / "t.csv"
    write_csv(path, ["x", "y"], [[rng.random(), c] for c in labels])
    assert _train(path, "--target", "y", "--validation-fraction", "0.2", "--iterations", "3", "--backend", "numpy") == 0
    kept, held = real(100, 0.2, 0, seen["labels"])
    assert list(np.bincount(seen["labels"][held])) == [18, 2]  # a stratified split, by class


def test_stuck_advice_speaks_in_option_names(xor_csv, capsys):
    """Issue 25.7: --learning-rate 1e9 saturates the units; the advice names CLI options, not Python ones."""
    assert _train(xor_csv, "--target", "label", "--learning-rate", "1e9", "--backend", "numpy") == 0
    err = capsys.readouterr().err
    assert "stuck" in err and "--learning-rate" in err
    for python_name in ("scale_inputs", "reduction", "learning_rate"):
        assert python_name not in err


def test_bench_says_where_it_writes_and_compares_nothing_with_itself(tmp_path, capsys, monkeypatch):
    from sigmanet import bench

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(bench, "tutorial_fit_speedup", lambda *a, **k: pytest.fail("nothing to compare"))
    args = ["bench", "--quick", "--no-peers", "--sizes", "4", "--seconds", "0.01"]
    assert main([*args, "--backends", "numpy"]) == 0
    out = capsys.readouterr().out
    assert f"to {tmp_path / 'bench-out'} (--out chooses the folder)" in out
    assert (tmp_path / "bench-out" / "results.json").exists()
    assert "numpy is" not in out and "only numpy was timed" in out
    monkeypatch.setattr(bench, "run", lambda *a, **k: [])  # what is timed does not matter here
    assert main([*args, "--backends", "numpy,numba", "--layers", "8,16,2", "--out", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    assert "not --layers 8-16-2" in out and "(--out chooses" not in out


def test_bench_times_the_optimizer_asked_for_and_skips_the_peers_then(tmp_path, capsys, monkeypatch):
    from sigmanet import bench

    seen = {}
    real = bench.harness.bench_backend

    def spy(name, rows, *args, **kwargs):
        seen[name] = kwargs.get("optimizer")
        return real(name, rows, *args, **kwargs)

    monkeypatch.setattr(bench.harness, "bench_backend", spy)
    args = ["bench", "--quick", "--sizes", "4", "--seconds", "0.01", "--backends", "numpy", "--optimizer", "adam"]
    assert main([*args, "--peers", "seed-loop", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert seen == {"numpy": "adam"} and "skipping the peers" in out
    with pytest.raises(SystemExit):
        main([*args[:-2], "--optimizer", "lion", "--out", str(tmp_path)])
    assert "invalid choice: 'lion'" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["train", "predict", "bench"])
def test_the_docs_render_option_names_with_two_hyphens_and_without_warnings(command):
    """Issue 25.13: docs/cli.rst renders each help text as reStructuredText with smart quotes (Sphinx's
    default): '--seed' must stay two hyphens, and 'data/*.csv' must not start emphasis."""
    import io

    from docutils.core import publish_doctree

    from sigmanet.cli import docs_parser

    sub = next(a for a in docs_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices[command]
    texts = [sub.description] + [a.help % vars(a) if "%" in (a.help or "") else a.help for a in sub._actions]
    for text in filter(None, texts):
        warnings = io.StringIO()
        tree = publish_doctree(text, settings_overrides={"smart_quotes": True, "warning_stream": warnings})
        assert warnings.getvalue() == "", (text, warnings.getvalue())
        assert "\u2013" not in tree.astext(), text  # no en dash
    from sigmanet.cli import build_parser

    plain = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices[command]
    assert "``" not in plain.format_help() and "--backend" in plain.format_help()  # the terminal's is unchanged


@pytest.mark.slow  # two processes
def test_saved_models_get_the_users_umask(tmp_path, xor_csv):
    """Issue 25.11, through the command line."""
    model = tmp_path / "m.npz"
    for umask, mode in ((0o027, 0o640), (0o002, 0o664)):
        model.unlink(missing_ok=True)
        r = subprocess.run(
            [sys.executable, "-m", "sigmanet", "train", str(xor_csv), "--target", "label", "--iterations", "2"]
            + ["--backend", "numpy", "--save", str(model)],
            capture_output=True,
            text=True,
            umask=umask,  # no preexec_fn: no Python-level fork beside JAX's or numba's threads
        )
        assert r.returncode == 0, r.stderr
        assert model.stat().st_mode & 0o777 == mode
