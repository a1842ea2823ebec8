"""The NumPy backend: the reference every other backend is checked against.

Everything it needs is the base class's: the seed's loop written once against
NumPy (:class:`~sigmanet.backends.reference.ReferenceTrainer`) and NumPy arrays
in and out.
"""

from __future__ import annotations

from .reference import ReferenceBackend


class NumpyBackend(ReferenceBackend):
    name = "numpy"
