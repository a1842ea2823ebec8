"""Save and load models as one .npz file.

The file holds only plain arrays (read with ``allow_pickle=False``): the
weights and biases as host NumPy arrays, so a model trained on a GPU loads on
a CPU-only machine, plus a JSON header (format version, library version,
layer sizes, dtype, options, iteration count, input range) and a SHA-256
checksum over all of it, which ``load`` verifies.

Writes are atomic: a temporary file in the same folder, flushed and fsynced,
then renamed over the target. An interrupted write never corrupts the file it
would have replaced.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import tempfile
from pathlib import Path

import numpy as np

from ._version import __version__
from .data import load_arrays
from .errors import ModelFileError

FORMAT = "sigmanet-model"
FORMAT_VERSION = 1


def _digest(header: str, arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256(header.encode())
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}:{a.dtype.str}:{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def save(net, path) -> None:
    """Write ``net`` to ``path`` (exactly that name; no suffix is added)."""
    path = Path(os.fspath(path))
    arrays = {f"W{k}": w for k, w in enumerate(net._state.weights)}
    if net._state.biases is not None:
        arrays.update({f"b{k}": b for k, b in enumerate(net._state.biases)})
    if net.input_range is not None:
        arrays["input_min"], arrays["input_max"] = net.input_range
    header = json.dumps({
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "library_version": __version__,
        "layers": list(net.layers),
        "dtype": net.dtype.name,
        "bias": net.bias,
        "iteration": net.iteration,
        "seed": net.seed,
        "init": net.init,
        "fit_options": net.fit_options,
        "target_names": net.target_names,
        "input_names": net.input_names,
    }, sort_keys=True)
    buf = io.BytesIO()
    np.savez(buf, header=np.array(header), checksum=np.array(_digest(header, arrays)), **arrays)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise FileNotFoundError(f"cannot save to {str(path)!r}: folder {str(folder)!r} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(buf.getbuffer())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable (not every OS can fsync a folder)
        dfd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


def read(path) -> tuple[dict, dict[str, np.ndarray]]:
    """The verified header and arrays of a model file."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"model file {path!r} does not exist")
    arrays = load_arrays(path, "a readable sigmanet model (truncated or corrupted?)", ModelFileError)
    if not isinstance(arrays, dict) or "header" not in arrays or "checksum" not in arrays:
        raise ModelFileError(f"{path!r} is not a sigmanet model: it has no sigmanet header")
    header_text = str(arrays.pop("header"))
    checksum = str(arrays.pop("checksum"))
    try:
        header = json.loads(header_text)
    except json.JSONDecodeError:
        raise ModelFileError(f"{path!r} has a corrupted header") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise ModelFileError(f"{path!r} is not a sigmanet model")
    version = header.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ModelFileError(
            f"{path!r} has model format {version!r}, newer than this sigmanet {__version__} reads "
            f"(format {FORMAT_VERSION}); upgrade sigmanet")
    if _digest(header_text, arrays) != checksum:
        raise ModelFileError(f"{path!r} failed its checksum: the file is corrupted")
    return header, arrays


def load(path, backend: str = "auto", *, threads: int | None = None):
    """Load a model saved by :meth:`Network.save` onto ``backend``.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    sigmanet.ModelFileError
        If the file is truncated, corrupted, not a sigmanet model, or from a
        newer format.
    """
    from .network import Network

    header, arrays = read(path)
    try:
        layers = header["layers"]
        n = len(layers) - 1
        net = Network(layers, backend=backend, dtype=header["dtype"], seed=header.get("seed"),
                      init=header.get("init", "glorot"), bias=bool(header["bias"]), threads=threads)
        weights = [arrays[f"W{k}"] for k in range(n)]
        biases = [arrays[f"b{k}"] for k in range(n)] if net.bias else None
        net.set_weights(weights, biases)
    except (KeyError, TypeError, ValueError) as e:
        if type(e).__module__.startswith("sigmanet"):
            raise
        raise ModelFileError(f"{os.fspath(path)!r} has an inconsistent model: {e}") from None
    net._set_state(net._state.weights, net._state.biases, int(header["iteration"]))
    if "input_min" in arrays:
        net.set_input_range(arrays["input_min"], arrays["input_max"])
    net.fit_options = dict(header.get("fit_options") or {})
    net.target_names = header.get("target_names")
    net.input_names = header.get("input_names")
    return net
