"""Peers: the same network on the same data through other libraries, and the seed's own loop.

Each factory returns a :class:`Peer`: ``run(n)`` runs n iterations, ``sync``
waits for the device, and ``floor`` runs the iteration's bare GEMMs in the
peer's own library on its own device (cuBLAS for a GPU peer), so its
gemm_ratio compares like with like. The reference steps written here are
the peers' (plain NumPy, PyTorch, JAX), outside sigmanet's core modules.
"""

from __future__ import annotations

import gc
import os
import time
from dataclasses import dataclass

import numpy as np

from ..network import init_weights
from .records import GemmFloor, Record, _side_by_side, _timed_record, dataset, layers_for

PEERS = ("seed-loop", "torch", "torch-graph", "jax")


@dataclass
class Peer:
    run: object
    sync: object
    device: str
    floor: object
    weights: object = None  # () -> the peer's current weights as NumPy arrays (to check it trains the same net)


class PeerUnavailable(Exception):
    """A peer cannot run here; the message says why and what would bring it."""


def _peer_seed_loop(weights, X, y, dtype):
    W = [w.astype(dtype) for w in weights]
    X = X.astype(dtype)
    y = y.astype(dtype)
    scale = dtype.type(1.0 / len(X))

    def run(n):
        for _ in range(n):  # the seed's program, as written: a new array per step
            a = [X]
            for w in W:
                a.append(1 / (1 + np.exp(-(a[-1] @ w))))
            delta = (y - a[-1]) * (a[-1] * (1 - a[-1]))
            deltas = [delta]
            for k in range(len(W) - 1, 0, -1):
                delta = (delta @ W[k].T) * (a[k] * (1 - a[k]))
                deltas.insert(0, delta)
            for k in range(len(W)):
                W[k] += scale * (a[k].T @ deltas[k])

    return Peer(run, lambda: None, "numpy (seed loop)", GemmFloor(np, weights, X, dtype), lambda: [w.copy() for w in W])


def _torch():
    try:
        import torch
    except ImportError:
        raise PeerUnavailable("PyTorch is not installed (pip install 'sigmanet[peers]')") from None
    return torch


def _torch_setup(weights, X, y, dtype):
    torch = _torch()
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    tdt = torch.float32 if dtype == np.float32 else torch.float64
    W = [torch.tensor(w, dtype=tdt, device=dev) for w in weights]
    Xt = torch.tensor(X, dtype=tdt, device=dev)
    yt = torch.tensor(y, dtype=tdt, device=dev)
    scale = 1.0 / len(X)

    def iteration():
        a = [Xt]
        for w in W:
            a.append(torch.sigmoid(a[-1] @ w))
        delta = (yt - a[-1]) * (a[-1] * (1 - a[-1]))
        deltas = [delta]
        for k in range(len(W) - 1, 0, -1):
            delta = (delta @ W[k].T) * (a[k] * (1 - a[k]))
            deltas.insert(0, delta)
        for k in range(len(W)):
            W[k].add_(a[k].T @ deltas[k], alpha=scale)

    sync = torch.cuda.synchronize if dev == "cuda" else (lambda: None)
    name = torch.cuda.get_device_name() if dev == "cuda" else "cpu"
    iteration.W = W  # type: ignore[attr-defined]  # (read by Peer.weights)
    return torch, dev, iteration, sync, name, _torch_floor(torch, weights, Xt, tdt, dev)


def _torch_floor(torch, weights, Xt, tdt, dev):
    """The iteration's five-or-so bare GEMMs with torch.matmul into preallocated tensors."""
    rows = Xt.shape[0]
    W = [torch.tensor(w, dtype=tdt, device=dev) for w in weights]
    sizes = [w.shape[0] for w in weights] + [weights[-1].shape[1]]
    a = [Xt] + [torch.rand(rows, n, dtype=tdt, device=dev) for n in sizes[1:]]
    d = [None] + [torch.rand(rows, n, dtype=tdt, device=dev) for n in sizes[1:]]
    g = [torch.empty_like(w) for w in W]

    def floor():
        L = len(W)
        for k in range(L):
            torch.matmul(a[k], W[k], out=a[k + 1])
        for k in range(L - 1, 0, -1):
            torch.matmul(d[k + 1], W[k].T, out=d[k])
        for k in range(L):
            torch.matmul(a[k].T, d[k + 1], out=g[k])

    return floor


def _peer_torch(weights, X, y, dtype):
    torch, _, iteration, sync, name, floor = _torch_setup(weights, X, y, dtype)

    def run(n):
        with torch.no_grad():
            for _ in range(n):
                iteration()

    return Peer(
        run, sync, f"torch {torch.__version__} eager ({name})", floor, lambda: [w.cpu().numpy() for w in iteration.W]
    )


def _peer_torch_graph(weights, X, y, dtype):
    """PyTorch as a careful GPU user runs a tiny loop: one iteration captured as a CUDA graph, replayed."""
    torch = _torch()
    if not torch.cuda.is_available():
        raise PeerUnavailable("torch-graph needs a CUDA device (PyTorch sees none)")
    torch, _, iteration, sync, name, floor = _torch_setup(weights, X, y, dtype)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.no_grad(), torch.cuda.stream(side):
        for _ in range(3):  # warm-up on a side stream, as torch.cuda.graphs asks
            iteration()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.no_grad(), torch.cuda.graph(graph):
        iteration()

    def run(n):
        for _ in range(n):
            graph.replay()

    return Peer(run, sync, f"torch {torch.__version__} CUDA graph ({name})", floor)


def _peer_jax(weights, X, y, dtype, batch_size=None):
    # XLA takes 75% of the GPU's memory at its first use unless told not to, and
    # would starve whatever runs after it (the PyTorch peers at the next size:
    # measured, an out-of-memory at 4M rows on an H100).
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    try:
        import jax
        import jax.numpy as jnp
    except ImportError:
        raise PeerUnavailable("JAX is not installed (pip install 'sigmanet[peers]')") from None

    if dtype == np.float64:
        jax.config.update("jax_enable_x64", True)
    Xj, yj = jnp.asarray(X, dtype), jnp.asarray(y, dtype)
    batch = len(X) if batch_size is None else batch_size
    if len(X) % batch:
        raise PeerUnavailable(f"the JAX peer needs the rows ({len(X)}) to be a multiple of the batch ({batch})")
    n_batches, scale = len(X) // batch, 1.0 / batch

    def step(i, W):
        start = (i % n_batches) * batch  # the batches in row order, as sigmanet's
        xb = jax.lax.dynamic_slice(Xj, (start, 0), (batch, Xj.shape[1]))
        yb = jax.lax.dynamic_slice(yj, (start, 0), (batch, yj.shape[1]))
        a = [xb]
        for w in W:
            a.append(jax.nn.sigmoid(a[-1] @ w))
        delta = (yb - a[-1]) * (a[-1] * (1 - a[-1]))
        deltas = [delta]
        for k in range(len(W) - 1, 0, -1):
            delta = (delta @ W[k].T) * (a[k] * (1 - a[k]))
            deltas.insert(0, delta)
        return tuple(w + scale * (a[k].T @ deltas[k]) for k, w in enumerate(W))

    # "highest": true float32 GEMMs, as cuBLAS through CuPy and PyTorch run them
    # (XLA's default on an H100 is TF32, a 10-bit mantissa: not the same arithmetic).
    @jax.jit
    def interval(W, n):
        with jax.default_matmul_precision("highest"):
            return jax.lax.fori_loop(0, n, step, W)

    state = {"W": tuple(jnp.asarray(w, dtype) for w in weights)}

    def run(n):
        state["W"] = interval(state["W"], n)
        jax.block_until_ready(state["W"])

    sizes = [w.shape[0] for w in weights] + [weights[-1].shape[1]]
    rng = np.random.default_rng(1)
    acts = tuple(jnp.asarray(rng.random((batch, n)), dtype) for n in sizes[1:])
    dels = tuple(jnp.asarray(rng.random((batch, n)), dtype) for n in sizes[1:])
    Xfloor = Xj[:batch]

    @jax.jit
    def gemms(W, a_out, d_out):
        with jax.default_matmul_precision("highest"):
            a = (Xfloor,) + a_out
            fwd = [a[k] @ W[k] for k in range(len(W))]
            back = [d_out[k] @ W[k].T for k in range(1, len(W))]
            grads = [a[k].T @ d_out[k] for k in range(len(W))]
            return fwd, back, grads

    def floor():
        jax.block_until_ready(gemms(state["W"], acts, dels))

    return Peer(
        run,
        lambda: None,
        f"jax {jax.__version__} jit+fori_loop ({jax.devices()[0].platform})",
        floor,
        lambda: [np.asarray(w) for w in state["W"]],
    )


_PEER_FACTORIES = {
    "seed-loop": _peer_seed_loop,
    "torch": _peer_torch,
    "torch-graph": _peer_torch_graph,
    "jax": _peer_jax,
}


def _probe_jax():
    import importlib.util

    if importlib.util.find_spec("jax") is None:
        raise PeerUnavailable("JAX is not installed (pip install 'sigmanet[peers]')")


def _probe_torch_graph():
    if not _torch().cuda.is_available():
        raise PeerUnavailable("torch-graph needs a CUDA device (PyTorch sees none)")


# What each peer needs, checked without running it: a peer that computes starts
# thread pools (XLA's, PyTorch's) that stay and slow whatever is timed next,
# the backends and numba's strategy measurement included (measured: numba's
# choice at 512-row batches of 784-128-10 flipped to the slower strategy
# after a JAX probe that ran a 4-row step).
_PEER_PROBES = {
    "seed-loop": lambda: None,
    "torch": _torch,
    "torch-graph": _probe_torch_graph,
    "jax": _probe_jax,
}


def usable_peers(peers) -> tuple[list[str], dict[str, str]]:
    """(the peers that can run here, {peer: why not} for the others), checked without running any."""
    usable, skipped = [], {}
    for peer in peers:
        if peer not in _PEER_PROBES:
            skipped[peer] = f"unknown peer; known: {sorted(_PEER_PROBES)}"
            continue
        try:
            _PEER_PROBES[peer]()
        except PeerUnavailable as e:
            skipped[peer] = str(e)
            continue
        usable.append(peer)
    return usable, skipped


def bench_peer(peer, rows, dtype="float32", layers=None, min_seconds=0.5, batch_size=None) -> Record:
    """Time a peer on the same data; its gemm_ratio is against its own library's GEMMs on its own device.

    Raises
    ------
    PeerUnavailable
        If the peer cannot run here (see :func:`usable_peers`).
    """
    layers = layers or layers_for(rows)
    dt = np.dtype(dtype)
    X, y = dataset(rows, layers, dtype)
    weights = init_weights(layers, dt, 0, "glorot")
    if batch_size is None or batch_size >= rows:
        peer_run, batch_size = _PEER_FACTORIES[peer](weights, X, y, dt), None
    elif peer == "jax":
        peer_run = _peer_jax(weights, X, y, dt, batch_size=batch_size)
    else:
        raise PeerUnavailable(f"the {peer} peer runs full-batch steps only")
    t0 = time.perf_counter()
    peer_run.run(2)
    peer_run.sync()
    compile_s = time.perf_counter() - t0
    _, sec, gemm = _side_by_side(peer_run.run, peer_run.sync, peer_run.floor, peer_run.sync, min_seconds)
    device = peer_run.device
    del peer_run
    if peer.startswith("torch"):  # PyTorch's caching allocator keeps the peer's buffers otherwise
        gc.collect()
        _torch().cuda.empty_cache()
    return _timed_record(
        peer,
        rows,
        layers,
        dtype,
        sec,
        gemm,
        device,
        batch=batch_size,
        kind="peer",
        compile_seconds=compile_s,
        batch_size=batch_size,
    )
