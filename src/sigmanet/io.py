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
        A CSV with a header row; a Parquet file (``.parquet``/``.pq``, extra
        ``fast-io``); a .npz holding ``X`` (and ``y``); or a 2-D .npy, opened
        memory-mapped: the inputs and targets are views of the file where
        they are contiguous column ranges (the default: targets last), so
        nothing is read until it is used.
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
    if lower.endswith((".parquet", ".pq")):
        names, table = read_parquet(path)
        return _split(table, names, path, target, inputs, exclude, by_index=False)
    names, table = read_csv(path)
    return _split(table, names, path, target, inputs, exclude, by_index=False)


def load_arrays(path, what: str, error: type[Exception] = ValueError, mmap_mode=None):
    """``np.load(path, allow_pickle=False)``, with a .npz's contents read into a dict.

    A damaged file can make zipfile, zlib or NumPy raise almost anything
    (BadZipFile, EOFError, zlib.error, NotImplementedError for a flipped flag
    bit, ValueError...); all of them become ``error`` saying ``path`` is not
    ``what``. The OS's own file errors pass through unchanged, and the file
    is closed whatever happens.
    """
    try:
        if mmap_mode is not None:
            return np.load(path, allow_pickle=False, mmap_mode=mmap_mode)
        with open(path, "rb") as f:
            loaded = np.load(f, allow_pickle=False)
            if isinstance(loaded, np.lib.npyio.NpzFile):
                with loaded:
                    return {name: loaded[name] for name in loaded.files}
            return loaded
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        raise
    except Exception as e:
        if "pickle" in str(e):  # NumPy takes any file without its magic bytes for a pickle
            detail = "it is not a NumPy .npz or .npy file (and pickled data is never loaded)"
        else:
            detail = f"{type(e).__name__}: {e}"
        raise error(f"{path!r} is not {what}: {detail}") from None


def _load_npy(path):
    a = load_arrays(path, "a readable .npy array", mmap_mode="r")
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
        return _read_csv_arrow(path)
    except ImportError:
        return _read_csv_stdlib(path)
    except Exception:
        return _read_csv_stdlib(path)


def read_parquet(path) -> tuple[list[str], np.ndarray]:
    """A Parquet file's numeric columns as (names, float64 array), through pyarrow (extra ``fast-io``)."""
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise ValueError(f"reading {path!r} needs pyarrow: pip install 'sigmanet[fast-io]'") from None
    try:
        table = pq.read_table(path)
    except Exception as e:
        raise ValueError(f"{path!r} is not a readable Parquet file: {type(e).__name__}: {e}") from None
    names, out, problem = _arrow_columns(table)
    if problem:
        raise ValueError(f"{path!r}: {problem}")
    return names, out


def _arrow_columns(table, allow_empty=False):
    """(names, float64 array, problem or None) from a pyarrow Table or RecordBatch, one column at a time."""
    import pyarrow.types as patypes

    names = [n.strip() for n in table.column_names]
    if len(set(names)) != len(names):
        return names, None, f"repeated column names: {names}"
    if table.num_rows == 0 and not allow_empty:
        return names, None, "no data rows"
    out = np.empty((table.num_rows, table.num_columns), np.float64)
    for j, column in enumerate(table.columns):  # one column at a time: peak is the table plus the array
        if not (patypes.is_integer(column.type) or patypes.is_floating(column.type) or patypes.is_boolean(column.type)):
            return names, None, f"column {names[j]!r} is not numeric ({column.type})"
        if column.null_count:
            return names, None, f"column {names[j]!r} has {column.null_count} missing value(s)"
        out[:, j] = column.to_numpy(zero_copy_only=False)
    if not np.isfinite(out).all():
        rows, cols = np.nonzero(~np.isfinite(out))
        return names, None, f"row {int(rows[0])}, column {names[int(cols[0])]!r} is not a finite number"
    return names, out, None


# pyarrow's streaming reader: 1 MiB blocks, one thread. Measured on 1M x 21 (and 500K x 21)
# CSVs: the same read rate as its multithreaded whole-file reader here (2 cores), with a peak of
# about 2.3x the parsed array instead of 4x (docs/benchmarks.md).
_ARROW_BLOCK = 1 << 20


def _read_csv_arrow(path):
    """Parsed by pyarrow, batch by batch, straight into the float64 array; problems raise ValueError.

    The array is sized from the first batch's rows per byte (5% slack; pages
    never written are never resident) and grown if the estimate falls short.
    """
    from pyarrow import csv as pacsv

    reader = pacsv.open_csv(path, read_options=pacsv.ReadOptions(block_size=_ARROW_BLOCK, use_threads=False))
    size = os.path.getsize(path)
    names, out, n = None, None, 0
    for batch in reader:
        names_b, part, problem = _arrow_columns(batch, allow_empty=True)
        if problem:
            raise ValueError(problem)
        if out is None:
            names = names_b
            out = np.empty((int(size / _ARROW_BLOCK * batch.num_rows * 1.05) + batch.num_rows, len(names)))
        if n + part.shape[0] > out.shape[0]:
            grown = np.empty((int((n + part.shape[0]) * 1.25), out.shape[1]))
            grown[:n] = out[:n]
            out = grown
        out[n : n + part.shape[0]] = part
        n += part.shape[0]
    if out is None or n == 0:
        raise ValueError("no data rows")
    return names, out[:n]


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
                raise ValueError(
                    f"{path!r} line {line_no}, column {header[bad]!r}: {row[bad]!r} is not a number"
                ) from None
            if not all(math.isfinite(x) for x in values):
                bad = next(i for i, x in enumerate(values) if not math.isfinite(x))
                raise ValueError(
                    f"{path!r} line {line_no}, column {header[bad]!r}: {row[bad].strip()!r} is not a "
                    "finite number; remove or impute it first"
                )
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
                raise ValueError(
                    f"column(s) {clash} are both --inputs and {other}: a target that is also an "
                    "input leaks the answer into the inputs"
                    if other == "--target"
                    else f"column(s) {clash} are both --inputs and {other}"
                )
    else:
        chosen = [i for i in range(len(names)) if i not in targets and i not in dropped]
    if not chosen:
        raise ValueError("no input column is left: every column is a target or excluded")
    y = _take(table, targets) if target else None
    return (_take(table, chosen), y, [names[i] for i in chosen], [names[i] for i in targets] if target else None)


def _take(table, columns):
    """The columns of ``table``: a view where they are a contiguous increasing range (no copy of a memmap)."""
    if columns == list(range(columns[0], columns[0] + len(columns))):
        return table[:, columns[0] : columns[0] + len(columns)]
    return table[:, columns]
