"""The exceptions sigmanet raises of its own.

Each subclasses the built-in exception a NumPy or scikit-learn user would
already catch (``ValueError``, ``FloatingPointError``), so ``except ValueError``
keeps working while ``except sigmanet.SigmanetError`` catches them all.
"""

from __future__ import annotations

import os
import sys
import warnings

_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep


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


def warn_at_caller(warning: Warning) -> None:
    """``warnings.warn(warning)`` attributed to the first frame outside sigmanet: the user's line that
    called in, whatever path it took through the package, so ``filterwarnings(module=...)`` and the
    once-per-location rule see the caller (a fixed ``stacklevel`` points into sigmanet from some paths)."""
    frame, level = sys._getframe(1), 2
    while frame.f_back is not None and frame.f_code.co_filename.startswith(_PACKAGE):
        frame, level = frame.f_back, level + 1
    warnings.warn(warning, stacklevel=level)
