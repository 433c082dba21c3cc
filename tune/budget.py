"""The sweep's time budget, kept on disk so that a resumed sweep goes on with what is left.

Tune's own ``time_budget_s`` starts from zero at every ``Tuner.restore``; ``SweepBudget``, a Tune ``Stopper``,
adds this run's seconds to those earlier runs (and the other experiments of a multi-task sweep) wrote.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator
from typing import Any

from ray.tune import Stopper

from tune.storage import read_json, write_json

BUDGET_FILE = "dmi_budget.json"
WRITE_EVERY_S = 5.0
_restoring_at: str | None = None  # where the driver restoring an experiment keeps the budget file


@contextlib.contextmanager
def ledger_at(path: str | None) -> Iterator[None]:
    """While restoring an experiment, its ``SweepBudget`` uses the file at ``path`` (a moved sweep keeps its budget)."""
    global _restoring_at
    _restoring_at = path
    try:
        yield
    finally:
        _restoring_at = None


class SweepBudget(Stopper):
    """Stops every trial once this sweep has spent ``budget_s`` seconds in Tune, across runs."""

    def __init__(self, path: str, budget_s: float) -> None:
        self.__setstate__({"path": path, "budget_s": budget_s})

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "budget_s": self.budget_s}

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Also on restore: the seconds earlier runs spent, read again (where ``ledger_at`` says)."""
        self.path, self.budget_s = _restoring_at or state["path"], float(state["budget_s"])
        record = read_json(self.path) or {}
        try:
            self.last_saved = max(0.0, float(record.get("spent_s", 0.0)))
        except (TypeError, ValueError):
            self.last_saved = 0.0
        self._before, self._began, self._written_at = self.last_saved, time.monotonic(), -math.inf

    def spent(self) -> float:
        return self._before + time.monotonic() - self._began

    def save(self) -> None:
        """Write the seconds spent so far (atomically)."""
        spent = self.spent()
        write_json(self.path, {"time_budget_s": self.budget_s, "spent_s": round(spent, 3)})
        self._written_at, self.last_saved = time.monotonic(), spent

    @property
    def ran_out(self) -> bool:
        """Whether the budget was spent when last saved (the end of the search, for the driver)."""
        return self.last_saved >= self.budget_s

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        return False

    def stop_all(self) -> bool:
        spent = self.spent()
        if spent >= self.budget_s or time.monotonic() - self._written_at >= WRITE_EVERY_S:
            self.save()
        return spent >= self.budget_s
