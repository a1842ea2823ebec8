"""Helpers shared by several test modules (reference.py holds the reference implementations)."""

import csv
import importlib

from sigmanet.backends import backend_class, registered_backends


def write_csv(path, header, rows):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def set_patched_flag(data: bytes) -> bytes:
    """Set flag bit 5 ("compressed patched data") in the first central-directory entry of a zip."""
    at = data.index(b"PK\x01\x02") + 8
    return data[:at] + bytes([data[at] | 0x20]) + data[at + 1 :]


# Every (backend, strategy) pair a fit can run through, from each backend's own
# ``strategies`` (the module limits that force it); a backend without
# strategies runs as itself.
ENGINES = {
    f"{name}-{strategy}" if strategy else name: (name, limits)
    for name in registered_backends()
    for strategy, limits in (backend_class(name).strategies or {None: {}}).items()
}


def force_strategy(monkeypatch, engine_name):
    """Patch the backend module's limits so fits take ``engine_name``'s strategy; returns the backend name."""
    name, limits = ENGINES[engine_name]
    module = importlib.import_module(backend_class(name).__module__)
    for attr, value in limits.items():
        monkeypatch.setattr(module, attr, value)
    return name


def usable_backend(name):
    """The backend's name if this machine runs it; numpy and numba must, any other skips with the reason."""
    import pytest

    import sigmanet as sn

    reason = sn.backend_status()[name]
    if reason is not None:
        if name in REQUIRED:
            pytest.fail(f"{name} backend must be usable on every machine: {reason}")
        pytest.skip(f"{name} backend not usable here: {reason}")
    return name


# Backends every machine must run.
REQUIRED = {"numpy", "numba"}
