"""The model file format: one .npz file, read and written here and nowhere else.

This module knows files, not networks: it writes the state that
``Network.get_state()`` returns and reads back what ``Network.from_state()``
takes (``sigmanet.load`` joins the two).

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
from typing import Any

import numpy as np

from ._version import __version__
from .errors import ModelFileError
from .io import load_arrays

FORMAT = "sigmanet-model"
FORMAT_VERSION = 1
# What the JSON header carries of a model's state (the arrays travel beside it).
_HEADER_KEYS = ("layers", "dtype", "bias", "iteration", "seed", "init", "fit_options", "target_names", "input_names")


def _digest(header: str, arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256(header.encode())
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}:{a.dtype.str}:{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def write(path: str | os.PathLike[str], state: dict[str, Any]) -> None:
    """Write a model's state (``Network.get_state()``) to ``path``, exactly that name; no suffix is added."""
    path = Path(os.fspath(path))
    arrays = {f"W{k}": w for k, w in enumerate(state["weights"])}
    if state["biases"] is not None:
        arrays.update({f"b{k}": b for k, b in enumerate(state["biases"])})
    if state["input_range"] is not None:
        arrays["input_min"], arrays["input_max"] = state["input_range"]
    header = json.dumps(
        {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "library_version": __version__,
            **{key: state[key] for key in _HEADER_KEYS},
        },
        sort_keys=True,
    )
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


def read(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The verified model state in a model file, as ``Network.from_state`` takes it."""
    header, arrays = _read_verified(path)
    try:
        n = len(header["layers"]) - 1
        state = {key: header.get(key) for key in _HEADER_KEYS}
        state["layers"], state["dtype"], state["iteration"] = header["layers"], header["dtype"], header["iteration"]
        state["bias"] = bool(header["bias"])
        state["weights"] = [arrays[f"W{k}"] for k in range(n)]
        state["biases"] = [arrays[f"b{k}"] for k in range(n)] if state["bias"] else None
    except (KeyError, TypeError) as e:
        raise ModelFileError(f"{os.fspath(path)!r} has an inconsistent model: {type(e).__name__}: {e}") from None
    state["input_range"] = (arrays["input_min"], arrays["input_max"]) if "input_min" in arrays else None
    return state


def _read_verified(path: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"model file {path!r} does not exist")
    arrays = load_arrays(path, "a sigmanet model file, or it is truncated or corrupted", ModelFileError)
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
            f"(format {FORMAT_VERSION}); upgrade sigmanet"
        )
    if _digest(header_text, arrays) != checksum:
        raise ModelFileError(f"{path!r} failed its checksum: the file is corrupted")
    return header, arrays
