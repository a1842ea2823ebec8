"""Dask helpers, as sigmanet 0.2 named them (``from sigmanet.dask import as_dask, make_dask_table``).

Training on Dask arrays needs nothing from here: ``Network.fit`` takes them
(see :mod:`sigmanet.backends.dask`). Importing this module imports Dask.
"""

from __future__ import annotations

from .backends.dask import DaskBackend, DaskTrainer
from .datasets import as_dask, make_dask_table

__all__ = ["DaskBackend", "DaskTrainer", "as_dask", "make_dask_table"]
