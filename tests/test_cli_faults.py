"""`sigmanet train` under faults (issues 25 and 28): signals, closed pipes, saves that fail, lost clusters.

Each test waits for an event (a line printed, a file appearing), never for a time; the ones that
start a Python process per case are marked slow where they take more than about a second.
"""

import contextlib
import os
import signal
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import sigmanet as sn
from sigmanet.cli import main
from sigmanet.datasets import make_table

# The CLI with hooks for the tests: every completed piece of training prints "done N"; FAULT names
# a fault to inject (a signal sent to the process at a chosen moment).
CLI = textwrap.dedent("""
    import os, signal, sys
    import sigmanet.checkpoint as checkpoint
    import sigmanet.network as network
    from sigmanet.cli import main

    fault = os.environ.get("FAULT", "")
    fit, predict, write = network.Network.fit, network.Network.predict, checkpoint.write

    def reporting_fit(self, *args, progress=None, **kwargs):
        def report(done):
            print("done", done, flush=True)
            if progress is not None:
                progress(done)
        return fit(self, *args, progress=report, **kwargs)

    def predict_signalled(self, X):  # the first predict after training: the scores
        if fault == "sigint-during-scores":
            os.kill(os.getpid(), signal.SIGINT)
        return predict(self, X)

    def write_signalled(path, state):
        if fault == "sigint-during-save":
            os.kill(os.getpid(), signal.SIGINT)  # delivered at once, in the middle of the save
        return write(path, state)

    network.Network.fit, network.Network.predict, checkpoint.write = reporting_fit, predict_signalled, write_signalled
    sys.exit(main(sys.argv[1:]))
""")


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    X, y = make_table(20000, 8, 1, seed=0)
    path = tmp_path_factory.mktemp("data") / "t.npz"
    np.savez(path, X=X * 100, y=y)  # unscaled inputs: the saved model must carry the input range
    return path


def start(table, model, *extra, fault="", env=None):
    return subprocess.Popen(
        [sys.executable, "-c", CLI, "train", str(table), "--save", str(model), "--backend", "numpy"]
        + ["--no-progress", *map(str, extra)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "FAULT": fault, **(env or {})},
    )


def wait_for_a_piece(proc):
    line = proc.stdout.readline()
    assert line.startswith("done"), (line, proc.stderr.read() if proc.poll() is not None else "")


@pytest.mark.parametrize("signum,code", [(signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_sigterm_and_sighup_save_the_model_as_ctrl_c_does(tmp_path, table, signum, code):
    """Issue 25.2: `timeout -s TERM` (or a closed terminal) used to leave no file."""
    model = tmp_path / "m.npz"
    proc = start(table, model, "--iterations", 10**8)
    wait_for_a_piece(proc)  # some training has completed: now stop it
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert f"interrupted by {signal.Signals(signum).name}" in err and f"checkpoint saved to {model}" in err
    assert "Traceback" not in err
    net = sn.load(model)
    assert net.iteration > 0 and net.input_range is not None
    assert np.isfinite(net.predict(np.zeros((2, 8)))).all()


def test_signal_handlers_are_the_callers_again_after_train(tmp_path, monkeypatch):
    """Only for the duration of `sigmanet train`: a program calling main() gets its handlers back, and a
    program using the library never sees them."""
    names = [s for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)]
    before = {s: signal.getsignal(s) for s in names}
    during = {}
    fit = sn.Network.fit

    def spying_fit(self, *args, **kwargs):
        during.update({s: signal.getsignal(s) for s in names})
        return fit(self, *args, **kwargs)

    X, y = make_table(100, 3, 1, seed=0)
    np.savez(tmp_path / "t.npz", X=X, y=y)
    sn.Network([3, 1], backend="numpy").fit(X, y, iterations=2)
    assert {s: signal.getsignal(s) for s in names} == before
    monkeypatch.setattr(sn.Network, "fit", spying_fit)
    assert main(["train", str(tmp_path / "t.npz"), "--iterations", "3", "--backend", "numpy", "--no-progress"]) == 0
    assert all(during[s] != before[s] for s in names)  # ours while training
    assert {s: signal.getsignal(s) for s in names} == before


def test_a_closed_pipe_does_not_lose_the_model(tmp_path, table):
    """Issue 25.2: `sigmanet train ... --save m.npz | head -1` wrote no file: the scores came before the save."""
    model = tmp_path / "m.npz"
    proc = subprocess.Popen(
        [sys.executable, "-m", "sigmanet", "train", str(table), "--iterations", "20", "--save", str(model)]
        + ["--backend", "numpy"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},  # each line written as printed: the first write fails
    )
    proc.stdout.close()  # the reader is gone before anything is printed
    err = proc.stderr.read().decode()
    proc.stderr.close()
    proc.wait(timeout=60)
    assert proc.returncode == 141 and "Traceback" not in err, err
    assert sn.load(model).iteration == 20


def test_a_sigint_while_the_scores_are_computed_keeps_the_model(tmp_path, table):
    """Issue 28.1: a SIGINT after the fit, before the save (while the scores were computed) kept nothing."""
    model = tmp_path / "m.npz"
    proc = start(table, model, "--iterations", 30, fault="sigint-during-scores")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert f"interrupted after training; the model was saved to {model}" in err
    assert sn.load(model).iteration == 30


def test_a_sigint_during_the_save_waits_for_it(tmp_path, table):
    """Issue 28.1: the save is protected: a signal that arrives during it is acted on after it."""
    model = tmp_path / "m.npz"
    proc = start(table, model, "--iterations", 30, fault="sigint-during-save")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted by SIGINT at iteration 30" in err and f"checkpoint saved to {model}" in err
    assert sn.load(model).iteration == 30
    assert [p.name for p in tmp_path.iterdir()] == ["m.npz"]  # no temporary file left behind


@pytest.mark.slow
def test_checkpoint_every_writes_resumable_checkpoints_while_training(tmp_path, table):
    """Issue 25.2: --checkpoint-every SECONDS; here the process is then killed outright (SIGKILL)."""
    model = tmp_path / "m.npz"
    proc = start(table, model, "--iterations", 10**8, "--checkpoint-every", 0.2)
    seen = []
    while len(set(seen)) < 2:  # two checkpoints of different iterations: they are written repeatedly
        wait_for_a_piece(proc)
        if model.exists():
            seen.append(sn.load(model).iteration)  # every read finds a whole file (atomic replace)
    proc.kill()
    proc.communicate(timeout=60)
    net = sn.load(model)
    assert net.iteration >= max(seen) > 0 and net.input_range is not None
    r = subprocess.run(
        [sys.executable, "-m", "sigmanet", "train", str(table), "--resume", str(model), "--save", str(model)]
        + ["--iterations", "5", "--backend", "numpy"],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    assert sn.load(model).iteration == net.iteration + 5


def test_checkpoint_every_needs_save(table, capsys):
    assert main(["train", str(table), "--checkpoint-every", "5"]) == 2
    assert "--checkpoint-every needs --save" in capsys.readouterr().err


@pytest.mark.parametrize("where,message", [("no/such/dir/m.npz", "does not exist"), ("", "it is a folder")])
def test_an_unwritable_save_path_is_refused_before_any_work(tmp_path, table, capsys, monkeypatch, where, message):
    """Issue 28.1: `--save /no/such/dir/m.npz` trained for 10.8 s, then failed and kept nothing."""
    import sigmanet.io

    work = []
    monkeypatch.setattr(sigmanet.io, "read_columns", lambda *a, **k: work.append("read"))
    monkeypatch.setattr(sn.Network, "fit", lambda *a, **k: work.append("fit"))
    assert main(["train", str(table), "--save", str(tmp_path / where), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and not work


def test_a_failing_final_save_writes_a_fallback_copy_and_says_where(tmp_path, table, capsys, monkeypatch):
    """Issue 28.1: a full disk or a vanished folder at the end used to lose the model with a traceback."""
    import errno

    import sigmanet.checkpoint as checkpoint

    model = tmp_path / "m.npz"
    write = checkpoint.write

    def full_disk_at(path, state):
        if os.fspath(path) == str(model):
            raise OSError(errno.ENOSPC, "No space left on device")
        return write(path, state)

    monkeypatch.setattr(checkpoint, "write", full_disk_at)
    args = ["train", str(table), "--iterations", "7", "--save", str(model), "--backend", "numpy", "--no-progress"]
    assert main(args) == 1
    captured = capsys.readouterr()
    assert f"could not save to {model} ([Errno 28] No space left on device); the model was saved to" in captured.err
    fallback = captured.err.split("the model was saved to ")[1].split()[0]
    assert sn.load(fallback).iteration == 7 and not model.exists()
    assert "trained 7 iterations" in captured.out  # the results are still reported


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_an_unreachable_scheduler_ends_with_one_line_in_bounded_time(tmp_path, table):
    """Issue 28.6: an OSError traceback after 30 s; now a message after --connect-timeout."""
    pytest.importorskip("distributed")
    address = f"tcp://127.0.0.1:{free_port()}"
    r = subprocess.run(
        [sys.executable, "-m", "sigmanet", "train", str(table), "--scheduler", address, "--connect-timeout", "1"],
        capture_output=True,
        text=True,
        timeout=60,  # a bound, not a measurement: it used to take 30 s
    )
    assert r.returncode == 2
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert lines[0].startswith(f"sigmanet train: error: --scheduler {address}: no Dask scheduler answered within 1 s")


@pytest.mark.slow
def test_a_glob_without_scheduler_trains_on_dasks_local_scheduler(tmp_path):
    """Issues 25.4/25.5: `sigmanet train 'parts/*.csv'` without --scheduler crashed in the Dask trainer."""
    pytest.importorskip("dask.dataframe")
    from helpers import write_csv

    rng = np.random.default_rng(0)
    (tmp_path / "parts").mkdir()
    for part in range(3):
        X = rng.random((200, 3))
        write_csv(tmp_path / "parts" / f"p{part}.csv", ["a", "b", "c", "target"], [[*x, int(x[0] > x[1])] for x in X])
    model = tmp_path / "m.npz"
    r = subprocess.run(
        [sys.executable, "-m", "sigmanet", "train", str(tmp_path / "parts" / "*.csv"), "--target", "target"]
        + ["--iterations", "200", "--save", str(model), "--backend", "numpy"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    assert "on 600 rows x 3 inputs" in r.stdout
    assert float(r.stdout.split("training accuracy:")[1].split()[0]) > 0.9
    net = sn.load(model)
    assert net.iteration == 200 and net.input_range is not None and net.input_names == ["a", "b", "c"]


@pytest.mark.slow
def test_train_holds_a_million_rows_in_two_and_a_half_times_the_parsed_array(tmp_path):
    """Issue 25.14: the whole `sigmanet train` on 1M x 21 (read, hold out, scale, fit, score, save) on numba,
    measured as the resident peak above what the process held before, against the parsed table."""
    pa = pytest.importorskip("pyarrow")
    import pyarrow.csv

    rng = np.random.default_rng(0)
    columns = {f"c{j}": np.round(rng.random(1_000_000), 6) for j in range(20)}
    columns["label"] = (columns["c0"] > columns["c1"]).astype(np.int64)
    path = tmp_path / "t.csv"
    pyarrow.csv.write_csv(pa.table(columns), path)
    small = tmp_path / "small.csv"  # the same columns: the same kernels
    pyarrow.csv.write_csv(pa.table({name: column[:4096] for name, column in columns.items()}), small)
    code = textwrap.dedent(f"""
        from sigmanet.cli import main

        def resident_bytes():  # (now, peak) from /proc/self/status
            with open("/proc/self/status") as f:
                fields = dict(line.split(":", 1) for line in f if line.startswith(("VmRSS", "VmHWM")))
            return int(fields["VmRSS"].split()[0]) * 1024, int(fields["VmHWM"].split()[0]) * 1024

        def reset_resident_peak():  # Linux: writing 5 to /proc/self/clear_refs resets VmHWM
            try:
                with open("/proc/self/clear_refs", "w") as f:
                    f.write("5")
                return True
            except OSError:
                return False

        args = ["--target", "label", "--iterations", "3", "--backend", "numba", "--no-progress"]
        # pyarrow's, numba's and the CLI's start-up memory (compiled kernels included) is not the table's
        assert main(["train", {str(small)!r}, *args]) == 0
        for extra in ([], ["--validation-fraction", "0.1"]):
            before = resident_bytes()[0]
            assert reset_resident_peak()
            assert main(["train", {str(path)!r}, *args, *extra, "--save", {str(tmp_path / "m.npz")!r}]) == 0
            print("peak", (resident_bytes()[1] - before) / (1_000_000 * 21 * 8))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if out.returncode != 0 and "assert reset_resident_peak()" in out.stderr:
        pytest.skip("this kernel cannot reset the resident peak (/proc/self/clear_refs)")
    assert out.returncode == 0, out.stderr
    alone, held_out = (float(line.split()[1]) for line in out.stdout.splitlines() if line.startswith("peak"))
    # measured here: 1.49 and 2.06 (the previous CLI: 2.24 and 2.30, with the table's full-width copy and a
    # scaled copy of the inputs on top of the parsed array); what the reader alone peaks at dominates
    assert alone <= 2.0 and held_out <= 2.5, (alone, held_out)
    assert sn.load(tmp_path / "m.npz").input_range is not None


@pytest.fixture
def csv_table(tmp_path):
    rng = np.random.default_rng(2)
    X = rng.random((60, 3))
    path = tmp_path / "d.csv"
    rows = [",".join([*map(str, r), str(int(r.sum() > 1.5))]) for r in X]
    path.write_text("a,b,c,label\n" + "\n".join(rows) + "\n")
    return path


def _no_work(monkeypatch):
    """The work the CLI would do, recorded: a refused command must record none."""
    import sigmanet.bench
    import sigmanet.io

    work = []
    read = sigmanet.io.read_columns
    monkeypatch.setattr(sigmanet.io, "read_columns", lambda *a, **k: work.append("read") or read(*a, **k))
    monkeypatch.setattr(sn.Network, "fit", lambda *a, **k: work.append("fit"))
    monkeypatch.setattr(sigmanet.bench, "run", lambda *a, **k: work.append("bench"))
    return work


def test_an_output_path_that_is_one_of_the_inputs_is_refused_before_any_work(tmp_path, csv_table, capsys, monkeypatch):
    """Found by a review: `--save data.csv` replaced the table with the model, `predict --out m.npz`
    replaced the model with CSV text, each with exit status 0."""
    model = tmp_path / "m.npz"
    assert main(["train", str(csv_table), "--target", "label", "--iterations", "5", "--save", str(model)]) == 0
    before = {p: p.read_bytes() for p in (csv_table, model)}
    work = _no_work(monkeypatch)
    cases = [
        ["train", str(csv_table), "--target", "label", "--save", str(csv_table)],
        ["train", str(csv_table), "--target", "label", "--plot", str(csv_table)],
        ["train", str(csv_table), "--target", "label", "--resume", str(model), "--plot", str(model)],
        ["predict", str(model), str(csv_table), "--out", str(model)],
        ["predict", str(model), str(csv_table), "--out", str(csv_table)],
    ]
    for argv in cases:
        capsys.readouterr()
        assert main([*argv, "--no-progress"] if argv[0] == "train" else argv) == 2, argv
        err = capsys.readouterr().err
        assert "is the input" in err and "would destroy it" in err and "Traceback" not in err, argv
    assert not work
    assert {p: p.read_bytes() for p in before} == before
    # continuing a model into its own file is what --resume with --save is for
    argv = ["train", str(csv_table), "--target", "label", "--iterations", "5", "--no-progress"]
    monkeypatch.undo()
    assert main([*argv, "--resume", str(model), "--save", str(model)]) == 0
    assert sn.load(model).iteration == 10


@pytest.mark.parametrize(
    "argv,message",
    [
        (["bench", "--quick", "--out", "{file}"], "is a file; it names the folder"),
        (["bench", "--quick", "--out", "{file}/sub"], "is a file, not a folder"),
        (["bench", "--quick", "--out", ""], "--out needs a path"),
        (["predict", "{model}", "{data}", "--out", "{file}/x.csv"], "is a file, not a folder"),
        (["predict", "{model}", "{data}", "--out", "{tmp}/no/x.csv"], "does not exist"),
        (["predict", "{model}", "{data}", "--out", "{tmp}"], "is a folder; give a file name"),
        (["train", "{data}", "--target", "label", "--plot", "{file}/p.png"], "is a file, not a folder"),
        (["train", "{data}", "--target", "label", "--plot", "{tmp}/p.txt"], "matplotlib cannot write .txt"),
    ],
)
def test_output_paths_that_cannot_be_written_are_refused_before_any_work(
    tmp_path, csv_table, capsys, monkeypatch, argv, message
):
    """Found by a review: `bench --out FILE` ran the whole benchmark, then lost it to a traceback."""
    if "--plot" in argv:
        pytest.importorskip("matplotlib", reason="--plot needs matplotlib (the docs extra)")
    model = tmp_path / "m.npz"
    sn.Network([3, 4, 1], seed=0).save(model)
    (tmp_path / "afile").write_text("not a folder")
    names = dict(file=tmp_path / "afile", model=model, data=csv_table, tmp=tmp_path)
    work = _no_work(monkeypatch)
    capsys.readouterr()
    assert main([a.format(**names) for a in argv]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert work in ([], ["read"]) and "fit" not in work and "bench" not in work
    assert (tmp_path / "afile").read_text() == "not a folder"


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--seed", "-1"], "argument --seed: must be a whole number of at least 0"),
        (["--iterations", "5000000000000000000000"], "argument --iterations: must be a whole number from 1 to 2**62"),
        (["--hidden", "16,,8"], "argument --hidden: expected sizes"),
        (["--batch-size", "1000"], "--batch-size 1000 exceeds the 60 training rows"),
        (["--class-weight", "balanced", "--task", "regression"], "cannot be used with --task regression"),
    ],
)
def test_train_options_are_refused_by_their_option_names(csv_table, capsys, monkeypatch, extra, message):
    """Found by a review: these came back in Python's names (batch_size=1000, seed must be ...), or, for
    --hidden 16,,8, not at all (read as 16,8)."""
    work = _no_work(monkeypatch)
    argv = ["train", str(csv_table), "--target", "label", "--no-progress", *extra]
    with pytest.raises(SystemExit) if message.startswith("argument") else contextlib.nullcontext():
        assert main(argv) == 2
    assert message in capsys.readouterr().err
    assert "fit" not in work


def test_names_with_glob_characters_and_two_outputs_on_one_file_are_caught(tmp_path, csv_table, capsys, monkeypatch):
    """Found by a review of the checks above: an input named d[1].csv was only globbed (so never matched),
    and --save x.png --plot x.png wrote the plot over the model."""
    odd = tmp_path / "d[1].csv"
    odd.write_bytes(csv_table.read_bytes())
    work = _no_work(monkeypatch)
    argv = ["train", str(odd), "--target", "label", "--no-progress"]
    assert main([*argv, "--save", str(odd)]) == 2
    assert "is the input" in capsys.readouterr().err
    assert main([*argv, "--save", str(tmp_path / "x.png"), "--plot", str(tmp_path / "x.png")]) == 2
    assert "--plot and --save name the same file" in capsys.readouterr().err
    assert "fit" not in work and odd.read_bytes() == csv_table.read_bytes()


def test_an_existing_writable_output_such_as_dev_null_is_taken(tmp_path, csv_table, capsys):
    model = tmp_path / "m.npz"
    assert main(["train", str(csv_table), "--target", "label", "--iterations", "5", "--save", str(model)]) == 0
    assert main(["predict", str(model), str(csv_table), "--out", os.devnull]) == 0
    argv = ["train", str(csv_table), "--target", "label", "--iterations", "5", "--no-progress"]
    assert main([*argv, "--hidden", "4,3,", "--seed", str(2**64), "--save", str(model)]) == 0  # a trailing comma
    assert sn.load(model).layers == (3, 4, 3, 1)


def test_a_target_for_an_npz_is_refused_not_ignored(tmp_path, capsys):
    path = tmp_path / "xy.npz"
    np.savez(path, X=np.random.default_rng(0).random((20, 3)), y=np.arange(20) % 2)
    assert main(["train", str(path), "--target", "0", "--no-progress"]) == 2
    assert "--target picks columns of a table" in capsys.readouterr().err
