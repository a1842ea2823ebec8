"""Input validation, done once at the public boundary.

Every check runs before any work and before any state changes, and every
message names the argument and shows what was received. Internals (backends,
kernels) trust what passes here.
"""

from __future__ import annotations

import math
import numbers
import operator

import numpy as np

from .backends import array_namespace

DTYPES = ("float32", "float64")
LOSSES = ("mse", "bce")
REDUCTIONS = ("sum", "mean")


def check_layers(layers) -> tuple[int, ...]:
    if isinstance(layers, (str, bytes)) or not hasattr(layers, "__len__"):
        raise TypeError(f"layers must be a sequence of layer sizes such as [3, 4, 1], got {layers!r}")
    sizes = []
    for i, n in enumerate(layers):
        if isinstance(n, (bool, np.bool_)) or not isinstance(n, numbers.Integral):
            raise TypeError(f"layers[{i}] must be an integer, got {type(n).__name__} {n!r}")
        if n < 1:
            raise ValueError(f"layers[{i}] must be at least 1, got {n}")
        sizes.append(int(n))
    if len(sizes) < 2:
        raise ValueError(f"layers needs at least an input and an output size, such as [3, 1], got {list(layers)!r}")
    return tuple(sizes)


def check_dtype(dtype) -> np.dtype:
    try:
        dt = np.dtype(dtype)
    except TypeError:
        dt = None
    if dt is None or dt.name not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    return dt


def check_choice(name: str, value, choices) -> str:
    if value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}")
    return value


def check_int(name: str, value, minimum: int = 1) -> int:
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be an integer, got bool {value!r}")
    try:
        n = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {type(value).__name__} {value!r}") from None
    if n < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {n}")
    return n


def check_positive_float(name: str, value) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    v = float(value)
    if not math.isfinite(v) or v <= 0:
        raise ValueError(f"{name} must be a finite number above 0, got {value!r}")
    return v


def check_seed(seed):
    if seed is None:
        return None
    return check_int("seed", seed, minimum=0)


def _as_numeric_2d(name: str, a, n_cols: int, allow_1d_column: bool):
    """Return ``a`` as a 2-D array of its own module, checked for kind and values."""
    xp = array_namespace(a)
    if xp is np:
        if isinstance(a, (str, bytes)):
            raise TypeError(f"{name} must be a numeric array, got {type(a).__name__}")
        try:
            arr = np.asarray(a)
        except (ValueError, TypeError) as e:  # ragged nested lists
            raise ValueError(f"{name} could not be read as an array: {e}") from None
    else:
        arr = a
    kind = arr.dtype.kind
    if kind == "c":
        raise TypeError(f"{name} must be real, got complex dtype {arr.dtype}")
    if kind not in "biuf":
        raise TypeError(f"{name} must be numeric, got dtype {arr.dtype}")
    if arr.ndim == 1 and allow_1d_column and n_cols == 1:
        arr = arr.reshape(-1, 1)
    if arr.ndim != 2 or arr.shape[1] != n_cols:
        raise ValueError(f"{name} {_shape_problem(name, arr, n_cols)}")
    if arr.shape[0] == 0:
        raise ValueError(f"{name} is empty: it has 0 rows")
    if kind == "f":
        _check_finite(name, arr, xp)
    return arr


# Rows checked at a time for NaN and inf: bounds the check's temporary to a few MB.
_FINITE_BLOCK_BYTES = 1 << 22


def _check_finite(name, arr, xp):
    """Raise if ``arr`` holds NaN or inf, looking at one block of rows at a time (no full-size temporary)."""
    step = max(1, _FINITE_BLOCK_BYTES // max(1, arr.shape[1] * arr.dtype.itemsize))
    for r0 in range(0, arr.shape[0], step):
        block = arr[r0 : r0 + step]
        if not bool(xp.isfinite(block).all()):
            rows, cols = xp.nonzero(~xp.isfinite(block))
            raise ValueError(
                f"{name} holds NaN or infinite values, the first at row {r0 + int(rows[0])}, column "
                f"{int(cols[0])}; remove or impute them first"
            )


def _shape_problem(name: str, arr, n_cols: int) -> str:
    """What is wrong with ``arr``'s shape for ``n_cols`` columns, and what to do about it."""
    got = f"got shape {arr.shape}"
    if name == "y":
        want = f"the network has {n_cols} output{'s' * (n_cols > 1)}, so y needs {n_cols} column{'s' * (n_cols > 1)}"
        if arr.ndim in (1, 2) and (arr.ndim == 1 or arr.shape[1] == 1) and n_cols > 1:
            return (
                f"has one column of values ({got}) but {want}. For class labels, one-hot encode them: "
                f"one 0/1 column per class, e.g. np.eye({n_cols})[labels]"
            )
        return f"must be 2-D (rows x columns) and {want}; {got}"
    want = f"the network takes {n_cols} input{'s' * (n_cols > 1)} per row"
    if arr.ndim == 1 and arr.shape[0] == n_cols:
        return f"must be 2-D (rows x columns), {got}: {want}; for a single example use x.reshape(1, -1)"
    if arr.ndim == 2:
        return f"has {arr.shape[1]} columns, but {want}"
    return f"must be 2-D (rows x columns) with {n_cols} columns: {want}; {got}"


def check_inputs(X, n_inputs: int):
    """X for predict/fit: 2-D, numeric, finite, ``n_inputs`` columns."""
    return _as_numeric_2d("X", X, n_inputs, allow_1d_column=True)


def check_targets(y, n_outputs: int, n_rows: int):
    """y for fit: like X, with targets in [0, 1] (the sigmoid's range)."""
    arr = _as_numeric_2d("y", y, n_outputs, allow_1d_column=True)
    if arr.shape[0] != n_rows:
        raise ValueError(f"X has {n_rows} rows but y has {arr.shape[0]}; they must match")
    xp = array_namespace(arr)
    lo, hi = float(xp.min(arr)), float(xp.max(arr))
    if lo < 0 or hi > 1:
        raise ValueError(
            f"y must lie in [0, 1], the range of the sigmoid output, got values in [{lo:g}, {hi:g}]; "
            "rescale it, e.g. (y - y.min()) / (y.max() - y.min())"
        )
    return arr
