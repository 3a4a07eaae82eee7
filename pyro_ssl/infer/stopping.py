"""Early stopping on a validation score: patience, and the best epoch's state kept to restore.

:class:`EarlyStopping` watches one per-epoch validation value (``completion_ppl``, lower is
better, or ``heldout_log_lik``, higher is better), keeps a deep copy of the learner's state
(:meth:`StochasticEM.state_dict`: LSTM weights, topic-word distributions, paths, counts, Adam)
at the best evaluation, and says when ``patience`` evaluations in a row failed to improve on
the best by more than ``min_delta``. The estimator restores the copy when the fit ends.
"""

from __future__ import annotations

import copy
import math

__all__ = ["EarlyStopping", "MONITORS"]

MONITORS = {"completion_ppl": -1.0, "heldout_log_lik": 1.0}
"""Validation keys of a history entry and their sign (+1: higher is better)."""


class EarlyStopping:
    """Patience on a validation value; keeps the best state.

    Args:
        patience: evaluations without improvement before stopping (``>= 1``).
        min_delta: an improvement must exceed this (in the monitored value's units).
    Attributes:
        best_value, best_epoch: the best value seen and its epoch (``None`` before any).
        bad: evaluations since the best.
        best_state: deep copy of the learner's state at the best evaluation.
    """

    def __init__(self, patience: int, min_delta: float = 0.0):
        if patience < 1:
            raise ValueError(f"patience must be >= 1, got {patience}")
        self.patience = int(patience)
        self.min_delta = float(min_delta)
        self.best_value: float | None = None
        self.best_epoch: int | None = None
        self.bad = 0
        self.best_state: dict | None = None

    @staticmethod
    def monitored(entry: dict) -> str | None:
        """The validation key recorded in ``entry`` (``None`` if the epoch was not evaluated)."""
        return next((k for k in MONITORS if k in entry and math.isfinite(entry[k])), None)

    def update(self, entry: dict, state_fn) -> bool:
        """Record an epoch; ``state_fn()`` gives the learner's state (called only on improvement).

        Returns ``True`` when the fit should stop.
        """
        key = self.monitored(entry)
        if key is None:
            return False
        value = float(entry[key])
        gain = math.inf if self.best_value is None else MONITORS[key] * (value - self.best_value)
        if gain > self.min_delta:
            self.best_value, self.best_epoch, self.bad = value, int(entry["epoch"]), 0
            self.best_state = copy.deepcopy(state_fn())  # tensors on the CPU alias the live ones
        else:
            self.bad += 1
        return self.bad >= self.patience

    def state_dict(self) -> dict:
        """Plain state for a checkpoint (so a resumed fit keeps its best epoch)."""
        return {"best_value": self.best_value, "best_epoch": self.best_epoch, "bad": self.bad,
                "best_state": self.best_state}

    def load_state_dict(self, state: dict) -> None:
        self.best_value, self.best_epoch = state["best_value"], state["best_epoch"]
        self.bad, self.best_state = int(state["bad"]), state["best_state"]
