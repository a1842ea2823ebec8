"""Faults and bad input, round 3: each case failed on sigmanet 0.2 and holds now.

Atomic publication of the model's state, one fit per network at a time, bounded and checked model
files, the cgroup-aware memory check, long compiled intervals, saves (stale temporaries, symlinks,
odd paths, file modes), and errors that name the argument.
"""

import io
import json
import os
import threading
import warnings
import zipfile

import numpy as np
import pytest
from reference import random_problem

import sigmanet as sn
from sigmanet import _arrays, checkpoint
from sigmanet.backends import base
from sigmanet.datasets import tutorial_table


def test_an_interrupt_after_a_piece_leaves_every_part_of_the_state_agreeing(rng):
    X = rng.random((50, 3)) * 100
    y = (rng.random((50, 1)) > 0.5).astype(float)
    net = sn.Network([3, 4, 1], backend="numpy", seed=0)

    def interrupt(done):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        net.fit(X, y, iterations=5000, scale_inputs=True, progress=interrupt, reduction="mean")
    assert 0 < net.iteration < 5000
    assert net.input_range is not None and net.fit_options["reduction"] == "mean"
    assert net.optimizer_state.step == net.iteration
    twin = sn.Network.from_state(net.get_state(), backend="numpy")
    np.testing.assert_array_equal(twin.predict(X), net.predict(X))


def test_a_second_thread_fitting_the_same_network_is_refused_clearly(rng):
    X, y = random_problem(rng, 20, [3, 4, 1])
    net = sn.Network([3, 4, 1], backend="numpy", seed=0)
    inside, release, errors = threading.Event(), threading.Event(), []

    def hold(iteration, error):
        inside.set()
        release.wait(30)

    t = threading.Thread(target=lambda: net.fit(X, y, iterations=20, report_every=10, callback=hold))
    t.start()
    assert inside.wait(30)
    try:
        net.fit(X, y, iterations=5)
    except RuntimeError as e:
        errors.append(str(e))
    release.set()
    t.join(30)
    assert errors and "already being trained by another thread" in errors[0]
    assert net.iteration == 20  # the first fit's work is all there


def test_a_fit_from_the_networks_own_callback_is_refused_saying_so(rng):
    """Found by a review: it was refused as if another thread were training the network."""
    X, y = random_problem(rng, 20, [3, 4, 1])
    net = sn.Network([3, 4, 1], backend="numpy", seed=0)
    errors = []

    def nested(iteration, error):
        try:
            net.fit(X, y, iterations=5)
        except RuntimeError as e:
            errors.append(str(e))
        return True

    net.fit(X, y, iterations=20, report_every=10, callback=nested)
    assert errors and all("called from inside this network's own fit" in e for e in errors)
    assert net.iteration == 20
    net.fit(X, y, iterations=5)  # and the lock is free again afterwards
    assert net.iteration == 25


def test_a_long_interval_is_run_in_pieces_so_an_interrupt_keeps_the_completed_work():
    X, y = tutorial_table()
    net = sn.Network([3, 4, 1], backend="numba", seed=1, init="legacy")
    calls = []

    def count(done):
        calls.append(done)
        if len(calls) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        net.fit(X, y, iterations=10**9, report_every=None, progress=count)
    assert net.iteration == calls[-1] > calls[0] > 0  # two pieces kept, of a single billion-step interval


@pytest.mark.parametrize("iterations", [2**63, 2**64 + 5])
def test_iteration_counts_past_the_engines_range_are_refused(iterations):
    net = sn.Network([3, 4, 1], backend="numba")
    with pytest.raises(ValueError, match="iterations must be at most"):
        net.fit(*tutorial_table(), iterations=iterations)


def test_a_model_near_the_largest_iteration_trains_alike_on_every_engine():
    X, y = tutorial_table()
    state = sn.Network([3, 4, 1], seed=1, init="legacy").get_state()
    state["iteration"] = 2**62 - 3
    nets = [sn.Network.from_state(state, backend=b) for b in ("numpy", "numba:fused", "numba:compiled")]
    for net in nets:
        net.fit(X, y, iterations=3, batch_size=3)
    for net in nets[1:]:
        np.testing.assert_allclose(net.weights[0], nets[0].weights[0], rtol=1e-12)
    with pytest.raises(ValueError, match="past 4611686018427387904"):
        nets[0].fit(X, y, iterations=1)
    state["iteration"] = 2**63 - 3
    with pytest.raises(ValueError, match="iteration must be at most"):
        sn.Network.from_state(state)


# -- model files --


def write_model(path, header_changes=None, arrays_changes=None, drop=()):
    """A model file with a changed header or arrays, and a valid checksum over what it holds."""
    sn.Network([3, 4, 1], backend="numpy", seed=0, bias=True).save(path)
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    header = json.loads(str(arrays.pop("header")))
    arrays.pop("checksum")
    header.update(header_changes or {})
    for name in drop:
        arrays.pop(name)
    arrays.update(arrays_changes or {})
    text = json.dumps(header, sort_keys=True)
    buf = io.BytesIO()
    np.savez(buf, header=np.array(text), checksum=np.array(checkpoint._digest(text, arrays)), **arrays)
    path.write_bytes(buf.getvalue())
    return path


@pytest.mark.parametrize(
    "header,arrays,drop,match",
    [
        (dict(layers=[3, 4]), None, (), "holds arrays .*unexpected"),
        (None, dict(extra=np.ones(2)), (), r"unexpected \['extra'\]"),
        (dict(format_version=0), None, (), "invalid model format version 0"),
        (dict(format_version=-1), None, (), "invalid model format version -1"),
        (dict(format_version=True), None, (), "invalid model format version True"),
        (dict(input_names=["a", "b"]), None, (), "input_names must be a list of 3 strings"),
        (dict(input_names=[1, 2, 3]), None, (), "input_names must be a list of 3 strings"),
        (dict(target_names="y"), None, (), "target_names must be a list of 1 strings"),
        (None, dict(input_min=np.zeros(3)), (), "input_min and input_max without the other"),
        (dict(dtype="float16"), None, (), "dtype must be"),
        (dict(bias="yes"), None, (), "bias must be true or false"),
        (dict(iteration=-4), None, (), "iteration must be an integer of at least 0"),
        (dict(output="relu"), None, (), "output must be"),
        (None, dict(W0=np.ones((4, 3))), (), r"W0 is float64 \(4, 3\), expected float64 \(3, 4\)"),
        (dict(optimizer={"rule": "adam", "step": 3}), None, (), r"missing \['opt_m_0'"),
    ],
)
def test_inconsistent_headers_with_a_valid_checksum_are_refused(tmp_path, header, arrays, drop, match):
    path = write_model(tmp_path / "m.npz", header, arrays, drop)
    with pytest.raises(sn.ModelFileError, match=match):
        sn.load(path)


def test_a_small_file_declaring_a_huge_array_is_refused_before_decompressing(tmp_path):
    """A deflated member of 64 MiB of zeros where the layers need 96 bytes: refused from the zip's
    directory, before a byte of it is decompressed (the zip bomb of the fault campaign, scaled down)."""
    import tracemalloc

    good = write_model(tmp_path / "good.npz")
    bomb = tmp_path / "bomb.npz"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            if info.filename != "W0.npy":
                dst.writestr(info.filename, src.read(info.filename))
        header = np.lib.format.header_data_from_array_1_0(np.zeros((3, 4)))
        with dst.open("W0.npy", "w", force_zip64=True) as f:
            np.lib.format.write_array_header_1_0(f, header)
            zeros = bytes(1 << 20)
            for _ in range(64):
                f.write(zeros)
    assert bomb.stat().st_size < 1 << 20
    tracemalloc.start()
    with pytest.raises(sn.ModelFileError, match="array W0 declares"):
        sn.load(bomb)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 8 << 20


def test_a_truncated_file_leaves_no_file_open(tmp_path):
    path = write_model(tmp_path / "m.npz")
    path.write_bytes(path.read_bytes()[:-100])
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResourceWarning)
        with pytest.raises(sn.ModelFileError):
            sn.load(path)
        import gc

        gc.collect()


# -- saves --


def test_stale_temporaries_of_a_killed_writer_are_cleaned_on_the_next_save(tmp_path):
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)  # a process that has exited
    stale = tmp_path / f".m.npz.{dead_pid}.abc123.tmp"
    alive = tmp_path / f".m.npz.{os.getppid()}.def456.tmp"  # a live process's: maybe still writing
    foreign = tmp_path / ".notes.tmp"
    for p in (stale, alive, foreign):
        p.write_bytes(b"x")
    sn.Network([3, 4, 1], backend="numpy").save(tmp_path / "m.npz")
    assert not stale.exists() and alive.exists() and foreign.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([".notes.tmp", alive.name, "m.npz"])


def test_a_symlink_is_written_through_to_its_target(tmp_path):
    target = tmp_path / "real" / "m.npz"
    target.parent.mkdir()
    link = tmp_path / "link.npz"
    sn.Network([3, 4, 1], backend="numpy", seed=1).save(target)
    link.symlink_to(target)
    net = sn.Network([3, 4, 1], backend="numpy", seed=2)
    net.save(link)
    assert link.is_symlink()
    np.testing.assert_array_equal(sn.load(target).weights[0], net.weights[0])


@pytest.mark.parametrize(
    "path,error,match", [("", ValueError, "must name a file"), ("dir/", IsADirectoryError, "folder")]
)
def test_odd_save_paths_are_refused_clearly(tmp_path, monkeypatch, path, error, match):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "dir").mkdir()
    with pytest.raises(error, match=match):
        sn.Network([3, 4, 1]).save(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir"] and not list((tmp_path / "dir").iterdir())


def test_model_files_get_the_umask_or_keep_the_mode_they_replace(tmp_path):
    old = os.umask(0o027)
    try:
        sn.Network([3, 4, 1]).save(tmp_path / "a.npz")
        assert (tmp_path / "a.npz").stat().st_mode & 0o777 == 0o640
        os.chmod(tmp_path / "a.npz", 0o604)
        sn.Network([3, 4, 1]).save(tmp_path / "a.npz")
        assert (tmp_path / "a.npz").stat().st_mode & 0o777 == 0o604
    finally:
        os.umask(old)


# -- memory --


def test_the_cgroup_v2_limit_is_read_along_the_path(tmp_path):
    root = tmp_path / "cg"
    leaf = root / "user.slice" / "job"
    leaf.mkdir(parents=True)
    (root / "user.slice" / "memory.max").write_text(str(20 << 30))
    (root / "user.slice" / "memory.current").write_text(str(5 << 30))
    (root / "user.slice" / "memory.stat").write_text("anon 1\ninactive_file 1073741824\n")
    (leaf / "memory.max").write_text("max")
    proc = tmp_path / "cgroup"
    proc.write_text("0::/user.slice/job\n")
    assert _arrays.cgroup_available_memory(root, proc) == (20 << 30) - (4 << 30)


def test_the_cgroup_v1_limit_is_read(tmp_path):
    root = tmp_path / "cg"
    folder = root / "memory" / "docker" / "abc"
    folder.mkdir(parents=True)
    (folder / "memory.limit_in_bytes").write_text(str(8 << 30))
    (folder / "memory.usage_in_bytes").write_text(str(3 << 30))
    (folder / "memory.stat").write_text("total_inactive_file 0\n")
    proc = tmp_path / "cgroup"
    proc.write_text("12:pids:/docker/abc\n4:memory:/docker/abc\n")
    assert _arrays.cgroup_available_memory(root, proc) == 5 << 30
    (folder / "memory.limit_in_bytes").write_text(str(2**63 - 4096))  # v1's "no limit"
    assert _arrays.cgroup_available_memory(root, proc) is None


def test_the_memory_check_counts_the_scaled_copy_of_x(monkeypatch, rng):
    X, y = rng.random((20_000, 50)) * 10, (rng.random((20_000, 1)) > 0.5).astype(float)
    net = sn.Network([50, 4, 1], backend="numpy", seed=0)
    scaled = X.size * 8
    monkeypatch.setattr(base, "available_host_memory", lambda: scaled - 1)  # everything fits but the copy
    with pytest.raises(MemoryError, match="the scaled copy of X"):
        net.fit(X, y, iterations=2, scale_inputs=True)
    assert net.iteration == 0 and net.input_range is None


# -- errors that name the argument --


@pytest.mark.parametrize(
    "make,error,match",
    [
        (lambda: sn.Network([3, 4, 1], threads=10**6), ValueError, "threads must be at most"),
        (lambda: sn.Network([3, 2**40, 1]), ValueError, r"layers\[1\] = 1099511627776 units"),
        (lambda: sn.Network([100_000, 2_000_000, 1]), ValueError, "layers .* need 200,002,000,000 weights"),
        (lambda: sn.Network([3, 4, 1], init="legacy", seed=2**32), ValueError, "below 2\\*\\*32"),
        (lambda: sn.Network([3, 4, 1], output="relu"), ValueError, "output must be one of"),
    ],
)
def test_bad_network_arguments_are_named(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_a_masked_array_is_refused_rather_than_trained_on_its_hidden_values():
    X = np.ma.masked_array(np.ones((4, 3)), mask=[[0, 0, 1]] * 4)
    with pytest.raises(TypeError, match="masked array.*filled"):
        sn.Network([3, 4, 1]).fit(X, np.ones(4), iterations=1)


def test_predict_on_extreme_inputs_warns_nothing():
    net = sn.Network([3, 4, 1], backend="numpy", seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = net.predict(np.array([[1e308, -1e308, 1e308], [1e300, 1e300, 1e300], [-1e308, 0, 0]]))
    finite = out[np.isfinite(out)]
    assert finite.size and ((finite >= 0) & (finite <= 1)).all()


def test_data_frames_and_labels_get_errors_that_say_what_to_do():
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"a": [1.0, 2.0], "colour": ["red", "blue"], "b": [0.0, 1.0]})
    with pytest.raises(TypeError, match=r"X has non-numeric column\(s\) \['colour'\].*get_dummies"):
        sn.Network([3, 2, 1]).fit(frame, [0, 1], iterations=1)
    with pytest.raises(TypeError, match="one 0/1 column per class.*SigmaNetClassifier"):
        sn.Network([2, 2, 1]).fit(np.ones((2, 2)), np.array(["a", "b"]), iterations=1)


def test_sparse_inputs_train_like_dense_on_every_engine(engine, rng):
    sparse = pytest.importorskip("scipy.sparse")
    X = rng.random((60, 30)) * (rng.random((60, 30)) < 0.2)
    y = (rng.random((60, 2)) > 0.5).astype(float)
    opts = dict(iterations=20, report_every=10, batch_size=16, shuffle=2, reduction="mean", learning_rate=0.5)
    dense = sn.Network([30, 8, 2], backend=engine, seed=1, bias=True)
    h_dense = dense.fit(X, y, **opts)
    for kind in (sparse.csr_matrix, sparse.csc_matrix):
        net = sn.Network([30, 8, 2], backend=engine, seed=1, bias=True)
        h = net.fit(kind(X), y, **opts)
        np.testing.assert_allclose(h.errors, h_dense.errors, rtol=1e-12)
        for a, b in zip(net.weights, dense.weights, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(net.predict(kind(X)), dense.predict(X), rtol=1e-12)
    with pytest.raises(ValueError, match="would densify a sparse X"):
        sn.Network([30, 8, 2], backend=engine).fit(sparse.csr_matrix(X), y, iterations=1, scale_inputs=True)
