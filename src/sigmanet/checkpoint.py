"""The model file format: one .npz file, read and written here and nowhere else.

This module knows files, not networks: it writes the state that
``Network.get_state()`` returns and reads back what ``Network.from_state()``
takes (``sigmanet.load`` joins the two).

The file holds only plain arrays (read with ``allow_pickle=False``): the
weights, biases and optimizer arrays as host NumPy arrays, so a model trained
on a GPU loads on a CPU-only machine, plus a JSON header (format version,
library version, layer sizes, dtype, options, iteration count, the optimizer's
rule and steps) and a SHA-256 checksum over all of it, which ``load`` verifies.

Reading is bounded: the header is read first, every field is checked, and
each array's declared size is checked against the layer sizes before anything
large is decompressed, so a small file cannot make ``load`` allocate more than
the model it claims to hold (a "zip bomb"), and every inconsistency is a
:class:`~sigmanet.ModelFileError`.

Writes are atomic: a temporary file in the same folder (named with the
writer's process id), flushed and fsynced, then renamed over the target; a
symlink is written through to its target, and the file gets the user's umask
(or keeps the mode of the file it replaces). Temporary files that a killed
writer left behind are removed by the next save to that folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import numbers
import os
import re
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from ._version import __version__
from .errors import ModelFileError

FORMAT = "sigmanet-model"
FORMAT_VERSION = 2  # 1: sigmanet 0.1 and 0.2 (no output layer, no optimizer state); 2: 0.3
# What the JSON header carries of a model's state (the arrays travel beside it).
_HEADER_KEYS = (
    "layers",
    "dtype",
    "bias",
    "output",
    "iteration",
    "seed",
    "init",
    "fit_options",
    "target_names",
    "input_names",
    "schedule",
)
_MAX_HEADER_BYTES = 1 << 26  # the JSON header (column names included) and the checksum
_NPY_HEADER_SLACK = 4096  # an .npy member's own header, beside its data
_TMP = re.compile(r"^\..+\.(\d+)\.[A-Za-z0-9_]+\.tmp$")  # our temporary files: .<name>.<pid>.<random>.tmp


def _digest(header: str, arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256(header.encode())
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}:{a.dtype.str}:{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _arrays_of(state: dict[str, Any]) -> dict[str, np.ndarray]:
    arrays = {f"W{k}": w for k, w in enumerate(state["weights"])}
    if state["biases"] is not None:
        arrays.update({f"b{k}": b for k, b in enumerate(state["biases"])})
    if state.get("input_range") is not None:
        arrays["input_min"], arrays["input_max"] = state["input_range"]
    opt = state.get("optimizer")
    if opt is not None:
        for slot, values in opt["slots"].items():
            arrays.update({f"opt_{slot}_{i}": a for i, a in enumerate(values)})
    return arrays


def _target(path: str | os.PathLike[str]) -> Path:
    """The file a save writes: ``path`` itself, or a symlink's target; refused clearly where it cannot be a file."""
    text = os.fspath(path)
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"cannot save to {text!r}: the path must name a file")
    if text.endswith(("/", os.sep)) or os.path.isdir(text):
        raise IsADirectoryError(f"cannot save to {text!r}: it is a folder; give a file name such as model.npz")
    p = Path(text)
    if p.is_symlink():
        p = Path(os.path.realpath(p))
    return p


def _mode_for(target: Path) -> int:
    """The new file's mode: the replaced file's, else 0o666 under the process's umask."""
    try:
        return target.stat().st_mode & 0o7777
    except OSError:
        pass
    umask = None
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                umask = int(line.split()[1], 8)
    if umask is None:  # not Linux: read it the only portable way (set and restored at once)
        umask = os.umask(0o022)
        os.umask(umask)
    return 0o666 & ~umask


def _clean_stale_temporaries(folder: Path) -> None:
    """Remove temporary files of our naming whose writer process is gone (killed mid-save)."""
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for name in names:
        match = _TMP.match(name)
        if match is None:
            continue
        pid = int(match.group(1))
        if pid == os.getpid():
            continue
        try:
            os.kill(pid, 0)
            continue  # alive: possibly still writing
        except ProcessLookupError:
            pass
        except (PermissionError, OSError):
            continue  # someone else's process: leave it
        with contextlib.suppress(OSError):
            os.unlink(folder / name)


def check_writable(path: str | os.PathLike[str]) -> Path:
    """Raise now, before any work, if a model cannot be saved to ``path`` (a missing or read-only folder,
    a folder where the file should be); returns the file a save would write."""
    target = _target(path)
    folder = target.parent if str(target.parent) else Path(".")
    if not folder.is_dir():
        raise FileNotFoundError(f"cannot save to {os.fspath(path)!r}: folder {str(folder)!r} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise PermissionError(f"cannot save to {os.fspath(path)!r}: folder {str(folder)!r} is not writable")
    if target.exists() and not os.access(target, os.W_OK) and not os.access(folder, os.W_OK):
        raise PermissionError(f"cannot save to {os.fspath(path)!r}: the file is not writable")
    return target


def write(path: str | os.PathLike[str], state: dict[str, Any]) -> None:
    """Write a model's state (``Network.get_state()``) to ``path``, exactly that name; no suffix is added."""
    target = _target(path)
    arrays = _arrays_of(state)
    opt = state.get("optimizer")
    header = json.dumps(
        {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "library_version": __version__,
            **{key: state.get(key) for key in _HEADER_KEYS},
            "optimizer": None if opt is None else {"rule": opt["rule"], "step": int(opt["step"])},
        },
        sort_keys=True,
    )
    buf = io.BytesIO()
    np.savez(buf, header=np.array(header), checksum=np.array(_digest(header, arrays)), **arrays)  # type: ignore[arg-type]
    folder = target.parent if str(target.parent) else Path(".")
    if not folder.is_dir():
        raise FileNotFoundError(f"cannot save to {os.fspath(path)!r}: folder {str(folder)!r} does not exist")
    _clean_stale_temporaries(folder)
    mode = _mode_for(target)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.{os.getpid()}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(buf.getbuffer())
            f.flush()
            os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())
        os.replace(tmp, target)
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


# -- reading: bounded and checked --


def _bad(path: str, why: str) -> ModelFileError:
    return ModelFileError(f"{path!r} has an inconsistent model: {why}")


def _int_field(path: str, header: dict, key: str, minimum: int = 0) -> int:
    value = header.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise _bad(path, f"{key} must be an integer of at least {minimum}, got {value!r}")
    return value


def _names_field(path: str, header: dict, key: str, length: int) -> list[str] | None:
    value = header.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or len(value) != length or not all(isinstance(n, str) for n in value):
        raise _bad(path, f"{key} must be a list of {length} strings, got {value!r}")
    return value


def _check_header(path: str, header: dict) -> dict[str, Any]:
    """Every header field checked; returns the expected arrays: {name: (shape, dtype)}."""
    layers = header.get("layers")
    if (
        not isinstance(layers, list)
        or len(layers) < 2
        or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in layers)
    ):
        raise _bad(path, f"layers must be a list of at least two positive integers, got {layers!r}")
    dtype = header.get("dtype")
    if dtype not in ("float32", "float64"):
        raise _bad(path, f"dtype must be 'float32' or 'float64', got {dtype!r}")
    if not isinstance(header.get("bias"), bool):
        raise _bad(path, f"bias must be true or false, got {header.get('bias')!r}")
    output = header.get("output") or "sigmoid"
    if output not in ("sigmoid", "softmax", "identity"):
        raise _bad(path, f"output must be 'sigmoid', 'softmax' or 'identity', got {output!r}")
    _int_field(path, header, "iteration")
    seed = header.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise _bad(path, f"seed must be null or a non-negative integer, got {seed!r}")
    if header.get("init", "glorot") not in ("glorot", "legacy"):
        raise _bad(path, f"init must be 'glorot' or 'legacy', got {header.get('init')!r}")
    for key in ("fit_options", "schedule"):
        if header.get(key) is not None and not isinstance(header[key], dict):
            raise _bad(path, f"{key} must be a mapping, got {header[key]!r}")
    _names_field(path, header, "input_names", layers[0])
    _names_field(path, header, "target_names", layers[-1])
    n = len(layers) - 1
    expected: dict[str, Any] = {f"W{k}": ((layers[k], layers[k + 1]), dtype) for k in range(n)}
    if header["bias"]:
        expected.update({f"b{k}": ((layers[k + 1],), dtype) for k in range(n)})
    opt = header.get("optimizer")
    if opt is not None:
        from .optimizers import SLOTS

        if not isinstance(opt, dict) or opt.get("rule") not in SLOTS:
            raise _bad(path, f"optimizer must name one of {sorted(SLOTS)}, got {opt!r}")
        _int_field(path, opt, "step")
        shapes = [s for s, _ in expected.values()]  # the parameters, in order: W..., then b...
        for slot in SLOTS[opt["rule"]]:
            expected.update({f"opt_{slot}_{i}": (shape, dtype) for i, shape in enumerate(shapes)})
    return expected


def _read_member(zf: zipfile.ZipFile, name: str) -> np.ndarray:
    with zf.open(name) as f:
        return np.lib.format.read_array(f, allow_pickle=False)


def read(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The verified model state in a model file, as ``Network.from_state`` takes it."""
    text = os.fspath(path)
    if not os.path.exists(text):
        raise FileNotFoundError(f"model file {text!r} does not exist")
    if os.path.isdir(text):
        raise IsADirectoryError(f"{text!r} is a folder, not a model file")
    try:
        with open(text, "rb") as f, zipfile.ZipFile(f) as zf:
            return _read_zip(text, zf)
    except (FileNotFoundError, PermissionError, IsADirectoryError, ModelFileError):
        raise
    except Exception as e:  # damaged zip structure, compressed data, npy headers: never anything else
        raise ModelFileError(
            f"{text!r} is not a sigmanet model file, or it is truncated or corrupted: {type(e).__name__}: {e}"
        ) from None


def _read_zip(path: str, zf: zipfile.ZipFile) -> dict[str, Any]:
    infos = {info.filename: info for info in zf.infolist()}
    for small in ("header.npy", "checksum.npy"):
        if small not in infos:
            raise ModelFileError(f"{path!r} is not a sigmanet model: it has no sigmanet header")
        if infos[small].file_size > _MAX_HEADER_BYTES:
            raise ModelFileError(
                f"{path!r} is not a sigmanet model: its {small[:-4]} is {infos[small].file_size} bytes"
            )
    header_text = str(_read_member(zf, "header.npy"))
    checksum = str(_read_member(zf, "checksum.npy"))
    try:
        header = json.loads(header_text)
    except json.JSONDecodeError:
        raise ModelFileError(f"{path!r} has a corrupted header") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise ModelFileError(f"{path!r} is not a sigmanet model")
    version = header.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ModelFileError(f"{path!r} has an invalid model format version {version!r}")
    if version > FORMAT_VERSION:
        raise ModelFileError(
            f"{path!r} has model format {version!r}, newer than this sigmanet {__version__} reads "
            f"(format {FORMAT_VERSION}); upgrade sigmanet"
        )
    expected = _check_header(path, header)
    optional = {"input_min", "input_max"}
    names = {name[:-4] for name in infos if name.endswith(".npy")} - {"header", "checksum"}
    extra = sorted(names - set(expected) - optional)
    missing = sorted(set(expected) - names)
    if extra or missing or len(names) != len(infos) - 2:
        raise _bad(
            path,
            f"it holds arrays {sorted(names)}; expected {sorted(expected)}"
            + (f" (missing {missing})" if missing else "")
            + (f" (unexpected {extra})" if extra else ""),
        )
    if ("input_min" in names) != ("input_max" in names):
        raise _bad(path, "it holds one of input_min and input_max without the other")
    n0 = header["layers"][0]
    for name in optional & names:
        expected[name] = ((n0,), "float64")
    for name, (shape, dtype) in expected.items():
        limit = int(np.prod(shape)) * np.dtype(dtype).itemsize + _NPY_HEADER_SLACK
        if infos[f"{name}.npy"].file_size > limit:  # checked before decompressing anything large
            raise _bad(
                path,
                f"array {name} declares {infos[f'{name}.npy'].file_size} bytes; {shape} {dtype} "
                f"needs {limit - _NPY_HEADER_SLACK}",
            )
    arrays = {}
    for name, (shape, dtype) in expected.items():
        a = _read_member(zf, f"{name}.npy")
        if a.shape != tuple(shape) or a.dtype != np.dtype(dtype):
            raise _bad(path, f"array {name} is {a.dtype} {a.shape}, expected {dtype} {tuple(shape)}")
        arrays[name] = a
    if _digest(header_text, arrays) != checksum:
        raise ModelFileError(f"{path!r} failed its checksum: the file is corrupted")
    return _state(header, arrays)


def _state(header: dict[str, Any], arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    n = len(header["layers"]) - 1
    state = {key: header.get(key) for key in _HEADER_KEYS}
    state["output"] = header.get("output") or "sigmoid"
    state["weights"] = [arrays[f"W{k}"] for k in range(n)]
    state["biases"] = [arrays[f"b{k}"] for k in range(n)] if header["bias"] else None
    state["input_range"] = (arrays["input_min"], arrays["input_max"]) if "input_min" in arrays else None
    opt = header.get("optimizer")
    if opt is None:
        state["optimizer"] = None
    else:
        from .optimizers import SLOTS

        n_params = n * (2 if header["bias"] else 1)
        state["optimizer"] = {
            "rule": opt["rule"],
            "step": opt["step"],
            "slots": {s: [arrays[f"opt_{s}_{i}"] for i in range(n_params)] for s in SLOTS[opt["rule"]]},
        }
    schedule = header.get("schedule")
    if schedule is not None:
        try:
            state["schedule"] = {
                "scale": float(schedule["scale"]),
                "best": float(schedule["best"]),
                "stalled": int(schedule["stalled"]),
            }
        except (KeyError, TypeError, ValueError):
            raise ModelFileError(f"the model's schedule state is inconsistent: {schedule!r}") from None
        if not isinstance(schedule["stalled"], numbers.Integral):
            raise ModelFileError(f"the model's schedule state is inconsistent: {schedule!r}")
    return state
