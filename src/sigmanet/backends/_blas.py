"""BLAS thread limits that concurrent fits cannot leave behind.

Why this module holds process-wide state: OpenBLAS's thread count is itself
process-wide. A fit that sets it with threadpoolctl and restores it on exit
is fine alone, but two fits in two threads overlap: the second saves the
first's limit as "original", the first restores the true original while the
second still runs, and the second then "restores" the limit, leaving BLAS at
1 thread for the rest of the process (measured: a later matmul in the user's
own code ran 2x slower). So every limit goes through one registry of active
requests: the effective limit is the smallest active request, applied when it
changes, and the thread counts found before the first request are restored
when the last one ends, whatever the order.

The registry sets each library's count itself, from whichever thread holds its
lock: threadpoolctl 3.8 lets only one thread (the first to set a count, until it
clears its claim) change a pthreads OpenBLAS's count, and other threads' calls do
nothing, silently. Through the gated call, a fit's limit set from one thread and
its restore from another left BLAS at 1 thread after concurrent fits (found: the
concurrent-fits test failed under 3.8). The registry already serialises every
change across threads, so it calls the library's own setter and never claims the
gate: a caller's own ``threadpool_limits`` in any thread keeps working.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Iterator
from typing import Any

_lock = threading.Lock()
_active: list[int] = []  # one entry per limit in force, in any thread
_in_force: list[Any] = []  # the libraries limited while any request is active
_original: dict[int, int] = {}  # id(library controller) -> its thread count before the first request
_applied: int | None = None
_controller: Any = None
_modules_seen = -1


def _blas_libraries() -> list[Any]:
    """threadpoolctl's controllers of the loaded BLAS libraries.

    Scanned again (about 1 ms) whenever Python has imported modules since the
    last scan, since a BLAS library arrives with a module (SciPy's OpenBLAS
    loads after NumPy's); otherwise the last scan serves.
    """
    global _controller, _modules_seen
    if _controller is None or len(sys.modules) != _modules_seen:
        from threadpoolctl import ThreadpoolController

        _controller = ThreadpoolController()
        _modules_seen = len(sys.modules)
    return [lib for lib in _controller.lib_controllers if lib.user_api == "blas"]


@contextlib.contextmanager
def blas_threads(n: int) -> Iterator[None]:
    """Run the block with BLAS using at most ``n`` threads, safely alongside other threads' limits."""
    global _applied
    with _lock:
        libraries = _blas_libraries() if not _active else _in_force
        if not _active:
            _in_force[:] = libraries
            _original.update({id(lib): lib.num_threads for lib in libraries})
        _active.append(n)
        _set(libraries, min(_active))
    try:
        yield
    finally:
        with _lock:
            _active.remove(n)
            if _active:
                _set(libraries, min(_active))
            else:  # the last one out: every library back to what it had
                for lib in libraries:
                    _set_one(lib, _original[id(lib)])
                _original.clear()
                _in_force.clear()
                _applied = None


# Multiply-adds below which sigmanet's own host-side products inside a fit (the estimators'
# validation predict after each epoch; the saturation and stuck checks, on 256 rows, after the fit
# and so beside the next one) run BLAS on one thread: about half a millisecond there,
# so a second thread saves little, while any multi-threaded OpenBLAS call leaves its worker threads
# spinning for about 2**28 cycles (0.1 s) afterwards. A numba fit started inside that window shares
# the cores with them: on a 2-core AMD EPYC, 3 of a fit's 20 calls took 4.5 ms instead of 0.45
# (OpenBLAS's Haswell kernels, which thread these small products; its SkylakeX ones run them
# on one thread anyway). docs/perf-notes.md, "Two thread pools". Only inside fits, never around a
# public predict: a limit holds for the whole process while in force, so a caller's own BLAS calls
# in other threads (and their threadpool_limits) would see one thread.
ONE_THREAD_MACS = 1 << 23


def one_thread_if_small(macs: int) -> contextlib.AbstractContextManager[None]:
    """:func:`blas_threads` (1) for work of fewer than :data:`ONE_THREAD_MACS` multiply-adds, else nothing."""
    return blas_threads(1) if macs < ONE_THREAD_MACS else contextlib.nullcontext()


def callers_threads(path_part: str) -> int | None:
    """The fewest threads the loaded BLAS libraries whose path holds ``path_part`` allow outside this
    registry's own limits (a caller's threadpoolctl limit shows here; another fit's limit does not:
    while any is in force, the counts found before the first), or None when none is loaded."""
    with _lock:
        if _active:
            counts = [_original[id(lib)] for lib in _in_force if path_part in lib.filepath]
        else:
            counts = [lib.num_threads for lib in _blas_libraries() if path_part in lib.filepath]
    return min(counts) if counts else None


def _set(libraries, n: int) -> None:
    global _applied
    if n != _applied:
        for lib in libraries:
            _set_one(lib, n)
        _applied = n


def _set_one(lib, n: int) -> None:
    """Set one library's thread count, past threadpoolctl's one-thread gate where it has one (3.8+,
    OpenBLAS with pthreads: ``_real_set_num_threads``, the call its gate makes; see the module's note)."""
    getattr(lib, "_real_set_num_threads", lib.set_num_threads)(n)
