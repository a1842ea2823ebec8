"""Memory stays bounded as rows grow: predict in blocks, fits that cannot fit say so first, files read lean.

Every bound here is on bytes, never on time.
"""

import subprocess
import sys
import textwrap

import numpy as np
import pytest

import sigmanet as sn
from sigmanet import _plan as plan
from sigmanet.backends import base, get_backend
from sigmanet.datasets import make_table


@pytest.mark.parametrize("name", ["numpy", "numba"])
def test_predict_holds_one_block_of_the_hidden_layer_not_all_of_it(name):
    rows = 100_000
    X, _ = make_table(rows, 64, 16, dtype="float32")
    net = sn.Network([64, 256, 16], backend=name, dtype="float32", seed=0)
    Xd = net._backend.to_device(X, net.dtype)
    w, b = list(net._state.weights), None
    peak = net._backend.memory_peak(lambda: net._backend.predict(w, b, Xd))
    output = rows * 16 * 4
    hidden_whole = rows * 256 * 4  # what predict used to materialise: 100 MB here
    assert peak < output + 3 * plan.PREDICT_BLOCK_BYTES, peak
    assert peak < hidden_whole / 3


def test_predict_in_blocks_equals_one_block(monkeypatch, rng):
    X = rng.random((5000, 12))
    net = sn.Network([12, 30, 3], backend="numpy", seed=1, bias=True)
    whole = net.predict(X)
    monkeypatch.setattr(plan, "PREDICT_BLOCK_BYTES", 1)  # the minimum: 64-row blocks
    np.testing.assert_array_equal(net.predict(X), whole)


@pytest.mark.parametrize("name", ["numpy", "numba"])
def test_a_fit_that_cannot_fit_says_so_before_any_work_and_changes_nothing(name, monkeypatch):
    # numba trains in row chunks: its estimate is the parameters' arrays (9 MiB here) and T chunks,
    # over the check's 4 MiB floor with one thread as with many
    X, y = make_table(50_000, 32, 4)
    net = sn.Network([32, 4096, 4], backend=name, seed=0)
    before = net.weights
    monkeypatch.setattr(base, "available_host_memory", lambda: 1 << 20)  # 1 MiB left
    with pytest.raises(MemoryError, match=r"needs about .* GiB .* only 0\.00 GiB is available.*batch_size"):
        net.fit(X, y, iterations=5)
    assert net.iteration == 0 and all(np.array_equal(a, b) for a, b in zip(net.weights, before, strict=True))


def test_the_numpy_backends_buffers_are_three_activation_sized_arrays(monkeypatch):
    seen = {}
    X, y = make_table(10_000, 32, 4)
    backend = get_backend("numpy")
    monkeypatch.setattr(backend, "check_memory", lambda needed, detail: seen.update(needed=needed))
    backend.trainer(sn.Network([32, 256, 4], seed=0).weights, None, X, y, plan.TrainConfig())
    params = 32 * 256 + 256 * 4
    # activations, deltas and scratch; the gradients and the optimizer's arrays (4 per parameter at most);
    # X and y are already float64: no copies
    assert seen["needed"] == 3 * 10_000 * (256 + 4) * 8 + 4 * params * 8


@pytest.mark.slow
def test_numba_trains_a_memory_mapped_table_without_copying_it(tmp_path):
    X, y = make_table(400_000, 32, 2, dtype="float32")
    np.save(tmp_path / "X.npy", X)
    code = textwrap.dedent(f"""
        import numpy as np, sigmanet as sn
        X = np.load({str(tmp_path / "X.npy")!r}, mmap_mode="r")
        y = np.ascontiguousarray(np.asarray(X[:, :2] > 0.5, dtype=np.float32))
        net = sn.Network([32, 64, 2], backend="numba", dtype="float32", seed=0)
        net.fit(X[:2048], y[:2048], iterations=2, reduction="mean")
        peak = net._backend.memory_peak(lambda: net.fit(X, y, iterations=2, reduction="mean"))
        print(peak)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    # X (51 MB) is read from the file, never copied; what is allocated is a row chunk per worker
    assert int(out.stdout.strip()) < X.nbytes / 5


@pytest.mark.slow
def test_csv_reading_peaks_under_two_and_a_half_times_the_parsed_array(tmp_path):
    """The issue's case: 1M rows x 21 columns (about 190 MB of text); the fixed start-up cost of the
    reader's allocator weighs more on small files (3x at 150K rows), so the bound is checked at scale."""
    pa = pytest.importorskip("pyarrow")
    import pyarrow.csv

    path = tmp_path / "t.csv"
    rng = np.random.default_rng(0)
    columns = {f"c{j}": np.round(rng.random(1_000_000), 6) for j in range(21)}
    pyarrow.csv.write_csv(pa.table(columns), path)
    (tmp_path / "small.csv").write_text("a,b\n1,2\n")
    code = textwrap.dedent(f"""
        from sigmanet.bench import reset_resident_peak, resident_bytes
        from sigmanet.io import read_csv
        read_csv({str(tmp_path / "small.csv")!r})  # pyarrow's start-up memory is not the table's
        before = resident_bytes()[0]
        assert reset_resident_peak()
        names, table = read_csv({str(path)!r})
        print((resident_bytes()[1] - before) / table.nbytes)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if out.returncode != 0 and "AssertionError" in out.stderr:
        pytest.skip("this kernel cannot reset the resident peak (/proc/self/clear_refs)")
    assert out.returncode == 0, out.stderr
    assert float(out.stdout.strip()) <= 2.5


def test_a_nan_in_a_large_table_is_found_by_blocks_and_located(rng):
    X = rng.random((300_000, 8))
    X[123_456, 5] = np.nan
    net = sn.Network([8, 4, 1], backend="numpy", seed=0)
    with pytest.raises(ValueError, match="the first at row 123456, column 5"):
        net.predict(X)


def test_parquet_tables_train_like_csv(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    from sigmanet.io import read_table

    rng = np.random.default_rng(0)
    cols = {"a": rng.random(50), "b": rng.integers(0, 5, 50), "label": rng.integers(0, 2, 50)}
    pq.write_table(pa.table(cols), tmp_path / "t.parquet")
    X, y, names, targets = read_table(tmp_path / "t.parquet", ["label"])
    assert names == ["a", "b"] and targets == ["label"]
    np.testing.assert_array_equal(X[:, 1], cols["b"])
    np.testing.assert_array_equal(y[:, 0], cols["label"])
    pq.write_table(pa.table({"a": ["x", "y"]}), tmp_path / "s.parquet")
    with pytest.raises(ValueError, match="column 'a' is not numeric"):
        read_table(tmp_path / "s.parquet", None)
