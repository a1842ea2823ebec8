"""The NumPy backend: the reference every other backend is checked against."""

from __future__ import annotations

from .base import Backend, GemmTrainer


class NumpyBackend(Backend):
    name = "numpy"
    trainer_class = GemmTrainer
