"""Backend registry: one place that maps names to backends, and routes Dask inputs.

Why it is shaped this way: numba and CuPy are heavy to import, and CuPy may be
installed on a machine with no usable GPU, where it fails only at the first
device call. So ``import sigmanet`` imports neither. A backend's module is
imported, and its library probed, only when that backend is asked for (or when
``available_backends()`` is called). Nothing here is global mutable state:
"auto" is resolved by a lookup each time, from ``SIGMANET_BACKEND`` and what
probes usable.

A name may pin one of the backend's engines: ``"numba:fused"``,
``"cupy:graph"`` (each backend's ``strategies`` lists them); plain ``"numba"``
lets the backend choose by size.

To add a backend: write a module with a ``Backend`` subclass (``probe``
imports the optional library inside), then add one line to ``_REGISTRY``, in
the order "auto" should try it. Everything else (the CLI's list, the tests,
the benchmarks) is built from the registry.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import os
from typing import Any

from .._arrays import is_dask
from .._plan import TrainConfig
from ..errors import BackendUnavailableError
from .base import Backend, Gradients, Trainer

__all__ = [
    "Backend",
    "Gradients",
    "TrainConfig",
    "Trainer",
    "available_backends",
    "backend_class",
    "backend_status",
    "for_input",
    "get_backend",
    "registered_backends",
    "resolve",
]

# name -> (module, class), in the order "auto" tries them (fastest first);
# imported on first use only.
_REGISTRY = {
    "cupy": ("sigmanet.backends.cupy.backend", "CupyBackend"),
    "numba": ("sigmanet.backends.numba.backend", "NumbaBackend"),
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


def _split(spec: str) -> tuple[str, str | None]:
    name, _, strategy = spec.partition(":")
    return name.strip(), (strategy.strip() or None)


def resolve(name: str = "auto") -> str:
    """The concrete backend name (with its pinned strategy, if any) that ``name`` means here, checked."""
    if not isinstance(name, str):
        raise TypeError(f"backend must be a string such as 'numpy', got {type(name).__name__} {name!r}")
    name = name.strip().lower()
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
    base, strategy = _split(name)
    if base not in _REGISTRY:
        raise BackendUnavailableError(
            f"unknown backend {base!r}{source}; known backends: {sorted(_REGISTRY)} or 'auto'; "
            f"available here: {available_backends()}"
        )
    reason = _probe(base)
    if reason is not None:
        raise _unavailable(base, reason)
    if strategy is not None:
        known = _backend_class(base).strategies
        if strategy not in known:
            raise BackendUnavailableError(
                f"backend {base!r} has no strategy {strategy!r}{source}; its strategies are {list(known)}"
                if known
                else f"backend {base!r} has only one engine: use {base!r}, without ':{strategy}'"
            )
        return f"{base}:{strategy}"
    return base


def get_backend(name: str = "auto", *, threads: int | None = None) -> Backend:
    """A backend instance for ``name`` ("numpy", "numba", "cupy", "auto", or "numba:fused" and the like).

    Raises
    ------
    BackendUnavailableError
        If the name is unknown or the backend cannot run on this machine; the
        message lists the available backends and why this one is not.
    """
    base, strategy = _split(resolve(name))
    return _backend_class(base)(threads=threads, strategy=strategy)


def on_stream(backend: Backend, stream: Any, X: Any) -> Any:
    """The context that puts ``backend``'s work for X on ``stream`` (``fit(stream=)`` and the like): a
    no-op for None; refused, before any work, where no stream applies (a CPU backend, a Dask array)."""
    if stream is None:
        return contextlib.nullcontext()
    if is_dask(X):
        raise ValueError(
            "stream= applies to in-memory arrays: a Dask array's chunks run on its workers, each on its "
            "own current stream"
        )
    return backend.on_stream(stream)


def for_input(backend: Backend, X: Any) -> Backend:
    """The backend that handles ``X``: ``backend`` itself for in-memory arrays; for a Dask array,
    ``backend`` wrapped to run where the chunks live (imported only when one is seen)."""
    if is_dask(X):
        from .dask import DaskBackend

        return DaskBackend(backend)
    return backend
