"""Run (or resume) one Tune experiment and conclude it: final estimate, summary file, tracker record.

Exit codes: 0 finished, 1 failed (no trial reported the objective), 3 time budget ended
(results recorded), 130 interrupted (the same command resumes it).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from tune.budget import SweepBudget
from tune.config import SweepConfig
from tune.data import SweepData
from tune.storage import join, read_json, write_json
from tune.summary import CONFIG_FILE, SUMMARY_FILE
from tune.tracking_glue import Tracker, finish_tracker, start_tracker

UNFINISHED = {"PENDING", "RUNNING", "PAUSED"}
EXIT_OK, EXIT_FAILED, EXIT_TIME_BUDGET, EXIT_INTERRUPTED = 0, 1, 3, 130


@dataclass(frozen=True)
class Planned:
    """One Tune experiment of a sweep: its name, its folder (or URI) and its task (None: a data file)."""

    name: str
    path: str
    task: Any = None

    @property
    def storage(self) -> str:
        return self.path.rsplit("/", 1)[0]


@dataclass
class Outcome:
    """What the tracker is told at the end, whatever the end was."""

    summary: dict[str, Any]
    status: str = "FAILED"
    grid: Any = None
    best_checkpoint: str | None = None
    code: int = EXIT_FAILED
    extra: dict[str, Any] = field(default_factory=dict)


def run_experiment(
    cfg: SweepConfig, p: Planned, data: SweepData, tracker: Tracker | None, budget: SweepBudget | None
) -> int:
    from ray.tune import Tuner

    from tune.console import TrialLinePrinter

    resumed = Tuner.can_restore(p.path)
    truth = "unknown" if data.true_mi is None else f"{data.true_mi:.4f} nats"
    verb = "resuming" if resumed else "starting"
    print(f"{verb} {p.name}: {data.label} (true MI {truth}), objective {cfg.objective}", flush=True)
    callbacks: list[Any] = [TrialLinePrinter(list(cfg.search.params), cfg.scheduler.max_t, cfg.search.num_samples)]
    if tracker is not None:
        start_tracker(tracker, resumed)
        callbacks.append(tracker.tune_callback())
    if read_json(join(p.path, CONFIG_FILE)) is None:
        write_json(join(p.path, CONFIG_FILE), cfg.as_dict())
    outcome = Outcome(summary={"name": p.name, "state": "failed", "experiment_path": p.path})
    try:
        grid, elapsed = fit(cfg, p, data, callbacks, budget, resumed)
        outcome.grid = grid
        if interrupted(p.path):
            print(f"{p.name}: interrupted; run the same command again to resume")
            outcome.summary, outcome.status = {**outcome.summary, "state": "interrupted"}, "KILLED"
            return EXIT_INTERRUPTED
        conclude(cfg, p, data, grid, elapsed, budget, resumed, outcome)
        return outcome.code
    except KeyboardInterrupt:
        outcome.summary, outcome.status = {**outcome.summary, "state": "interrupted"}, "KILLED"
        raise
    finally:
        if tracker is not None:
            finish_tracker(tracker, outcome.summary, outcome.grid, outcome.best_checkpoint, outcome.status)


def fit(cfg: SweepConfig, p: Planned, data: SweepData, callbacks: list, budget: SweepBudget | None, resumed: bool):
    from tune.experiment import new_tuner, restored_tuner

    if resumed:
        tuner = restored_tuner(cfg, data, p.path, callbacks, None if budget is None else budget.path)
    else:
        tuner = new_tuner(cfg, data, p.name, p.storage, callbacks, budget)
    began = time.monotonic()
    try:
        grid = tuner.fit()
    finally:
        if budget is not None:
            budget.save()
    return grid, time.monotonic() - began


def interrupted(path: str) -> bool:
    """Tune saves unfinished trials as PENDING when stopped by a signal; a finished run has none."""
    from ray.tune import ExperimentAnalysis

    return any(t.status in UNFINISHED for t in ExperimentAnalysis(path).trials)


def conclude(
    cfg: SweepConfig,
    p: Planned,
    data: SweepData,
    grid,
    elapsed: float,
    budget: SweepBudget | None,
    resumed: bool,
    outcome: Outcome,
) -> None:
    """Final estimate with the best checkpoint, then the summary: on disk, printed, for the tracker."""
    from tune.console import print_final, print_table
    from tune.results import build_summary, defaults_estimate, final_estimate, label_free_ranking, trial_rows

    rows = trial_rows(grid, cfg.objective)
    common = dict(
        experiment={
            "name": p.name,
            "sweep": cfg.name,
            "experiment_path": p.path,
            "resumed": resumed,
            # of the sweep's time budget, across all its runs and experiments
            "budget_spent_s": None if budget is None else round(budget.last_saved, 1),
        },
        rows=rows,
        data=data,
        config=cfg.as_dict(),
        wall_s=elapsed,
    )
    if not any(r["objective"] is not None for r in rows):
        outcome.summary = build_summary(state="failed", best=None, ranking=None, **common)
        write_json(join(p.path, SUMMARY_FILE), outcome.summary)
        print(f"{p.name}: failed, no trial reported {cfg.objective}; see the error files under {p.path}")
        return
    best = final_estimate(grid, cfg.objective, data, cfg.final_n_logsnr)
    ranking = label_free_ranking(grid, cfg.objective) if data.true_mi is not None else None
    defaults = defaults_estimate(data, cfg.base_estimator(), cfg.final_n_logsnr) if cfg.compare_defaults else None
    timed_out = budget is not None and budget.ran_out
    state = "time_budget" if timed_out else "finished"
    outcome.summary = build_summary(state=state, best=best, ranking=ranking, defaults=defaults, **common)
    write_json(join(p.path, SUMMARY_FILE), outcome.summary)
    outcome.status, outcome.best_checkpoint = "FINISHED", best["best_checkpoint"]
    outcome.code = EXIT_TIME_BUDGET if timed_out else EXIT_OK
    print_table(rows, list(cfg.search.params), cfg.objective, best["best_trial_id"])
    print_final(outcome.summary)
    print(f"summary: {join(p.path, SUMMARY_FILE)}" + ("  (the time budget ended the search)" if timed_out else ""))
