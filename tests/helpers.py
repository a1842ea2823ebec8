"""Helpers shared by several test modules (reference.py holds the reference implementations)."""

import csv

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


# Every engine a fit can run through, named as a user pins one ("numba:fused"), from each
# backend's own ``strategies``; a backend without strategies runs as itself.
ENGINES = [
    f"{name}:{strategy}" if strategy else name
    for name in registered_backends()
    for strategy in (backend_class(name).strategies or (None,))
]


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
