"""The command line: demo, backends, --version."""

import subprocess
import sys

import pytest
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
    for line, ref in zip(lines, errors):
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
