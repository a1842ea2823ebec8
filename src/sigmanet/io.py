"""Users' tables for ``sigmanet train`` and ``predict``: CSV, .npz and .npy.

Every reader turns a damaged or malformed file into a ``ValueError`` that
names the file (and, for CSV, the line and column); the OS's own file errors
pass through unchanged.
"""

from __future__ import annotations

import math
import os

import numpy as np


def read_table(path, target=None, inputs=None, exclude=None):
    """Read a user's table for ``sigmanet train`` / ``predict``.

    Parameters
    ----------
    path : str or Path
        A CSV with a header row; a .npz holding ``X`` (and ``y``); or a 2-D .npy.
    target : list of str, optional
        CSV: names of the target columns. .npy: column indices (e.g.
        ``["-1"]``). .npz: ignored (``y`` is the target). None: no target
        (prediction).
    inputs : list of str, optional
        The input columns (CSV names or .npy indices); default: every column
        that is neither a target nor excluded.
    exclude : list of str, optional
        Columns to leave out (ids, leaks).

    Returns
    -------
    X, y, input_names, target_names
        ``y`` is None when there is no target.

    Raises
    ------
    ValueError
        For a malformed table (naming the line and column), an unknown
        column, a column named twice, or a target that is also an input.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"data file {path!r} does not exist")
    lower = path.lower()
    if lower.endswith(".npz"):
        return _read_npz(path, target)
    if lower.endswith(".npy"):
        table = _load_npy(path)
        names = [str(i) for i in range(table.shape[1])]
        return _split(table, names, path, target, inputs, exclude, by_index=True)
    names, table = read_csv(path)
    return _split(table, names, path, target, inputs, exclude, by_index=False)


def load_arrays(path, what: str, error: type[Exception] = ValueError):
    """``np.load(path, allow_pickle=False)``, with a .npz's contents read into a dict.

    A damaged file can make zipfile, zlib or NumPy raise almost anything
    (BadZipFile, EOFError, zlib.error, NotImplementedError for a flipped flag
    bit, ValueError...); all of them become ``error`` saying ``path`` is not
    ``what``. The OS's own file errors pass through unchanged.
    """
    try:
        loaded = np.load(path, allow_pickle=False)
        if isinstance(loaded, np.lib.npyio.NpzFile):
            with loaded:
                return {name: loaded[name] for name in loaded.files}
        return loaded
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        raise
    except Exception as e:  # noqa: BLE001 - see the docstring
        if "pickle" in str(e):  # NumPy takes any file without its magic bytes for a pickle
            detail = "it is not a NumPy .npz or .npy file (and pickled data is never loaded)"
        else:
            detail = f"{type(e).__name__}: {e}"
        raise error(f"{path!r} is not {what}: {detail}") from None


def _load_npy(path):
    a = load_arrays(path, "a readable .npy array")
    if not isinstance(a, np.ndarray) or a.ndim != 2:
        raise ValueError(f"{path!r} must hold a 2-D table, got {getattr(a, 'shape', 'an .npz archive')}")
    return a


def _read_npz(path, target):
    arrays = load_arrays(path, "a readable .npz file")
    if not isinstance(arrays, dict) or "X" not in arrays:
        held = sorted(arrays) if isinstance(arrays, dict) else "one bare array"
        raise ValueError(f"{path!r} must hold an array named 'X' (and 'y' for training); it holds {held}")
    X = arrays["X"]
    y = arrays.get("y")
    if X.ndim != 2:
        raise ValueError(f"X in {path!r} must be 2-D, got shape {X.shape}")
    if y is not None and y.ndim == 1:
        y = y.reshape(-1, 1)
    names = [f"x{i}" for i in range(X.shape[1])]
    tnames = None if y is None else [f"y{i}" for i in range(y.shape[1])]
    return X, y, names, tnames


def read_csv(path) -> tuple[list[str], np.ndarray]:
    """A CSV with a header row, as (column names, float64 array).

    pyarrow's multithreaded reader parses it straight into columns when it is
    installed (extra ``fast-io``); the standard library's ``csv`` module is
    the fallback. Either way, a malformed file or a NaN or infinite value is
    reported with its line and column, by the standard library's reader,
    which reads the file again only then.
    """
    try:
        names, table = _read_csv_arrow(path)
    except ImportError:
        return _read_csv_stdlib(path)
    except Exception:  # noqa: BLE001 - any parse failure: let the careful reader say where
        return _read_csv_stdlib(path)
    if not np.isfinite(table).all():
        return _read_csv_stdlib(path)
    return names, table


def _read_csv_arrow(path):
    import pyarrow.types as patypes
    from pyarrow import csv as pacsv

    table = pacsv.read_csv(path, parse_options=pacsv.ParseOptions(newlines_in_values=False))
    names = [n.strip() for n in table.column_names]
    if len(set(names)) != len(names) or table.num_rows == 0:
        raise ValueError("let the standard reader explain")
    out = np.empty((table.num_rows, table.num_columns), np.float64)
    for j, column in enumerate(table.columns):  # one column at a time: peak is the table plus the array
        numeric = patypes.is_integer(column.type) or patypes.is_floating(column.type)
        if not numeric or column.null_count:
            raise ValueError("not all numeric")
        out[:, j] = column.to_numpy()
    return names, out


def _read_csv_stdlib(path):
    import csv

    with open(path, newline="") as f:
        reader = csv.reader(f)
        try:
            header = next(reader)
        except StopIteration:
            raise ValueError(f"{path!r} is empty: expected a header row, then data rows") from None
        header = [h.strip() for h in header]
        if len(set(header)) != len(header):
            raise ValueError(f"{path!r} has repeated column names in its header: {header}")
        rows = []
        for line_no, row in enumerate(reader, start=2):
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) != len(header):
                raise ValueError(f"{path!r} line {line_no}: {len(row)} fields, but the header has {len(header)}")
            try:
                values = [float(c) for c in row]
            except ValueError:
                bad = next(i for i, c in enumerate(row) if not _is_float(c))
                raise ValueError(f"{path!r} line {line_no}, column {header[bad]!r}: {row[bad]!r} is not a number") \
                    from None
            if not all(math.isfinite(x) for x in values):
                bad = next(i for i, x in enumerate(values) if not math.isfinite(x))
                raise ValueError(f"{path!r} line {line_no}, column {header[bad]!r}: {row[bad].strip()!r} is not a "
                                 "finite number; remove or impute it first")
            rows.append(values)
    if not rows:
        raise ValueError(f"{path!r} has a header but no data rows")
    return header, np.array(rows, dtype=np.float64)


def _is_float(text):
    try:
        float(text)
        return True
    except ValueError:
        return False


def _columns(option, refs, names, path, by_index):
    """Indices of the columns ``refs`` names (CSV names, or .npy indices), each at most once."""
    idx = []
    for ref in refs:
        if by_index:
            try:
                i = int(ref)
            except ValueError:
                raise ValueError(f"{option} for a .npy table takes column indices, got {ref!r}") from None
            if not -len(names) <= i < len(names):
                raise ValueError(f"{option} column {i} is out of range for {len(names)} columns")
            idx.append(i % len(names))
        else:
            if ref not in names:
                raise ValueError(f"{option} column {ref!r} is not in {path!r}; its columns are {names}")
            idx.append(names.index(ref))
    twice = sorted({names[i] for i in idx if idx.count(i) > 1})
    if twice:
        raise ValueError(f"{option} names column(s) {twice} more than once")
    return idx


def _split(table, names, path, target, inputs, exclude, by_index):
    targets = _columns("--target", target or [], names, path, by_index)
    dropped = _columns("--exclude", exclude or [], names, path, by_index)
    both = sorted(names[i] for i in set(targets) & set(dropped))
    if both:
        raise ValueError(f"column(s) {both} are both --target and --exclude")
    if inputs:
        chosen = _columns("--inputs", inputs, names, path, by_index)
        for other, cols in (("--target", targets), ("--exclude", dropped)):
            clash = sorted(names[i] for i in set(chosen) & set(cols))
            if clash:
                raise ValueError(f"column(s) {clash} are both --inputs and {other}: a target that is also an "
                                 "input leaks the answer into the inputs" if other == "--target" else
                                 f"column(s) {clash} are both --inputs and {other}")
    else:
        chosen = [i for i in range(len(names)) if i not in targets and i not in dropped]
    if not chosen:
        raise ValueError("no input column is left: every column is a target or excluded")
    y = table[:, targets] if target else None
    return (table[:, chosen], y, [names[i] for i in chosen], [names[i] for i in targets] if target else None)
