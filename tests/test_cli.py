"""The command line: demo, backends, --version."""

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


@pytest.mark.parametrize(
    "content,args,message",
    [
        ("a,b,label\n1,2,3\n4,5,0\n", ["--target", "label"], r"values in \[0, 3\].*rescale"),
        ("a,b,label\n1,2,x\n", ["--target", "label"], "line 2, column 'label': 'x' is not a number"),
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
        monkeypatch.setattr(sigmanet.io, "_read_csv_arrow", lambda path: (_ for _ in ()).throw(ImportError()))
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


def test_the_model_is_saved_before_the_plot_is_drawn(tmp_path, xor_csv, monkeypatch):
    import sigmanet.cli as cli

    model = tmp_path / "m.npz"

    def failing_plot(path, curves, title=""):
        assert model.exists(), "the plot ran before the save"
        raise OSError("disk full")

    monkeypatch.setattr(cli, "write_error_plot", failing_plot)
    with pytest.raises(OSError, match="disk full"):
        main(
            [
                "train",
                str(xor_csv),
                "--target",
                "label",
                "--iterations",
                "10",
                "--save",
                str(model),
                "--plot",
                str(tmp_path / "c.png"),
                "--no-progress",
            ]
        )
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
                "--learning-rate",
                "20",
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
        (["demo", "--iterations", "lots"], "argument --iterations: must be a whole number of at least 1, got 'lots'"),
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
