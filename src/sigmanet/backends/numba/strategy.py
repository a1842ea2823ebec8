"""Which numba engine trains a fit: by size at the ends, by a measurement in between, cached on disk.

Why measured and cached: between the small networks (where the loop engine's
scalar code wins: a BLAS call costs more than the arithmetic) and the large
tables (where BLAS wins), the crossover moves with the CPU and the shape. A
measurement on a busy 2-core machine is noisy, and each new process used to
pay it again (about a second for a middle-sized net). So the candidates are
timed in interleaved rounds, the minimum of each kept (a transient load only
ever slows a run), and the choice is written to a small JSON file beside the
compile cache, keyed by everything it depends on: the CPU, the library
versions, the threads, the dtype, the layer sizes and the rows per step. A
later process on the same machine reads it back at no cost.

``SIGMANET_NUMBA_STRATEGY`` (or a backend name such as ``"numba:compiled"``)
pins one engine; an unknown value is refused with the list of engines.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ...errors import BackendUnavailableError

STRATEGIES = ("fused", "specialised", "compiled")
STRATEGY_ENV = "SIGMANET_NUMBA_STRATEGY"
# Multiply-adds per step: up to SMALL_LIMIT the loop engine always wins, from LARGE_LIMIT the
# compiled engine always does (docs/perf-notes.md); in between it is measured.
SMALL_LIMIT = 1 << 14
LARGE_LIMIT = 1 << 24
# Networks this narrow and shallow get the specialised loop engine when small.
SPECIALISE_MAX_WIDTH = 16
SPECIALISE_MAX_LAYERS = 4
CACHE_FILE = "numba-strategies.json"


def pinned() -> str | None:
    """The engine ``$SIGMANET_NUMBA_STRATEGY`` pins, or None; an unknown value raises at once."""
    value = os.environ.get(STRATEGY_ENV, "").strip().lower()
    if not value:
        return None
    if value not in STRATEGIES:
        raise BackendUnavailableError(
            f"${STRATEGY_ENV}={value!r} is not a numba engine; use one of {list(STRATEGIES)}, or unset it"
        )
    return value


def by_size(sizes: tuple[int, ...], rows: int) -> str | None:
    """The engine for this shape when size alone decides it, else None (measure)."""
    macs = rows * sum(p * q for p, q in zip(sizes[:-1], sizes[1:]))
    if macs <= SMALL_LIMIT:
        return small_engine(sizes)
    if macs >= LARGE_LIMIT:
        return "compiled"
    return None


def small_engine(sizes: tuple[int, ...]) -> str:
    """The loop engine for a small network: specialised where it is narrow and shallow enough."""
    narrow = max(sizes) <= SPECIALISE_MAX_WIDTH and len(sizes) - 1 <= SPECIALISE_MAX_LAYERS
    return "specialised" if narrow else "fused"


def cache_folder() -> Path | None:
    """A writable folder beside numba's cache (or the user's cache) for generated modules and choices."""
    candidates = []
    if os.environ.get("SIGMANET_CACHE_DIR"):
        candidates.append(Path(os.environ["SIGMANET_CACHE_DIR"]))
    if os.environ.get("NUMBA_CACHE_DIR"):
        candidates.append(Path(os.environ["NUMBA_CACHE_DIR"]) / "sigmanet")
    if os.environ.get("XDG_CACHE_HOME"):
        candidates.append(Path(os.environ["XDG_CACHE_HOME"]) / "sigmanet")
    candidates.append(Path.home() / ".cache" / "sigmanet")
    for folder in candidates:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            if os.access(folder, os.W_OK):
                return folder
        except OSError:
            continue
    return None


def _read(path: Path) -> dict[str, str]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in data.items() if isinstance(k, str) and v in STRATEGIES} if isinstance(data, dict) else {}


def _write(path: Path, key: str, choice: str) -> None:
    """Add one choice to the file, atomically (a concurrent writer may lose, never corrupt)."""
    data = _read(path)
    data[key] = choice
    with contextlib.suppress(OSError):
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(data, f, indent=0, sort_keys=True)
            os.replace(tmp, path)
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def cache_key(parts: dict[str, Any]) -> str:
    return "|".join(f"{k}={parts[k]}" for k in sorted(parts))


_MEMORY: dict[str, str] = {}  # this process's choices (the file serves the next process)


def choose(key: str, candidates: dict[str, Callable[[int], Any]], rounds: int = 3) -> str:
    """The fastest of ``candidates`` ({name: run(n iterations)}) for ``key``: from this process's memory,
    else the cache file, else measured (and then remembered in both)."""
    if key in _MEMORY:
        return _MEMORY[key]
    folder = cache_folder()
    path = None if folder is None else folder / CACHE_FILE
    if path is not None:
        known = _read(path).get(key)
        if known in candidates:
            _MEMORY[key] = known
            return known
    choice = measure(candidates, rounds)
    _MEMORY[key] = choice
    if path is not None:
        _write(path, key, choice)
    return choice


def measure(candidates: dict[str, Callable[[int], Any]], rounds: int = 3) -> str:
    """Time each candidate in interleaved rounds (each run at least 10 ms, after a warm-up that
    compiles); keep each one's minimum per iteration; the smallest wins."""
    sizes = {}
    for name, run in candidates.items():
        run(1)  # compiles, or loads the cache
        n = 1
        while True:
            t0 = time.perf_counter()
            run(n)
            if time.perf_counter() - t0 >= 0.01 or n >= 1 << 16:
                break
            n *= 2
        sizes[name] = n
    best = {name: float("inf") for name in candidates}
    for _ in range(rounds):
        for name, run in candidates.items():
            t0 = time.perf_counter()
            run(sizes[name])
            best[name] = min(best[name], (time.perf_counter() - t0) / sizes[name])
    return min(best, key=best.__getitem__)
