"""Datasets: the seed's table and deterministic scaled-up tables.

``make_table(n, d, o)`` draws n rows of d inputs in [0, 1) (the last column is
the constant 1 that plays the seed's bias role) and o 0/1 targets that a hidden
layer can learn but a single layer cannot: target j is the XOR of two random
half-space tests, with a few labels flipped as noise. Rows are generated in
chunks straight into the output arrays, so nothing bigger than the result is
ever held, and the result depends only on (n, d, o, seed, noise), not on the
chunk size.
"""

from __future__ import annotations

import numpy as np

from . import _validation as v

_CHUNK = 1 << 16


def seed_table(dtype="float64"):
    """The seed's X (4 x 3) and y (4 x 1)."""
    dt = v.check_dtype(dtype)
    X = np.array([[0, 0, 1], [0, 1, 1], [1, 0, 1], [1, 1, 1]], dtype=dt)
    y = np.array([[0], [1], [1], [0]], dtype=dt)
    return X, y


def make_table(n, d=3, o=1, *, seed=0, noise=0.02, dtype="float64"):
    """A deterministic n x d -> n x o table a hidden layer can learn.

    Parameters
    ----------
    n : int
        Rows (4 to millions).
    d : int, default 3
        Input columns, at least 2 (the last is the constant 1).
    o : int, default 1
        Output columns.
    seed : int, default 0
    noise : float, default 0.02
        Fraction of labels flipped, in [0, 0.5).
    dtype : {"float64", "float32"}

    Returns
    -------
    X : ndarray (n, d), y : ndarray (n, o)
    """
    n = v.check_int("n", n)
    d = v.check_int("d", d, minimum=2)
    o = v.check_int("o", o)
    seed = v.check_int("seed", seed, minimum=0)
    if not 0 <= noise < 0.5:
        raise ValueError(f"noise must be in [0, 0.5), got {noise!r}")
    dt = v.check_dtype(dtype)
    rs = np.random.default_rng([seed, 0])
    # two half-space tests per output, over the d-1 varying inputs
    u = rs.standard_normal((d - 1, o))
    w = rs.standard_normal((d - 1, o))
    X = np.empty((n, d), dt)
    y = np.empty((n, o), dt)
    for c, start in enumerate(range(0, n, _CHUNK)):
        stop = min(start + _CHUNK, n)
        g = np.random.default_rng([seed, 1, c])  # one stream per chunk: independent of how far we go
        xc = g.random((stop - start, d - 1))
        centred = xc - 0.5
        label = (centred @ u > 0) ^ (centred @ w > 0)
        label ^= g.random((stop - start, o)) < noise
        X[start:stop, :-1] = xc
        X[start:stop, -1] = 1
        y[start:stop] = label
    return X, y


def read_table(path, target=None):
    """Read a user's table for ``sigmanet train`` / ``predict``.

    Parameters
    ----------
    path : str or Path
        A CSV with a header row; a .npz holding ``X`` (and ``y``); or a 2-D .npy.
    target : list of str, optional
        CSV: names of the target columns (the others are inputs). .npy: column
        indices (e.g. ``["-1"]``). .npz: ignored (``y`` is the target).
        None: every column is an input (prediction).

    Returns
    -------
    X, y, input_names, target_names
        ``y`` is None when there is no target.
    """
    import os

    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"data file {path!r} does not exist")
    lower = path.lower()
    if lower.endswith(".npz"):
        return _read_npz(path, target)
    if lower.endswith(".npy"):
        table = _load_npy(path)
        names = [str(i) for i in range(table.shape[1])]
        return _split(table, names, target, path, by_index=True)
    names, table = _read_csv(path)
    return _split(table, names, target, path, by_index=False)


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
        raise error(f"{path!r} is not {what}: {type(e).__name__}: {e}") from None


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


def _read_csv(path):
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
                rows.append([float(c) for c in row])
            except ValueError:
                bad = next(i for i, c in enumerate(row) if not _is_float(c))
                raise ValueError(f"{path!r} line {line_no}, column {header[bad]!r}: {row[bad]!r} is not a number") \
                    from None
    if not rows:
        raise ValueError(f"{path!r} has a header but no data rows")
    return header, np.array(rows, dtype=np.float64)


def _is_float(text):
    try:
        float(text)
        return True
    except ValueError:
        return False


def _split(table, names, target, path, by_index):
    if target is None:
        return table, None, names, None
    idx = []
    for t in target:
        if by_index:
            try:
                i = int(t)
            except ValueError:
                raise ValueError(f"--target for a .npy table takes column indices, got {t!r}") from None
            if not -len(names) <= i < len(names):
                raise ValueError(f"--target column {i} is out of range for {len(names)} columns")
            idx.append(i % len(names))
        else:
            if t not in names:
                raise ValueError(f"--target column {t!r} is not in {path!r}; its columns are {names}")
            idx.append(names.index(t))
    if len(set(idx)) != len(idx):
        raise ValueError(f"--target names a column twice: {target}")
    inputs = [i for i in range(len(names)) if i not in idx]
    if not inputs:
        raise ValueError("every column is a target: leave at least one input column")
    return (table[:, inputs], table[:, idx], [names[i] for i in inputs], [names[i] for i in idx])
