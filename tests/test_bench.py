"""The benchmark harness: honest records, files written, fused loops allocate nothing per iteration."""

import json

import numpy as np
import pytest

from sigmanet import bench
from sigmanet.cli import main

FIELDS = {
    "backend",
    "rows",
    "layers",
    "dtype",
    "iterations_per_second",
    "samples_per_second",
    "gflops",
    "gemm_ratio",
    "device",
}


def test_iteration_flops_counts_forward_delta_and_gradient_gemms():
    # [3, 4, 1]: forward 3*4 + 4*1, delta 4*1 (no delta into the inputs), gradients 3*4 + 4*1
    assert bench.iteration_flops(4, [3, 4, 1]) == 2 * 4 * (12 + 4 + 4 + 12 + 4)


def test_datasets_are_deterministic_learnable_and_chunk_independent():
    from sigmanet.datasets import make_table

    X, y = make_table(70000, 5, 2, seed=3)
    X2, y2 = make_table(70000, 5, 2, seed=3)
    assert np.array_equal(X, X2) and np.array_equal(y, y2)
    assert np.array_equal(make_table(100, 5, 2, seed=3)[0], X[:100])  # rows do not depend on n
    assert (X[:, -1] == 1).all() and 0 <= X[:, :-1].min() and X[:, :-1].max() < 1
    assert set(np.unique(y)) == {0.0, 1.0} and 0.2 < y.mean() < 0.8
    assert make_table(10, 4, 1, dtype="float32")[0].dtype == np.float32


@pytest.mark.parametrize("name", ["numpy", "numba"])
def test_backend_record_is_complete_and_fused_loops_do_not_allocate(name):
    rec = bench.bench_backend(name, 64, "float32", layers=[8, 16, 2], min_seconds=0.05)
    d = rec.__dict__
    assert FIELDS <= set(d)
    assert rec.iterations_per_second > 0 and rec.gemm_ratio > 0
    assert rec.samples_per_second == pytest.approx(64 * rec.iterations_per_second)
    assert rec.alloc_per_iteration == 0


@pytest.mark.parametrize(
    "peer", ["seed-loop", pytest.param("torch", marks=pytest.mark.slow), pytest.param("jax", marks=pytest.mark.slow)]
)  # importing PyTorch or JAX: a second or two each
def test_each_peer_trains_the_same_network_as_sigmanet(peer):
    """A peer that ran a cheaper loop would flatter itself: after 10 iterations its weights are the
    NumPy backend's (mean steps, the seed's loss, rate 1), and its record is labelled a peer."""
    if peer != "seed-loop":
        pytest.importorskip(peer, reason=f"{peer} is not installed (pip install 'sigmanet[peers]')")
    import sigmanet as sn

    layers = [4, 8, 1]
    X, y = bench.dataset(16, layers, "float64")
    w = bench.init_weights(layers, np.dtype("float64"), 0, "glorot")
    run = bench._PEER_FACTORIES[peer](w, X, y, np.dtype("float64"))
    run.run(10)
    run.sync()
    net = sn.Network(layers, backend="numpy")
    net.set_weights(w)
    net.fit(X, y, iterations=10, reduction="mean", learning_rate=1.0)
    for got, want in zip(run.weights(), net.weights, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)
    rec = bench.bench_peer(peer, 16, "float64", layers=layers, min_seconds=0.02)
    assert rec.kind == "peer" and rec.backend == peer and rec.gemm_ratio is not None


@pytest.mark.slow
def test_cli_bench_writes_results_and_chart(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    assert (
        main(
            ["bench", "--quick", "--no-peers", "--sizes", "4,64,256", "--layers", "8,16,2", "--seconds", "0.01"]
            + ["--out", str(tmp_path)]
        )
        == 0
    )
    results = json.loads((tmp_path / "results.json").read_text())
    records = results["records"]
    assert {r["rows"] for r in records} == {4, 64, 256}
    machine = results["machine"]
    assert machine["cpu"] and machine["date"]
    assert any(lib["internal_api"] and lib["architecture"] for lib in machine["blas"])  # the kernel in use
    assert all(FIELDS <= set(r) for r in records)
    png = (tmp_path / "throughput.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    out = capsys.readouterr().out
    assert "skipping the tutorial's comparison" in out and "numpy is" not in out


def test_cli_bench_says_which_peers_it_skips_and_why(tmp_path, capsys, monkeypatch):
    def missing(*args):
        raise bench.PeerUnavailable("PyTorch is not installed (pip install 'sigmanet[peers]')")

    monkeypatch.setitem(bench.peers._PEER_PROBES, "torch", missing)  # checked without running it
    monkeypatch.setitem(bench.peers._PEER_PROBES, "torch-graph", missing)
    argv = ["bench", "--quick", "--backends", "numpy", "--sizes", "4", "--seconds", "0.01", "--out", str(tmp_path)]
    argv += ["--peers", "seed-loop,torch,torch-graph"]  # JAX left out: its import alone is a second
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "skipping peer torch: PyTorch is not installed (pip install 'sigmanet[peers]')" in out
    peers_line = next(line for line in out.splitlines() if line.startswith("benchmarking"))
    assert "'torch'" not in peers_line and "seed-loop" in peers_line


def test_cli_bench_says_when_it_cannot_draw_the_chart(tmp_path, capsys, monkeypatch):
    why = "matplotlib is not installed (pip install 'sigmanet[bench]')"
    monkeypatch.setattr(bench, "chart_unavailable", lambda: why)
    monkeypatch.setattr(bench.report, "chart_unavailable", lambda: why)
    assert (
        main(
            ["bench", "--quick", "--no-peers", "--backends", "numpy", "--sizes", "4", "--seconds", "0.01"]
            + ["--out", str(tmp_path)]
        )
        == 0
    )
    assert "skipping throughput.png: matplotlib is not installed" in capsys.readouterr().out
    assert not (tmp_path / "throughput.png").exists() and (tmp_path / "results.json").exists()


@pytest.mark.slow  # imports PyTorch
def test_a_peers_floor_is_its_own_librarys_gemms_on_its_own_device():
    """PyTorch's floor runs torch.matmul on the tensors' device (cuBLAS where there is a GPU), not NumPy."""
    torch = pytest.importorskip("torch", reason="PyTorch is not installed (pip install 'sigmanet[peers]')")
    from sigmanet.datasets import tutorial_table

    X, y = tutorial_table("float32")
    w = bench.init_weights([3, 4, 1], np.dtype("float32"), 0, "glorot")
    peer = bench._PEER_FACTORIES["torch"](w, X, y, np.dtype("float32"))
    calls = []
    real = torch.matmul
    torch.matmul = lambda *a, **k: calls.append(a[0].device.type) or real(*a, **k)
    try:
        peer.floor()
    finally:
        torch.matmul = real
    assert calls and set(calls) == {"cuda" if torch.cuda.is_available() else "cpu"}
    assert not isinstance(peer.floor, bench.GemmFloor)


def test_cli_bench_rejects_unknown_backends(capsys):
    assert main(["bench", "--backends", "tpu", "--sizes", "4"]) == 2
    assert "tpu" in capsys.readouterr().err


def test_peers_that_run_full_batches_only_say_so_for_mini_batches():
    with pytest.raises(bench.PeerUnavailable, match="full-batch steps only"):
        bench.bench_peer("seed-loop", 64, "float32", layers=[8, 16, 2], min_seconds=0.01, batch_size=16)


def test_mini_batch_cells_count_the_batch_rows():
    rec = bench.bench_backend("numpy", 256, "float32", layers=[8, 16, 2], min_seconds=0.05, batch_size=64)
    assert rec.batch_size == 64
    assert rec.samples_per_second == pytest.approx(64 * rec.iterations_per_second)
