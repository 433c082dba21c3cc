"""The sweep's time budget, kept on disk so that a resumed sweep goes on with what is left.

Tune's own ``time_budget_s`` starts from zero at every ``Tuner.restore``: a sweep killed
after 7 of its 8 hours would get 8 more. ``SweepBudget`` is a Tune ``Stopper`` instead. It
adds the seconds spent in this run to those that earlier runs left in
``<sweep folder>/dmi_budget.json``, and writes the total every few seconds. It is pickled
with the experiment and comes back with ``Tuner.restore``, where it reads the file again
(at the folder the driver restores from: ``ledger_at``, so that a moved sweep folder keeps
its budget). The several experiments of a multi-task sweep share one file, hence one budget.
"""

from __future__ import annotations

import contextlib
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
    """While restoring an experiment: its ``SweepBudget`` reads and writes the file at ``path``."""
    global _restoring_at
    _restoring_at = path
    try:
        yield
    finally:
        _restoring_at = None


def spent_on_disk(path: str) -> float:
    """Seconds that earlier runs of the sweep spent, as they last wrote them (0 for a new sweep)."""
    record = read_json(path) or {}
    try:
        return max(0.0, float(record.get("spent_s", 0.0)))
    except (TypeError, ValueError):
        return 0.0


class SweepBudget(Stopper):
    """Stops every trial once this sweep has spent ``budget_s`` seconds in Tune, across runs."""

    def __init__(self, path: str, budget_s: float) -> None:
        self.path, self.budget_s = path, float(budget_s)
        self._start()

    def _start(self) -> None:
        self._before = spent_on_disk(self.path)
        self._began = time.monotonic()
        self._written_at = float("-inf")
        self.last_saved = self._before

    def spent(self) -> float:
        return self._before + time.monotonic() - self._began

    def remaining(self) -> float:
        return self.budget_s - self.spent()

    def save(self) -> float:
        """Write the seconds spent so far (atomically); returns them."""
        spent = self.spent()
        write_json(self.path, {"time_budget_s": self.budget_s, "spent_s": round(spent, 3)})
        self._written_at, self.last_saved = time.monotonic(), spent
        return spent

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

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "budget_s": self.budget_s}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.path, self.budget_s = _restoring_at or state["path"], float(state["budget_s"])
        self._start()
