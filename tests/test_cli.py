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
        assert abs(float(line[len("Error:"):]) - ref) <= 1e-9 * ref
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
    assert main(["train", str(xor_csv), "--target", "label", "--hidden", "8", "--iterations", "3000",
                 "--backend", "numpy", "--save", str(model), "--plot", str(png), "--no-progress"]) == 0
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
    assert main(["train", str(tmp_path / "t.npy"), "--target=-2,-1", "--iterations", "50",
                 "--no-progress", "--save", str(tmp_path / "m.npz")]) == 0
    assert sn.load(tmp_path / "m.npz").layers == (4, 16, 2)


@pytest.mark.parametrize("content,args,message", [
    ("a,b,label\n1,2,3\n4,5,0\n", ["--target", "label"], r"values in \[0, 3\].*rescale"),
    ("a,b,label\n1,2,x\n", ["--target", "label"], "line 2, column 'label': 'x' is not a number"),
    ("a,b,label\n1,2\n", ["--target", "label"], "line 2: 2 fields"),
    ("a,b,label\n", ["--target", "label"], "no data rows"),
    ("", ["--target", "label"], "is empty"),
    ("a,b,label\n1,2,0\n", ["--target", "nope"], "'nope' is not in"),
    ("a,b,label\n1,2,0\n", [], "--target is required"),
    ("a,b\n1,0\n", ["--target", "a,b"], "every column is a target"),
])
def test_train_rejects_bad_tables_with_a_clear_message(tmp_path, capsys, content, args, message):
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

