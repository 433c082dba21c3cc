"""Tune's Optuna searcher, told that a diverged trial failed rather than completed.

A trial whose training diverges ends with a last report that says so (``diverged = 1``,
the reason in ``failure``; see ``tune.trainable.report_divergence``), not with an
exception, so that Tune does not retry it. To Tune it is a finished trial. To Optuna it must
be a failed one: its NaN objective would otherwise be refused by ``study.tell``, and the
trial would stay RUNNING in the study for ever.
"""

from __future__ import annotations

from typing import Any

from ray.tune.search.optuna import OptunaSearch

from tune.summary import diverged


class DivergenceAwareOptunaSearch(OptunaSearch):
    """``OptunaSearch`` that records a diverged trial as FAIL."""

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False) -> None:
        if diverged(result):
            result, error = None, True
        super().on_trial_complete(trial_id, result=result, error=error)
