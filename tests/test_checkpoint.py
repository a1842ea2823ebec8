"""Save and load: exact, portable across backends, atomic, verified."""

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from helpers import set_patched_flag
from reference import random_problem

import sigmanet as sn
from sigmanet.checkpoint import FORMAT_VERSION, _digest
from sigmanet.datasets import tutorial_table

X, Y = tutorial_table()


def test_save_load_round_trip_keeps_everything(tmp_path, rng):
    net = sn.Network([3, 5, 2], backend="numpy", dtype="float32", seed=7, bias=True)
    Xr, yr = random_problem(rng, 20, [3, 5, 2])
    net.set_input_range(Xr.min(0) - 1, Xr.max(0) + 1)
    net.input_names, net.target_names = ["a", "b", "c"], ["t0", "t1"]
    net.fit(Xr, yr, iterations=30, loss="bce", reduction="mean", batch_size=8)
    path = tmp_path / "m.npz"
    net.save(path)
    back = sn.load(path, backend="numpy")
    assert back.layers == net.layers and back.dtype == net.dtype and back.bias
    assert back.iteration == 30 and back.fit_options == net.fit_options
    assert back.input_names == ["a", "b", "c"] and back.target_names == ["t0", "t1"]
    for a, b in zip(net.weights + net.biases, back.weights + back.biases, strict=True):
        assert a.dtype == b.dtype and np.array_equal(a, b)
    for a, b in zip(net.input_range, back.input_range, strict=True):
        assert np.array_equal(a, b)
    assert np.array_equal(net.predict(Xr), back.predict(Xr))


def test_resume_is_exact_fit_n_save_load_fit_n_equals_fit_2n(tmp_path, rng):
    Xr, yr = random_problem(rng, 40, [4, 6, 1])
    whole = sn.Network([4, 6, 1], backend="numpy", seed=3, bias=True)
    whole.fit(Xr, yr, iterations=200, batch_size=16, reduction="mean")
    half = sn.Network([4, 6, 1], backend="numpy", seed=3, bias=True)
    half.fit(Xr, yr, iterations=100, batch_size=16, reduction="mean")
    half.save(tmp_path / "half.npz")
    resumed = sn.load(tmp_path / "half.npz", backend="numpy")
    resumed.fit(Xr, yr, iterations=100, batch_size=16, reduction="mean")
    assert resumed.iteration == 200
    for a, b in zip(whole.weights + whole.biases, resumed.weights + resumed.biases, strict=True):
        assert np.array_equal(a, b)  # bit-identical on NumPy


def test_a_model_saved_on_one_backend_loads_on_every_other(tmp_path, backend):
    net = sn.Network([3, 4, 1], backend=backend, seed=1, init="legacy")
    net.fit(X, Y, iterations=500)
    net.save(tmp_path / "m.npz")
    for other in sn.available_backends():
        back = sn.load(tmp_path / "m.npz", backend=other)
        assert back.backend == other
        np.testing.assert_allclose(np.asarray(back.predict(X)), np.asarray(net.predict(X)), rtol=1e-12)


def test_save_writes_exactly_the_given_name_and_leaves_no_temporary(tmp_path):
    net = sn.Network([3, 1], backend="numpy", seed=0)
    net.save(tmp_path / "model")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    assert sn.load(tmp_path / "model").layers == (3, 1)


def test_save_into_a_missing_folder_fails_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        sn.Network([3, 1]).save(tmp_path / "no" / "m.npz")


def test_missing_file():
    with pytest.raises(FileNotFoundError, match="does not exist"):
        sn.load("/nonexistent/model.npz")


def good_model(tmp_path):
    path = tmp_path / "m.npz"
    sn.Network([3, 4, 1], backend="numpy", seed=0).save(path)
    return path


def rewrite(path, mutate):
    """Re-pack a model file after ``mutate(arrays)``, keeping its header and checksum as they are."""
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    mutate(arrays)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    path.write_bytes(buf.getvalue())


@pytest.mark.parametrize(
    "damage,match",
    [
        (lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]), "truncated or corrupted"),
        (lambda p: p.write_bytes(b""), "truncated or corrupted"),
        (lambda p: p.write_bytes(b"PK\x03\x04 not really a zip" * 10), "truncated or corrupted"),
        (lambda p: p.write_text("layers,3,4,1\n"), "truncated or corrupted"),
        (lambda p: rewrite(p, lambda a: a["W0"].__setitem__((0, 0), 9.0)), "checksum"),
        (lambda p: rewrite(p, lambda a: a.pop("W1")), r"missing \['W1'\]"),
        (lambda p: rewrite(p, lambda a: a.pop("header")), "no sigmanet header"),
        # flag bit 5 in a central-directory entry: zipfile raises NotImplementedError (found by the random flips)
        (lambda p: p.write_bytes(set_patched_flag(p.read_bytes())), "NotImplementedError"),
    ],
)
def test_damaged_files_raise_model_file_error(tmp_path, damage, match):
    path = good_model(tmp_path)
    damage(path)
    with pytest.raises(sn.ModelFileError, match=match):
        sn.load(path)


def test_a_byte_flipped_anywhere_is_caught(tmp_path, rng):
    path = good_model(tmp_path)
    data = bytearray(path.read_bytes())
    for _ in range(20):
        bad = bytearray(data)
        bad[int(rng.integers(len(bad)))] ^= 0xFF
        path.write_bytes(bytes(bad))
        try:
            sn.load(path)
        except sn.ModelFileError:
            continue
        # a flip in zip padding or unused metadata may leave the model intact: then it must load exactly
        assert np.array_equal(sn.load(path).weights[0], sn.Network([3, 4, 1], seed=0).weights[0])


def foreign(path, header):
    header_text = json.dumps(header, sort_keys=True)
    np.savez(path, header=np.array(header_text), checksum=np.array(_digest(header_text, {})))


def test_foreign_npz_is_refused(tmp_path):
    np.savez(tmp_path / "x.npz", X=np.ones(3))
    with pytest.raises(sn.ModelFileError, match="not a sigmanet model"):
        sn.load(tmp_path / "x.npz")
    foreign(tmp_path / "y.npz", {"format": "other"})
    with pytest.raises(sn.ModelFileError, match="not a sigmanet model"):
        sn.load(tmp_path / "y.npz")


def test_newer_format_is_refused_with_advice(tmp_path):
    foreign(tmp_path / "n.npz", {"format": "sigmanet-model", "format_version": FORMAT_VERSION + 1})
    with pytest.raises(sn.ModelFileError, match="newer.*upgrade sigmanet"):
        sn.load(tmp_path / "n.npz")


def test_inconsistent_header_is_refused(tmp_path):
    foreign(
        tmp_path / "i.npz",
        {
            "format": "sigmanet-model",
            "format_version": 1,
            "layers": [3, 4, 1],
            "dtype": "float64",
            "bias": False,
            "iteration": 0,
        },
    )
    with pytest.raises(sn.ModelFileError, match="inconsistent"):
        sn.load(tmp_path / "i.npz")


def test_pickles_are_never_loaded(tmp_path):
    np.save(tmp_path / "p.npy", np.array([object()], dtype=object), allow_pickle=True)
    os.rename(tmp_path / "p.npy", tmp_path / "p.npz")
    with pytest.raises(sn.ModelFileError):
        sn.load(tmp_path / "p.npz")


WRITER = textwrap.dedent("""
    import sys, numpy as np, sigmanet as sn
    net = sn.Network([256, 512, 256, 64], backend="numpy", seed=0)
    i = 0
    for _ in sys.stdin:  # one save per line from the reader: the two stay in step
        i += 1
        net.set_weights([w + 1 for w in net.weights])
        print("writing", i, flush=True)  # the reader kills the writer on this line: mid-write, or nearly
        net.save(sys.argv[1])
        print("saved", i, flush=True)
""")


def test_a_writer_killed_mid_write_never_corrupts_the_previous_file(tmp_path, rng):
    path = tmp_path / "m.npz"
    init = sn.Network([256, 512, 256, 64], backend="numpy", seed=0).weights

    def saves_in(net):
        """Each save adds 1 to every weight: one whole-number offset across all layers, or the file mixes saves."""
        offsets = {float(v) for w, w0 in zip(net.weights, init, strict=True) for v in np.unique(np.round(w - w0, 3))}
        assert len(offsets) == 1, offsets
        return offsets.pop()

    kill_at = int(rng.integers(3, 9))  # which save to interrupt: the run's seed replays it
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        proc.stdin.write("go\n")
        proc.stdin.flush()
        for line in proc.stdout:
            event, n = line.split()
            if event == "saved":
                assert saves_in(sn.load(path)) == int(n)  # a reader never sees a half-written file either
                proc.stdin.write("go\n")
                proc.stdin.flush()
            elif int(n) == kill_at:
                proc.send_signal(signal.SIGKILL)  # while save number kill_at is being written
                break
    finally:
        proc.kill()
        proc.wait()
        for pipe in (proc.stdin, proc.stdout):
            with contextlib.suppress(BrokenPipeError):
                pipe.close()
    survivor = sn.load(path)
    assert survivor.layers == (256, 512, 256, 64)
    assert saves_in(survivor) in (kill_at - 1, kill_at)  # the last whole save: before the kill, or the one it missed
    # leftovers are temporary files only, never a damaged model under the real name
    for p in tmp_path.iterdir():
        assert p.name == "m.npz" or p.name.startswith(".m.npz.")


def test_a_loaded_model_keeps_its_class_weight_as_class_indices(tmp_path):
    """Found by a review: the JSON header turned {1: 3.0} into {'1': 3.0}, and the loaded model's
    loss_and_gradients then refused its own stored option."""
    net = sn.Network([3, 4, 1], backend="numpy", seed=1)
    net.fit(X, Y, iterations=10, class_weight={1: 3.0})
    net.save(tmp_path / "cw.npz")
    loaded = sn.load(tmp_path / "cw.npz", backend="numpy")
    assert loaded.fit_options["class_weight"] == {1: 3.0} == net.fit_options["class_weight"]
    loss, gw, _ = loaded.loss_and_gradients(X, Y)
    want, gw_want, _ = net.loss_and_gradients(X, Y)
    assert loss == want and all(np.array_equal(a, b) for a, b in zip(gw, gw_want, strict=True))


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        (dict(threads=0), ValueError, "threads must be at least 1"),
        (dict(threads=1.5), TypeError, "threads must be an integer"),
        (dict(threads=True), TypeError, "threads must be an integer"),
        (dict(backend=None), TypeError, "backend must be a string"),
        (dict(backend="gpu"), sn.BackendUnavailableError, "unknown backend 'gpu'"),
    ],
)
def test_bad_load_arguments_are_the_callers_fault_not_the_files(tmp_path, kwargs, exc, match):
    """Found by a review: load(path, threads=0) said the *file* had an inconsistent model."""
    sn.Network([3, 4, 1], seed=1).save(tmp_path / "m.npz")
    with pytest.raises(exc, match=match) as caught:
        sn.load(tmp_path / "m.npz", **kwargs)
    assert not isinstance(caught.value, sn.ModelFileError)
    with pytest.raises(exc, match=match):  # checked before the file is read
        sn.load(tmp_path / "missing.npz", **kwargs)
