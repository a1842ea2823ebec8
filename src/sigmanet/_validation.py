"""Input validation, done once at the public boundary.

Every check runs before any work and before any state changes, and every
message names the argument and shows what was received. Internals (backends,
kernels) trust what passes here.
"""

from __future__ import annotations

import contextlib
import functools
import math
import numbers
import operator
from collections.abc import Mapping
from collections.abc import Set as AbcSet
from typing import Any

import numpy as np

from ._arrays import array_namespace, is_sparse
from ._plan import DEFAULT_LOSS, LOSSES_FOR_OUTPUT, OPTIMIZERS, OUTPUTS, REDUCTIONS, SCHEDULES

DTYPES = ("float32", "float64")
# The largest layer size and weight count a network may have: beyond these the weights alone
# would not fit in any machine's memory, and NumPy's own errors would not name the argument.
MAX_UNITS = 1 << 31
MAX_PARAMETERS = 1 << 36


def check_layers(layers: Any) -> tuple[int, ...]:
    if layers is None or isinstance(layers, (str, bytes)) or not hasattr(layers, "__len__"):
        raise TypeError(f"layers must be a sequence of layer sizes such as [3, 4, 1], got {layers!r}")
    if isinstance(layers, (AbcSet, Mapping)):  # no order of their own: {3, 4, 1} iterates as 1, 3, 4
        raise TypeError(
            f"layers must be an ordered sequence of layer sizes such as [3, 4, 1], got a {type(layers).__name__}"
        )
    sizes = []
    for i, n in enumerate(layers):
        if isinstance(n, (bool, np.bool_)) or not isinstance(n, numbers.Integral):
            raise TypeError(f"layers[{i}] must be an integer, got {type(n).__name__} {n!r}")
        size = int(n)
        if size < 1:
            raise ValueError(f"layers[{i}] must be at least 1, got {size}")
        if size > MAX_UNITS:
            raise ValueError(f"layers[{i}] = {size} units is more than sigmanet supports ({MAX_UNITS})")
        sizes.append(size)
    if len(sizes) < 2:
        raise ValueError(f"layers needs at least an input and an output size, such as [3, 1], got {list(layers)!r}")
    params = sum(p * q for p, q in zip(sizes[:-1], sizes[1:]))
    if params > MAX_PARAMETERS:
        raise ValueError(
            f"layers {sizes} need {params:,} weights ({params * 4 / 2**30:,.0f} GiB even in float32), "
            f"more than sigmanet supports ({MAX_PARAMETERS:,}); use smaller layers"
        )
    return tuple(sizes)


def check_dtype(dtype: Any) -> np.dtype:
    try:
        dt = np.dtype(dtype)
    except TypeError:
        dt = None
    if dt is None or dt.name not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    return dt


def check_parameter(name: str, a: np.ndarray, dtype: Any, what: str = "finite real numbers") -> np.ndarray:
    """A weight, bias or optimizer slot (a host array) as ``dtype``: real, and finite once cast (a float64
    value beyond float32's range would be infinite there, and a model file holding it could not be loaded)."""
    if a.dtype.kind not in "biuf":
        raise ValueError(f"{name} must be {what}, got dtype {a.dtype}")
    with np.errstate(over="ignore", invalid="ignore"):
        cast = a.astype(dtype)
    if not np.isfinite(cast).all():
        beyond = bool(np.isfinite(a).all())
        why = f" (values beyond {np.dtype(dtype).name}'s range, the network's dtype)" if beyond else ""
        raise ValueError(f"{name} must be {what}{why}")
    return cast


def check_input_range(lo: Any, hi: Any, n_inputs: int, name: str = "the input range") -> tuple[np.ndarray, np.ndarray]:
    """``(lo, hi)`` as ``n_inputs`` finite float64 minima and maxima with ``hi >= lo`` in every column."""
    pair = []
    for part, a in (("minima", lo), ("maxima", hi)):
        if a is None:
            raise TypeError(f"{name} needs both its minima and its maxima (or None for both), got None {part}")
        try:
            pair.append(np.asarray(a, np.float64).reshape(-1))
        except (TypeError, ValueError) as e:
            raise ValueError(f"{name}'s {part} must be {n_inputs} real numbers, got {a!r} ({e})") from None
    lo, hi = pair
    if lo.shape != (n_inputs,) or hi.shape != (n_inputs,):
        raise ValueError(f"{name} needs {n_inputs} minima and maxima, got {lo.shape} and {hi.shape}")
    bad = np.flatnonzero(~(np.isfinite(lo) & np.isfinite(hi)) | (hi < lo))
    if bad.size:
        raise ValueError(
            f"{name} must be finite with max >= min in every column; "
            f"input column(s) {bad.tolist()} are not (min {lo[bad].tolist()}, max {hi[bad].tolist()})"
        )
    return lo, hi


def check_choice(name: str, value: Any, choices: Any) -> Any:
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}")
    return value


def check_bool(name: str, value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {type(value).__name__} {value!r}")
    return bool(value)


def check_int(name: str, value: Any, minimum: int = 1, maximum: int | None = None) -> int:
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be an integer, got bool {value!r}")
    try:
        n = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {type(value).__name__} {value!r}") from None
    if n < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {n}")
    if maximum is not None and n > maximum:
        raise ValueError(f"{name} must be at most {maximum}, got {n}")
    return n


def check_real(
    name: str, value: Any, low: float, high: float, low_open: bool = False, high_open: bool = False
) -> float:
    """A finite real number in the interval from ``low`` to ``high`` (each end open or closed)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    v = float(value)
    inside = math.isfinite(v) and (v > low if low_open else v >= low) and (v < high if high_open else v <= high)
    if not inside:
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise ValueError(f"{name} must be a finite number in {interval}, got {value!r}")
    return v


def check_positive_float(name: str, value: Any) -> float:
    return check_real(name, value, 0.0, math.inf, low_open=True, high_open=True)


def check_seed(seed: Any) -> int | None:
    if seed is None:
        return None
    return check_int("seed", seed, minimum=0)


def check_output(output: Any, n_outputs: int) -> str:
    check_choice("output", output, OUTPUTS)
    if output == "softmax" and n_outputs < 2:
        raise ValueError(
            "output='softmax' needs at least 2 output columns (one per class), the network has 1; "
            "for a binary target use output='sigmoid' with loss='bce'"
        )
    return output


def check_loss(loss: Any, output: str) -> str:
    """The loss for this output layer: ``loss`` checked, or the output's default for None."""
    if loss is None:
        return DEFAULT_LOSS[output]
    allowed = LOSSES_FOR_OUTPUT[output]
    if loss not in allowed:
        hint = {
            "softmax": "a softmax output trains with the cross-entropy over its classes",
            "identity": "an identity output trains with the squared error",
            "sigmoid": "for mutually exclusive classes use output='softmax' with loss='cross_entropy'",
        }[output]
        raise ValueError(f"loss must be one of {allowed} for output={output!r}, got {loss!r}: {hint}")
    return loss


def check_optimizer_options(opts: dict[str, Any]) -> dict[str, Any]:
    """The optimizer's and schedule's options checked (each message names its option)."""
    check_choice("optimizer", opts["optimizer"], OPTIMIZERS)
    check_choice("schedule", opts["schedule"], SCHEDULES)
    check_choice("reduction", opts["reduction"], REDUCTIONS)
    return dict(
        opts,
        momentum=check_real("momentum", opts["momentum"], 0.0, 1.0),
        beta_1=check_real("beta_1", opts["beta_1"], 0.0, 1.0, high_open=True),
        beta_2=check_real("beta_2", opts["beta_2"], 0.0, 1.0, high_open=True),
        epsilon=check_real("epsilon", opts["epsilon"], 0.0, math.inf, low_open=True, high_open=True),
        alpha=check_real("alpha", opts["alpha"], 0.0, math.inf, high_open=True),
        power_t=check_real("power_t", opts["power_t"], 0.0, math.inf, high_open=True),
        learning_rate=check_positive_float("learning_rate", opts["learning_rate"]),
    )


def _frame_problem(name: str, a: Any) -> str | None:
    """For a DataFrame: the columns that are not numbers, named (what NumPy's dtype object hides)."""
    dtypes = getattr(a, "dtypes", None)
    columns = getattr(a, "columns", None)
    if dtypes is None or columns is None or not hasattr(dtypes, "items"):
        return None
    bad = [str(col) for col, dt in dtypes.items() if getattr(dt, "kind", "O") not in "biuf"]
    if not bad:
        return None
    return (
        f"{name} has non-numeric column(s) {bad[:10]}{' ...' if len(bad) > 10 else ''}: encode them as numbers "
        "(e.g. pandas.get_dummies or sklearn.preprocessing.OneHotEncoder) or drop them"
    )


def _as_numeric_2d(name: str, a: Any, n_cols: int, allow_1d_column: bool, dtype: Any = None) -> Any:
    """Return ``a`` as a 2-D array of its own module, checked for kind and values (finite, and finite once
    cast to ``dtype``, the model's, where that is given)."""
    if isinstance(a, np.ma.MaskedArray):
        raise TypeError(
            f"{name} is a NumPy masked array: sigmanet would train on the values under the mask. Fill them "
            f"({name}.filled(value)) or drop the masked rows first"
        )
    if is_sparse(a):
        return _sparse_2d(name, a, n_cols, dtype)
    xp = array_namespace(a)
    if xp is np:
        if isinstance(a, (str, bytes)):
            raise TypeError(f"{name} must be a numeric array, got {type(a).__name__}")
        frame = _frame_problem(name, a)
        if frame:
            raise TypeError(frame)
        try:
            arr = np.asarray(a)
        except (ValueError, TypeError) as e:  # ragged nested lists
            raise ValueError(f"{name} could not be read as an array: {e}") from None
        if arr.dtype == object and hasattr(a, "dtypes") and hasattr(a, "to_numpy"):
            # numeric columns of pandas' nullable or pyarrow dtypes (Int64, Float64, float64[pyarrow]): a frame
            # of several comes out of np.asarray as objects; missing values become NaN, refused below
            with contextlib.suppress(TypeError, ValueError):  # text: refused below as dtype object
                arr = a.to_numpy(dtype=np.float64, na_value=np.nan)
    else:
        arr = a
    kind = arr.dtype.kind
    if kind == "c":
        raise TypeError(f"{name} must be real, got complex dtype {arr.dtype}")
    if kind not in "biuf":
        hint = ""
        if name == "y" and kind in "USO":
            hint = (
                ". Class labels need one 0/1 column per class (np.eye(n_classes)[labels], or "
                "sklearn.preprocessing.LabelBinarizer), or use sigmanet.sklearn.SigmaNetClassifier, which takes "
                "labels as they are"
            )
        raise TypeError(f"{name} must be numeric, got dtype {arr.dtype}{hint}")
    if arr.ndim == 1 and allow_1d_column and n_cols == 1:
        arr = arr.reshape(-1, 1)
    if arr.ndim != 2 or arr.shape[1] != n_cols:
        raise ValueError(f"{name} {_shape_problem(name, arr, n_cols)}")
    if arr.shape[0] == 0:
        raise ValueError(f"{name} is empty: it has 0 rows")
    if kind == "f":
        _check_finite(name, arr, xp, dtype)
    return arr


def _sparse_2d(name: str, a: Any, n_cols: int, dtype: Any = None) -> Any:
    """A sparse matrix checked like a dense one (its stored values), as CSR (rows are what batches slice)."""
    if a.ndim != 2 or a.shape[1] != n_cols:
        raise ValueError(f"{name} has shape {a.shape}, but the network takes {n_cols} inputs per row")
    if a.shape[0] == 0:
        raise ValueError(f"{name} is empty: it has 0 rows")
    if a.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be numeric, got dtype {a.dtype}")
    a = a.tocsr()
    xp = array_namespace(a)
    if a.dtype.kind == "f" and not bool(xp.isfinite(a.data).all()):
        raise ValueError(f"{name} holds NaN or infinite stored values; remove or impute them first")
    limit = _range_limit(a.dtype, dtype)
    if limit is not None and a.nnz and float(xp.max(xp.abs(a.data))) > limit:
        raise ValueError(f"{name} {_beyond(dtype, limit)}")
    return a


# Rows checked at a time for NaN and inf: bounds the check's temporary to a few MB.
_FINITE_BLOCK_BYTES = 1 << 22


def _range_limit(have: Any, dtype: Any) -> float | None:
    """The largest magnitude a ``have`` float array can hold that stays finite cast to ``dtype``, or None
    where every finite value does (the same or a narrower float, or no dtype given)."""
    if dtype is None:
        return None
    return _narrowing(np.dtype(have), np.dtype(dtype))


@functools.cache
def _narrowing(have: np.dtype, dtype: np.dtype) -> float | None:
    if have.kind != "f" or dtype.kind != "f" or have.itemsize <= dtype.itemsize:
        return None
    return float(np.finfo(dtype).max)


def _beyond(dtype: Any, limit: float) -> str:
    cure = "Rescale them" + (", or use dtype='float64'" if np.dtype(dtype).itemsize < 8 else "")
    return (
        f"holds values beyond {np.dtype(dtype).name}'s range (magnitude above {limit:.6g}), the network's dtype: "
        f"cast to it they would be infinite. {cure}"
    )


def _check_finite(name: str, arr: Any, xp: Any, dtype: Any = None) -> None:
    """Raise if ``arr`` holds NaN or inf, or values that ``dtype`` cannot hold, looking at one block of rows
    at a time (no full-size temporary)."""
    step = max(1, _FINITE_BLOCK_BYTES // max(1, arr.shape[1] * arr.dtype.itemsize))
    limit = _range_limit(arr.dtype, dtype)
    for r0 in range(0, arr.shape[0], step):
        block = arr[r0 : r0 + step]
        if limit is not None:  # two reductions, no temporary: NaN and inf fail the bounds too
            lo, hi = float(xp.min(block)), float(xp.max(block))
            if -limit <= lo and hi <= limit:
                continue
        if not bool(xp.isfinite(block).all()):
            rows, cols = xp.nonzero(~xp.isfinite(block))
            raise ValueError(
                f"{name} holds NaN or infinite values, the first at row {r0 + int(rows[0])}, column "
                f"{int(cols[0])}; remove or impute them first"
            )
        if limit is not None and float(xp.max(xp.abs(block))) > limit:
            rows, cols = xp.nonzero(xp.abs(block) > limit)
            raise ValueError(
                f"{name} {_beyond(dtype, limit)} (the first at row {r0 + int(rows[0])}, column {int(cols[0])})"
            )


def _shape_problem(name: str, arr: Any, n_cols: int) -> str:
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


def check_inputs(X: Any, n_inputs: int, dtype: Any = None) -> Any:
    """X for predict/fit: 2-D, numeric, finite (also cast to ``dtype``), ``n_inputs`` columns (dense, or
    sparse as CSR)."""
    return _as_numeric_2d("X", X, n_inputs, allow_1d_column=True, dtype=dtype)


def check_targets(y: Any, n_outputs: int, n_rows: int, output: str = "sigmoid", dtype: Any = None) -> Any:
    """y for fit: like X, with values the output layer can reach (in [0, 1] for sigmoid and softmax)."""
    arr = _as_numeric_2d("y", y, n_outputs, allow_1d_column=True, dtype=dtype)
    if is_sparse(arr):
        raise TypeError("y must be a dense array; sparse targets are not supported (call y.toarray())")
    if arr.shape[0] != n_rows:
        raise ValueError(f"X has {n_rows} rows but y has {arr.shape[0]}; they must match")
    if output == "identity":
        return arr
    xp = array_namespace(arr)
    lo, hi = float(xp.min(arr)), float(xp.max(arr))
    if lo < 0 or hi > 1:
        raise ValueError(
            f"y must lie in [0, 1], the range of the {output} output, got values in [{lo:g}, {hi:g}]; "
            "rescale it, e.g. (y - y.min()) / (y.max() - y.min()), or train a regression with output='identity'"
        )
    if output == "softmax":
        sums = arr.sum(axis=1)
        worst = float(xp.max(xp.abs(sums - 1)))
        if worst > 1e-4:
            row = int(xp.argmax(xp.abs(sums - 1)))
            raise ValueError(
                f"with a softmax output each row of y must sum to 1 (one-hot classes or class probabilities); "
                f"row {row} sums to {float(sums[row]):g}"
            )
    return arr


def check_sample_weight(sample_weight: Any, n_rows: int, dtype: Any = None) -> Any:
    """Per-row weights: 1-D, ``n_rows`` long, finite (also cast to ``dtype``), at least 0, not all 0; as an
    array of their library."""
    xp = array_namespace(sample_weight)
    sw = xp.asarray(sample_weight) if xp is not np else np.asarray(sample_weight)
    if sw.dtype.kind not in "biuf":
        raise TypeError(f"sample_weight must be numeric, got dtype {sw.dtype}")
    if sw.ndim == 2 and sw.shape[1] == 1:
        sw = sw.reshape(-1)
    if sw.ndim != 1 or sw.shape[0] != n_rows:
        raise ValueError(f"sample_weight must hold one weight per row of X ({n_rows}), got shape {sw.shape}")
    if not bool(xp.isfinite(sw).all()):
        raise ValueError("sample_weight holds NaN or infinite values")
    limit = _range_limit(sw.dtype, dtype)
    if limit is not None and float(xp.max(xp.abs(sw))) > limit:
        raise ValueError(f"sample_weight {_beyond(dtype, limit)}")
    if bool((sw < 0).any()):
        raise ValueError(f"sample_weight must be at least 0, got a minimum of {float(sw.min()):g}")
    if not bool((sw > 0).any()):
        raise ValueError("sample_weight is 0 for every row: nothing would be learned")
    return sw


NOT_CLASSES_1 = "class_weight needs class targets: y's single column must hold only 0 and 1"
NOT_CLASSES_K = (
    "class_weight needs class targets: each row of y must be one-hot (a single 1 among 0s); "
    "for multi-label targets pass sample_weight instead"
)


def class_labels(y: Any, output: str) -> tuple[Any, int]:
    """Each row's class index, from y's 0/1 columns (one column: the 0/1 value; several: the one-hot column),
    and the number of classes."""
    xp = array_namespace(y)
    if y.shape[1] == 1:
        if not bool(xp.isin(y, xp.asarray([0, 1])).all()):
            raise ValueError(NOT_CLASSES_1)
        return y[:, 0].astype(np.int64), 2
    if not bool(xp.isin(y, xp.asarray([0, 1])).all()) or not bool((y.sum(axis=1) == 1).all()):
        raise ValueError(NOT_CLASSES_K)
    return y.argmax(axis=1), y.shape[1]


def check_class_weight(class_weight: Any) -> str | dict[int, float]:
    """``class_weight`` as "balanced" or ``{class index: weight}`` (integer keys, finite weights >= 0), checked
    before y is looked at."""
    if isinstance(class_weight, str):
        return check_choice("class_weight", class_weight, ("balanced",))
    if not isinstance(class_weight, dict):
        raise TypeError(f"class_weight must be a dict {{class: weight}} or 'balanced', got {class_weight!r}")
    table = {}
    for key, weight in class_weight.items():
        try:
            c = operator.index(key)
        except TypeError:
            raise TypeError(f"class_weight keys must be class indices (integers), got {key!r}") from None
        table[c] = check_real(f"class_weight[{c}]", weight, 0.0, math.inf, high_open=True)
    return table


def class_table(class_weight: str | dict[int, float], counts: np.ndarray, n_rows: int) -> np.ndarray:
    """Each class's weight, from a checked ``class_weight`` and the rows of each class (host ``counts``), as
    scikit-learn reads it: "balanced" is ``n_rows / (classes present * rows of the class)``."""
    if isinstance(class_weight, str):
        present = counts > 0
        return np.where(present, n_rows / (int(present.sum()) * np.maximum(counts, 1)), 0.0)
    table = np.ones(len(counts))
    for c, weight in class_weight.items():
        if not 0 <= c < len(counts) or counts[c] == 0:
            have = [i for i in range(len(counts)) if counts[i] > 0]
            raise ValueError(f"class_weight names class {c}, which y does not have; y's classes are {have}")
        table[c] = weight
    return table


def class_sample_weights(class_weight: Any, y: Any, output: str) -> Any:
    """Per-row weights from ``class_weight`` ({class index: weight} or "balanced"), as scikit-learn reads it."""
    xp = array_namespace(y)
    checked = check_class_weight(class_weight)
    labels, n_classes = class_labels(y, output)
    counts = xp.bincount(labels, minlength=n_classes)
    table = class_table(checked, np.asarray(counts if xp is np else counts.get()), y.shape[0])
    return xp.asarray(table)[labels]
