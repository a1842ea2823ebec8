"""Users' tables for ``sigmanet train`` and ``predict``: CSV, Parquet, .npz and .npy.

Every reader turns a damaged or malformed file into a ``ValueError`` that
names the file (and, for CSV, the line and column); the OS's own file errors
pass through unchanged.

:func:`read_columns` reads only the columns it is asked for, straight into
one C-contiguous float64 array of inputs and one of targets (no full-width
table, no copy to make the inputs contiguous), so ``sigmanet train`` can own
and scale its inputs in place. A target column that is not numeric comes
back as text (class labels); id columns to pass through (``--keep``) come
back as text too, and other columns are never parsed.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Table:
    """A user's table as :func:`read_columns` reads it."""

    X: np.ndarray  # (n_rows, n_inputs) float64
    y: np.ndarray | None  # (n_rows, n_targets) float64; (n_rows,) str for one text (label) column; None
    input_names: list[str]
    target_names: list[str] | None
    kept: dict[str, np.ndarray] = field(default_factory=dict)  # --keep columns, as (n_rows,) str arrays


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
        ``["-1"]``). .npz: refused (its ``y`` is the target). None: no target
        (prediction).
    inputs : list of str, optional
        The input columns (CSV names or .npy indices); default: every column
        that is neither a target nor excluded.
    exclude : list of str, optional
        Columns to leave out (ids, leaks); in a CSV or Parquet file they are
        not parsed at all, so they may hold text.

    Returns
    -------
    X, y, input_names, target_names
        ``y`` is None when there is no target, and a 1-D array of strings
        when the one target column of a CSV or Parquet file holds text
        (class labels).

    Raises
    ------
    ValueError
        For a malformed table (naming the line and column), an unknown
        column, a column named twice, or a target that is also an input.
    """
    t = read_columns(path, target, inputs, exclude)
    return t.X, t.y, t.input_names, t.target_names


def read_columns(path, target=None, inputs=None, exclude=None, keep=None) -> Table:
    """:func:`read_table`, plus ``keep``: columns returned as text in ``Table.kept`` (ids to pass through).

    CSV and Parquet files are read column by column into the arrays
    returned: only the input, target and kept columns are parsed.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"data file {path!r} does not exist")
    keep = list(keep or [])
    lower = path.lower()
    if lower.endswith(".npz"):
        if keep:
            raise ValueError(f"--keep needs named columns; {path!r} is a .npz (X and y only)")
        if target or inputs or exclude:
            given = "--target" if target else "--inputs" if inputs else "--exclude"
            raise ValueError(
                f"{given} picks columns of a table; {path!r} is a .npz, whose X and y are the inputs and target"
            )
        X, y, names, tnames = _read_npz(path, target)
        return Table(X, y, names, tnames)
    if lower.endswith(".npy"):
        table = _load_npy(path)
        names = [str(i) for i in range(table.shape[1])]
        X, y, input_names, target_names = _split(table, names, path, target, inputs, exclude, by_index=True)
        kept = {names[i]: table[:, i].astype(str) for i in _columns("--keep", keep, names, path, True)}
        return Table(X, y, input_names, target_names, kept)
    if lower.endswith((".parquet", ".pq")):
        return _read_parquet_columns(path, target, inputs, exclude, keep)
    raw = _csv_header(path)
    names = [n.strip() for n in raw]
    chosen, targets = _select(names, path, target, inputs, exclude, by_index=False)
    kept = _columns("--keep", keep, names, path, False)
    try:
        X, y, text, kept_values = _read_selected_arrow(path, raw, chosen, targets, kept)
    except ImportError:
        X, y, text, kept_values = _read_selected_stdlib(path, names, chosen, targets, kept)
    except Exception:  # a bad value, or a column typed by its first block: the standard library says where
        X, y, text, kept_values = _read_selected_stdlib(path, names, chosen, targets, kept)
    return Table(
        X,
        text if text is not None else y,
        [names[i] for i in chosen],
        [names[i] for i in targets] if target else None,
        {names[i]: v for i, v in zip(kept, kept_values)},
    )


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


def _select(names, path, target, inputs, exclude, by_index):
    """(input column indices, target column indices), each checked: no overlap, no column twice."""
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
    return chosen, targets


def _split(table, names, path, target, inputs, exclude, by_index):
    chosen, targets = _select(names, path, target, inputs, exclude, by_index)
    y = _take(table, targets) if target else None
    return (_take(table, chosen), y, [names[i] for i in chosen], [names[i] for i in targets] if target else None)


def _csv_header(path) -> list[str]:
    """The header row's names as written (the standard library's parser: quoting as the rows have it)."""
    import csv

    with open(path, newline="") as f:
        try:
            header = next(csv.reader(f))
        except StopIteration:
            raise ValueError(f"{path!r} is empty: expected a header row, then data rows") from None
    names = [h.strip() for h in header]
    if len(set(names)) != len(names):
        raise ValueError(f"{path!r} has repeated column names in its header: {names}")
    return header


def _is_numeric(arrow_type) -> bool:
    import pyarrow.types as patypes

    return bool(patypes.is_integer(arrow_type) or patypes.is_floating(arrow_type) or patypes.is_boolean(arrow_type))


class _Filler:
    """Rows appended batch by batch into one preallocated float64 array (grown by 25% when the estimate falls short).

    Pages past the rows written are never touched, so the estimate's slack costs no memory."""

    def __init__(self, rows: int, columns: int):
        self.out, self.n = np.empty((rows, columns)), 0

    def add(self, part: np.ndarray) -> None:
        if self.n + part.shape[0] > self.out.shape[0]:
            grown = np.empty((int((self.n + part.shape[0]) * 1.25), self.out.shape[1]))
            grown[: self.n] = self.out[: self.n]
            self.out = grown
        self.out[self.n : self.n + part.shape[0]] = part
        self.n += part.shape[0]

    def rows(self) -> np.ndarray:
        return self.out[: self.n]


def _numeric_block(batch, columns, names):
    """The named columns of a pyarrow batch as one float64 block; ValueError for text, nulls, NaN or inf."""
    part = np.empty((batch.num_rows, len(columns)))
    for j, (c, name) in enumerate(zip(columns, names)):
        column = batch.column(c)
        if not _is_numeric(column.type):
            raise ValueError(f"column {name!r} is not numeric ({column.type})")
        if column.null_count:
            raise ValueError(f"column {name!r} has {column.null_count} missing value(s)")
        part[:, j] = column.to_numpy(zero_copy_only=False)
    if not np.isfinite(part).all():
        raise ValueError("a value is not a finite number")
    return part


def _text_block(column, name, labels):
    if column.null_count:
        raise ValueError(f"column {name!r} has {column.null_count} missing value(s)")
    values = np.asarray(column.to_numpy(zero_copy_only=False)).astype(str)
    if labels and (np.char.str_len(np.char.strip(values)) == 0).any():
        raise ValueError(f"column {name!r} has an empty label")
    return np.char.strip(values) if labels else values


def _read_selected_arrow(path, raw, chosen, targets, kept):
    """(X, numeric y or None, text y or None, [kept text arrays]) parsed by pyarrow's streaming reader.

    1 MiB blocks, one thread: measured on 1M x 21 (and 500K x 21) CSVs, the same read rate as the
    multithreaded whole-file reader here (2 cores), with a lower peak (docs/benchmarks.md)."""
    import pyarrow as pa
    from pyarrow import csv as pacsv

    wanted = sorted(set(chosen) | set(targets) | set(kept))
    text_only = {raw[i]: pa.string() for i in kept if i not in chosen and i not in targets}
    reader = pacsv.open_csv(
        path,
        read_options=pacsv.ReadOptions(block_size=_ARROW_BLOCK, use_threads=False),
        convert_options=pacsv.ConvertOptions(include_columns=[raw[i] for i in wanted], column_types=text_only),
    )
    size = os.path.getsize(path)
    names = [n.strip() for n in raw]
    X = y = None
    text: list[np.ndarray] | None = None
    kept_parts: list[list[np.ndarray]] = [[] for _ in kept]
    for batch in reader:
        if X is None:
            estimate = int(size / _ARROW_BLOCK * batch.num_rows * 1.05) + batch.num_rows
            X = _Filler(estimate, len(chosen))
            labels = len(targets) == 1 and not _is_numeric(batch.column(raw[targets[0]]).type)
            text = [] if labels else None
            y = None if labels or not targets else _Filler(estimate, len(targets))
        X.add(_numeric_block(batch, [raw[i] for i in chosen], [names[i] for i in chosen]))
        if text is not None:
            text.append(_text_block(batch.column(raw[targets[0]]), names[targets[0]], True))
        elif y is not None:
            y.add(_numeric_block(batch, [raw[i] for i in targets], [names[i] for i in targets]))
        for parts, i in zip(kept_parts, kept):
            parts.append(_text_block(batch.column(raw[i]), names[i], False))
    if X is None or X.n == 0:
        raise ValueError("no data rows")
    return (
        X.rows(),
        None if y is None else y.rows(),
        None if text is None else np.concatenate(text),
        [np.concatenate(p) for p in kept_parts],
    )


def _read_selected_stdlib(path, names, chosen, targets, kept):
    """As :func:`_read_selected_arrow`, by the standard library's reader, naming the line and column of a bad
    value. A target column with a cell that is not a number is read as text (class labels)."""
    import csv

    rows, target_cells, kept_cells, line_nos = [], [], [], []
    with open(path, newline="") as f:
        reader = csv.reader(f)
        next(reader)
        for line_no, row in enumerate(reader, start=2):
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) != len(names):
                raise ValueError(f"{path!r} line {line_no}: {len(row)} fields, but the header has {len(names)}")
            rows.append([_number(path, line_no, names[i], row[i]) for i in chosen])
            line_nos.append(line_no)
            target_cells.append([row[i] for i in targets])
            kept_cells.append([row[i] for i in kept])
    if not rows:
        raise ValueError(f"{path!r} has a header but no data rows")
    X = np.array(rows, dtype=np.float64)
    y = text = None
    if targets:
        labels = len(targets) == 1 and not all(_is_float(c[0]) for c in target_cells)
        if labels:
            text = np.array([c[0].strip() for c in target_cells], dtype=str)
            empty = np.flatnonzero(np.char.str_len(text) == 0)
            if empty.size:
                raise ValueError(
                    f"{path!r} line {line_nos[empty[0]]}, column {names[targets[0]]!r}: the label is empty"
                )
        else:
            y = np.array(
                [
                    [_number(path, line_no, names[i], c) for i, c in zip(targets, cells)]
                    for line_no, cells in zip(line_nos, target_cells)
                ],
                dtype=np.float64,
            )
    kept_values = [np.array([c[j] for c in kept_cells], dtype=str) for j in range(len(kept))]
    return X, y, text, kept_values


def _number(path, line_no, name, cell):
    try:
        x = float(cell)
    except ValueError:
        raise ValueError(f"{path!r} line {line_no}, column {name!r}: {cell!r} is not a number") from None
    if not math.isfinite(x):
        raise ValueError(
            f"{path!r} line {line_no}, column {name!r}: {cell.strip()!r} is not a finite number; "
            "remove or impute it first"
        )
    return x


def _read_parquet_columns(path, target, inputs, exclude, keep):
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise ValueError(f"reading {path!r} needs pyarrow: pip install 'sigmanet[fast-io]'") from None
    try:
        schema = pq.read_schema(path)
    except Exception as e:
        raise ValueError(f"{path!r} is not a readable Parquet file: {type(e).__name__}: {e}") from None
    raw = list(schema.names)
    names = [n.strip() for n in raw]
    if len(set(names)) != len(names):
        raise ValueError(f"{path!r}: repeated column names: {names}")
    chosen, targets = _select(names, path, target, inputs, exclude, by_index=False)
    kept = _columns("--keep", keep, names, path, False)
    wanted = sorted(set(chosen) | set(targets) | set(kept))
    try:
        table = pq.read_table(path, columns=[raw[i] for i in wanted])
    except Exception as e:
        raise ValueError(f"{path!r} is not a readable Parquet file: {type(e).__name__}: {e}") from None
    if table.num_rows == 0:
        raise ValueError(f"{path!r}: no data rows")
    try:
        X = _numeric_block(table, [raw[i] for i in chosen], [names[i] for i in chosen])
        y = None
        if len(targets) == 1 and not _is_numeric(table.column(raw[targets[0]]).type):
            y = _text_block(table.column(raw[targets[0]]), names[targets[0]], True)
        elif targets:
            y = _numeric_block(table, [raw[i] for i in targets], [names[i] for i in targets])
        kept_values = {names[i]: _text_block(table.column(raw[i]), names[i], False) for i in kept}
    except ValueError as e:
        raise ValueError(f"{path!r}: {e}") from None
    return Table(X, y, [names[i] for i in chosen], [names[i] for i in targets] if target else None, kept_values)


def _take(table, columns):
    """The columns of ``table``: a view where they are a contiguous increasing range (no copy of a memmap)."""
    if columns == list(range(columns[0], columns[0] + len(columns))):
        return table[:, columns[0] : columns[0] + len(columns)]
    return table[:, columns]


def column_names(path) -> list[str] | None:
    """The column names of a CSV or Parquet file (read from its header alone); None for .npy and .npz."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"data file {path!r} does not exist")
    lower = path.lower()
    if lower.endswith((".npy", ".npz")):
        return None
    if lower.endswith((".parquet", ".pq")):
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise ValueError(f"reading {path!r} needs pyarrow: pip install 'sigmanet[fast-io]'") from None
        try:
            return [n.strip() for n in pq.read_schema(path).names]
        except Exception as e:
            raise ValueError(f"{path!r} is not a readable Parquet file: {type(e).__name__}: {e}") from None
    return [n.strip() for n in _csv_header(path)]
