"""The exceptions sigmanet raises of its own.

Each subclasses the built-in exception a NumPy or scikit-learn user would
already catch (``ValueError``, ``FloatingPointError``), so ``except ValueError``
keeps working while ``except sigmanet.SigmanetError`` catches them all.
"""

from __future__ import annotations


class SigmanetError(Exception):
    """Base class of every exception sigmanet raises of its own."""


class BackendUnavailableError(SigmanetError, ValueError):
    """An unknown backend was asked for, or one this machine cannot run."""


class ModelFileError(SigmanetError, ValueError):
    """A model file is truncated, corrupted, foreign or from a newer format."""


class DivergenceError(SigmanetError, FloatingPointError):
    """Training produced non-finite weights or errors.

    ``iteration`` is the last report point at which the weights were still
    finite; the network keeps those weights.
    """

    def __init__(self, message: str, iteration: int):
        super().__init__(message)
        self.iteration = iteration
