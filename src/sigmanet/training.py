"""The training workflow that ``sigmanet train`` and the scikit-learn estimators share.

Both hold out a share of the rows, score them at each check (every report
interval of a ``Network.fit``), keep the best weights seen, and stop when the
score has not improved for a while. That logic lives here once:

* :func:`split_rows`: a seeded random hold-out split (stratified by class when
  labels are given), as index arrays, so callers slice X, y and sample
  weights alike. The estimators use scikit-learn's own ``train_test_split``
  instead where they must take MLPClassifier's exact path; both feed
  :class:`Patience`.
* :class:`Patience`: scikit-learn's rule for "no improvement": a check counts
  as no better unless it beats the best by more than ``tol``; ``stop_after``
  such checks in a row stop the fit; the best state is the one with the best
  score seen (better by any margin), and which check it came from is kept.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np


def split_rows(
    n: int, fraction: float, seed: int | None, labels: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(kept, held): row indices, ``fraction`` of the ``n`` rows held out at random.

    With ``labels`` (one class per row) each class is held out in proportion
    (stratified; classes too small to split stay in the kept rows).

    Raises
    ------
    ValueError
        If the fraction leaves no row to train on or none to hold out.
    """
    n_held = int(round(fraction * n))
    if not 0 < fraction < 1 or n_held < 1 or n_held >= n:
        raise ValueError(
            f"a hold-out fraction of {fraction} of {n} rows leaves no rows to train on or none to hold out"
        )
    rng = np.random.default_rng(seed)
    if labels is None:
        order = rng.permutation(n)
        return np.sort(order[n_held:]), np.sort(order[:n_held])
    labels = np.asarray(labels)
    held = []
    for c in np.unique(labels):
        rows = np.flatnonzero(labels == c)
        take = int(round(fraction * rows.size)) if rows.size > 1 else 0
        held.append(rng.permutation(rows)[:take])
    held_rows = np.sort(np.concatenate(held)) if held else np.zeros(0, np.int64)
    if held_rows.size == 0 or held_rows.size == n:
        raise ValueError(
            f"a stratified hold-out of {fraction} of {n} rows leaves no rows to train on or none to hold out"
        )
    kept = np.setdiff1d(np.arange(n), held_rows)
    return kept, held_rows


@dataclass
class Patience:
    """Keeps the best score and state, and says when to stop (scikit-learn's rule).

    ``higher_is_better``: scores such as accuracy (True) or errors (False).
    ``stop_after``: checks in a row without an improvement of more than ``tol``
    that stop the fit (scikit-learn's ``n_iter_no_change + 1``; the CLI's
    ``--patience``).
    """

    stop_after: int
    tol: float = 0.0
    higher_is_better: bool = False
    best: float = field(init=False)
    best_state: Any = field(default=None, init=False)
    best_check: int | None = field(default=None, init=False)  # the check (0, 1, ...) the best state is from
    best_label: Any = field(default=None, init=False)  # what the caller said that check was (an iteration)
    stalled: int = field(default=0, init=False)
    checks: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self.best = -math.inf if self.higher_is_better else math.inf

    def improves(self, score: float) -> bool:
        """Whether ``score`` counts as progress: at least ``tol`` better than the best (scikit-learn's test)."""
        return score >= self.best + self.tol if self.higher_is_better else score <= self.best - self.tol

    def update(self, score: float, snapshot: Callable[[], Any] | None = None, label: Any = None) -> bool:
        """Record one check's score; ``snapshot()`` is called (to copy the state) only when it is the best.

        Returns True to go on, False once ``stop_after`` checks in a row did not improve by ``tol``.
        """
        self.stalled = 0 if self.improves(score) else self.stalled + 1
        strictly = score > self.best if self.higher_is_better else score < self.best
        if strictly or (self.best_check is None and math.isfinite(score)):
            self.best = score
            self.best_state = None if snapshot is None else snapshot()
            self.best_check, self.best_label = self.checks, label
        self.checks += 1
        return self.stalled < self.stop_after

    @property
    def stopped(self) -> bool:
        return self.stalled >= self.stop_after
