"""Backend registry: one place that maps names to backends.

Why it is shaped this way: numba and CuPy are heavy to import, and CuPy may be
installed on a machine with no usable GPU, where it fails only at the first
device call. So ``import sigmanet`` imports neither. A backend's module is
imported, and its library probed, only when that backend is asked for (or when
``available_backends()`` is called). Nothing here is global mutable state:
"auto" is resolved by a lookup each time, from ``SIGMANET_BACKEND`` and what
probes usable.

To add a backend: write ``backends/<name>_backend.py`` with a ``Backend``
subclass (``probe`` imports the optional library inside), then add one line to
``_REGISTRY``, in the order "auto" should try it. Everything else (the CLI's
list, the tests, the benchmarks) is built from the registry.
"""

from __future__ import annotations

import functools
import importlib
import os

from ..errors import BackendUnavailableError
from .base import Backend, GemmTrainer, TrainConfig, Trainer, array_namespace

__all__ = [
    "Backend",
    "GemmTrainer",
    "TrainConfig",
    "Trainer",
    "array_namespace",
    "available_backends",
    "backend_status",
    "get_backend",
    "registered_backends",
]

# name -> (module, class), in the order "auto" tries them (fastest first);
# imported on first use only.
_REGISTRY = {
    "cupy": ("sigmanet.backends.cupy_backend", "CupyBackend"),
    "numba": ("sigmanet.backends.numba_backend", "NumbaBackend"),
    "numpy": ("sigmanet.backends.numpy_backend", "NumpyBackend"),
}
ENV_VAR = "SIGMANET_BACKEND"


def _backend_class(name: str) -> type[Backend]:
    module, cls = _REGISTRY[name]
    return getattr(importlib.import_module(module), cls)


@functools.cache
def _probe(name: str) -> str | None:
    """Why backend ``name`` cannot run here, or None. Cached: a probe imports libraries."""
    try:
        return _backend_class(name).probe()
    except Exception as e:  # a broken optional install must not break sigmanet
        return f"{type(e).__name__}: {e}"


def registered_backends() -> list[str]:
    """Every backend sigmanet knows, usable here or not, in the registry's order."""
    return list(_REGISTRY)


def backend_class(name: str) -> type[Backend]:
    """The class of a registered backend (imports its module, not its library)."""
    return _backend_class(name)


def backend_status() -> dict[str, str | None]:
    """Every registered backend -> None if usable here, else the reason it is not."""
    return {name: _probe(name) for name in _REGISTRY}


def available_backends() -> list[str]:
    """Names of the backends usable on this machine, fastest first."""
    return [n for n in _REGISTRY if _probe(n) is None]


def _unavailable(name: str, reason: str) -> BackendUnavailableError:
    return BackendUnavailableError(
        f"backend {name!r} is not usable here: {reason}. Available backends: {available_backends()}"
    )


def resolve(name: str = "auto") -> str:
    """The concrete backend name that ``name`` means on this machine, checked."""
    if not isinstance(name, str):
        raise TypeError(f"backend must be a string such as 'numpy', got {type(name).__name__} {name!r}")
    name = name.lower()
    source = ""
    if name == "auto":
        env = os.environ.get(ENV_VAR, "").strip().lower()
        if env and env != "auto":
            name, source = env, f" (set by ${ENV_VAR})"
        else:
            for candidate in _REGISTRY:
                if _probe(candidate) is None:
                    return candidate
            raise _unavailable("auto", "no backend is usable")
    if name not in _REGISTRY:
        raise BackendUnavailableError(
            f"unknown backend {name!r}{source}; known backends: {sorted(_REGISTRY)} or 'auto'; "
            f"available here: {available_backends()}"
        )
    reason = _probe(name)
    if reason is not None:
        raise _unavailable(name, reason)
    return name


def get_backend(name: str = "auto", *, threads: int | None = None) -> Backend:
    """A backend instance for ``name`` ("numpy", "numba", "cupy" or "auto").

    Raises
    ------
    BackendUnavailableError
        If the name is unknown or the backend cannot run on this machine; the
        message lists the available backends and why this one is not.
    """
    return _backend_class(resolve(name))(threads=threads)
