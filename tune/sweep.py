"""Run a sweep: plan its experiments, start or join Ray, build, run or resume and conclude each Tune experiment.

A sweep over several benchmark tasks runs one experiment per task in turn (``{name}-{task}``, each with
its own searcher and final estimate), listed by an index file; running it again resumes what is unfinished.
"""

from __future__ import annotations

import dataclasses
import functools
import sys
import time
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from ray import tune
from ray.tune import Callback
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
from ray.tune.search.optuna import OptunaSearch

from dmi.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_TIME_BUDGET, SweepConfigError, first_line
from dmi.tempfiles import remove_stale
from tune.budget import BUDGET_FILE, SweepBudget, ledger_at
from tune.cluster import check_cluster, quiet_libraries, ray_session
from tune.config import SweepConfig
from tune.data import SweepData, load_data
from tune.objectives import MODE
from tune.overnight import study_settings
from tune.retention import prune_finished_trials
from tune.space import make_space
from tune.storage import is_uri, join, read_json, resolve_storage, write_json
from tune.summary import CONFIG_FILE, SUMMARY_FILE, diverged
from tune.tracking.tracker import SweepTracker
from tune.trainable import train_estimator

# Keys that may change between a run and its resumption: where things go, not what is computed.
RESUMABLE_CHANGES = {"source", "description", "storage", "ray", "tracking", "tracking_uri", "model_name"}


@dataclass(frozen=True)
class Planned:
    """One Tune experiment of a sweep: its name, its folder (or URI) and its task (None: a data file)."""

    name: str
    path: str
    task: Any = None


def plan(cfg: SweepConfig, name: str, storage: str) -> list[Planned]:
    if len(cfg.data.tasks) > 1:
        return [Planned(f"{name}-{t.name}", join(storage, f"{name}-{t.name}"), t) for t in cfg.data.tasks]
    return [Planned(name, join(storage, name), cfg.data.tasks[0] if cfg.data.tasks else None)]


def run_sweep(
    cfg: SweepConfig,
    *,
    name: str | None = None,
    address: str | None = None,
    storage: str | None = None,
    tracking_uri: str | None = None,
) -> int:
    """Run or resume every experiment of the sweep; returns the exit code."""
    quiet_libraries()
    name = name or cfg.name
    root = resolve_storage(storage or cfg.storage)
    planned = plan(cfg, name, root)
    done = {p.name: read_json(join(p.path, SUMMARY_FILE)) for p in planned}
    for p in planned:
        if done[p.name] is not None:
            print(f"{p.name}: already finished ({done[p.name].get('state')}); results in {join(p.path, SUMMARY_FILE)}")
    pending = [p for p in planned if done[p.name] is None]
    if not pending:
        print(f"sweep {name} is finished; `dmi-tune best {name} --storage {root}` shows the result")
        return EXIT_FAILED if any(s["state"] == "failed" for s in done.values()) else EXIT_OK
    for p in pending:
        check_unchanged(cfg, p)
    if not is_uri(root):  # what a killed driver's atomic writes left (an object store's PUT is whole or absent)
        removed = remove_stale(join(root, name), *(p.path for p in planned))
        if removed:
            print(f"removed {len(removed)} stale temporary file(s) of a killed write: {', '.join(map(str, removed))}")
    data = {p.name: load_data(cfg.data, p.task) for p in pending}
    trackers = make_trackers(cfg, pending, data, root, tracking_uri)
    codes: list[int] = []
    with ray_session(cfg, address) as joined:
        check_cluster(cfg, root, joined)  # shared storage on several nodes; a trial fits a node
        if len(planned) > 1:
            write_index(cfg, name, root, planned)
        for p in pending:
            # One budget for the whole sweep, across its experiments and its resumptions.
            budget = SweepBudget(join(root, name, BUDGET_FILE), cfg.time_budget_s) if cfg.time_budget_s else None
            if budget is not None and budget.spent() >= budget.budget_s:
                print(f"{p.name}: not started, the time budget is spent")
                codes.append(EXIT_TIME_BUDGET)
                break
            codes.append(run_or_resume(cfg, p, data[p.name], trackers.get(p.name), budget))
            if len(planned) > 1:
                write_index(cfg, name, root, planned)
            if codes[-1] == EXIT_INTERRUPTED:
                break
    return next((c for c in (EXIT_INTERRUPTED, EXIT_FAILED, EXIT_TIME_BUDGET) if c in codes), EXIT_OK)  # the gravest


def make_trackers(
    cfg: SweepConfig, planned: list[Planned], data: dict[str, SweepData], storage: str, tracking_uri: str | None
) -> dict[str, SweepTracker]:
    """One MLflow tracker per experiment (each sees the config of its own task), keyed by name."""
    if not cfg.tracking:
        return {}
    trackers = {}
    for p in planned:
        own = cfg if p.task is None else dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, tasks=(p.task,)))
        trackers[p.name] = SweepTracker.create(
            tracking_uri=tracking_uri or cfg.tracking_uri,
            storage_dir=storage,
            experiment_name=cfg.name,
            sweep_name=p.name,
            sweep_config=own.as_dict(),
            task=p.task,
            true_mi=data[p.name].true_mi,
        )
    return trackers


def check_unchanged(cfg: SweepConfig, p: Planned) -> None:
    """Resuming with other data, space or budget would mix two experiments in one: refuse it."""
    stored = read_json(join(p.path, CONFIG_FILE))
    if stored is None:
        return
    current = cfg.as_dict()
    changed = sorted(k for k in (current.keys() | stored.keys()) - RESUMABLE_CHANGES if current.get(k) != stored.get(k))
    if changed:
        raise SweepConfigError(
            f"{changed[0]}: differs from the config {p.name} started with ({join(p.path, CONFIG_FILE)}); "
            "resume with that config, or start a new experiment with --name"
        )


def write_index(cfg: SweepConfig, name: str, root: str, planned: list[Planned]) -> None:
    """The multi-task sweep's index: one entry per task experiment, with its headline result."""
    entries = []
    for p in planned:
        s = read_json(join(p.path, SUMMARY_FILE)) or {}
        entries.append(
            {
                "name": p.name,
                "task": p.task.name if p.task else None,
                "experiment_path": p.path,
                "state": s.get("state", "not finished"),
                **{k: s.get(k) for k in ("true_mi", "abs_error", "final_estimate", "best_config", "best_checkpoint")},
                "fidelity_spearman": (s.get("ranking") or {}).get("spearman"),
                "defaults_abs_error": (s.get("library_defaults") or {}).get("abs_error"),
            }
        )
    states = {e["state"] for e in entries}
    index = {
        "kind": "multi_task",
        "name": name,
        "state": "finished" if states <= {"finished", "time_budget", "failed"} else "not finished",
        "objective": cfg.objective,
        "experiments": entries,
        "config": cfg.as_dict(),
    }
    write_json(join(root, name, SUMMARY_FILE), index)


def trial_dirname(trial: Any) -> str:
    """Short trial folders (Ray's default spells out the whole config)."""
    return f"trial_{trial.trial_id}"


class DivergenceAwareOptunaSearch(OptunaSearch):
    """Records a diverged trial as FAIL: Optuna's ``study.tell`` would refuse its NaN and leave it RUNNING for ever."""

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False) -> None:
        if diverged(result):
            result, error = None, True
        super().on_trial_complete(trial_id, result=result, error=error)


class LiveCallbacks(Callback):
    """Forwards to the callbacks of the run now going on, bound to the experiment's name.

    ``Tuner.restore`` brings back the pickled callbacks with no public way to replace one; a resumed run
    must record with its own (its tracker, its store), so the experiment's only callback is this forwarder.
    """

    live: dict[str, list[Any]] = {}

    def __init__(self, name: str, callbacks: list[Any]) -> None:
        self.name = name
        self.live[name] = list(callbacks)

    def _forward(self, hook: str, **info: Any) -> None:
        for callback in self.live.get(self.name, ()):
            getattr(callback, hook)(**info)


for _hook in ("on_trial_start", "on_trial_result", "on_trial_complete", "on_trial_error", "on_experiment_end"):
    setattr(LiveCallbacks, _hook, functools.partialmethod(LiveCallbacks._forward, _hook))


def make_tuner(
    cfg: SweepConfig, data: SweepData, name: str, path: str, callbacks: list, budget: SweepBudget | None, resumed: bool
) -> tune.Tuner:
    """The experiment at ``path``, new or resumed (its finished trials stay finished, the others continue)."""
    t, arrays = cfg.trials, {k: getattr(data, k) for k in ("x_train", "y_train", "x_val", "y_val")}
    options = dict(data=arrays, true_mi=data.true_mi, val_every_n_steps=t.val_every_n_steps, num_threads=int(t.cpu))
    trainable = tune.with_resources(tune.with_parameters(train_estimator, **options), {"cpu": t.cpu, "gpu": t.gpu})
    if resumed:
        LiveCallbacks.live[name] = list(callbacks)
        # The budget comes back with the experiment and goes on from the seconds its file says were spent.
        with ledger_at(None if budget is None else budget.path):
            return tune.Tuner.restore(path, trainable=trainable, resume_unfinished=True, resume_errored=False)
    # Optuna over the space; with an RDB storage, the study earlier nights left (tune.overnight).
    settings, earlier = study_settings(cfg.search, data.label if len(cfg.data.tasks) > 1 else None)
    if earlier:
        print(f"optuna study {settings['study_name']}: continuing from {earlier} earlier trials")
    # A define-by-run space sets up its study at once: it cannot take metric and mode from TuneConfig.
    space = make_space(cfg.search.params, cfg.base_estimator())
    searcher = DivergenceAwareOptunaSearch(space=space, metric=cfg.objective, mode=MODE, **settings)
    s = cfg.scheduler  # ASHA's time is training_iteration: one step per report
    if s.kind == "asha":
        scheduler = ASHAScheduler(max_t=s.max_t, grace_period=s.grace_period, reduction_factor=s.reduction_factor)
    else:
        scheduler = FIFOScheduler()
    tune_config = tune.TuneConfig(
        metric=cfg.objective,
        mode=MODE,
        search_alg=searcher,
        scheduler=scheduler,
        num_samples=cfg.search.num_samples,
        max_concurrent_trials=t.max_concurrent_trials,
        reuse_actors=t.reuse_actors,
        trial_dirname_creator=trial_dirname,
    )
    run_config = tune.RunConfig(
        name=name,
        storage_path=path.rsplit("/", 1)[0],
        callbacks=[LiveCallbacks(name, callbacks)],
        stop=budget,  # tune.budget.SweepBudget: Tune's own time_budget_s restarts at every restore
        # Tune keeps every checkpoint (its num_to_keep can delete one a restart resumes from): tune.retention.
        checkpoint_config=tune.CheckpointConfig(checkpoint_score_attribute=cfg.objective, checkpoint_score_order=MODE),
        failure_config=tune.FailureConfig(max_failures=t.max_failures),
        verbose=0,
    )
    return tune.Tuner(trainable, param_space=dict(cfg.estimator), tune_config=tune_config, run_config=run_config)


def run_or_resume(
    cfg: SweepConfig, p: Planned, data: SweepData, tracker: SweepTracker | None, budget: SweepBudget | None
) -> int:
    """Returns the exit code: 0 finished, 1 failed (no trial reported), 3 time budget ended, 130 interrupted."""
    from tune.console import TrialLinePrinter

    resumed = tune.Tuner.can_restore(p.path)
    truth = "unknown" if data.true_mi is None else f"{data.true_mi:.4f} nats"
    verb = "resuming" if resumed else "starting"
    print(f"{verb} {p.name}: {data.label} (true MI {truth}), objective {cfg.objective}", flush=True)
    callbacks: list[Any] = [TrialLinePrinter(list(cfg.search.params), cfg.scheduler.max_t, cfg.search.num_samples)]
    if tracker is not None:
        tracker.start(resumed=resumed)  # an unreachable store: TrackingUnavailable, exit 2
        callbacks.append(tracker.tune_callback())
    if read_json(join(p.path, CONFIG_FILE)) is None:
        write_json(join(p.path, CONFIG_FILE), cfg.as_dict())
    # What the tracker is told at the end, whatever the end was.
    summary = {"name": p.name, "state": "failed", "experiment_path": p.path}
    outcome = SimpleNamespace(summary=summary, status="FAILED", grid=None, best_checkpoint=None, code=EXIT_FAILED)
    try:
        tuner = make_tuner(cfg, data, p.name, p.path, callbacks, budget, resumed)
        began = time.monotonic()
        try:
            outcome.grid = tuner.fit()
        finally:
            if budget is not None:
                budget.save()
        analysis = tune.ExperimentAnalysis(p.path)  # as a restart will see it
        prune(cfg, analysis)
        # Tune saves unfinished trials as PENDING when stopped by a signal; a finished run has none.
        if any(t.status in ("PENDING", "RUNNING", "PAUSED") for t in analysis.trials):
            print(f"{p.name}: interrupted; run the same command again to resume")
            outcome.summary, outcome.status = {**outcome.summary, "state": "interrupted"}, "KILLED"
            return EXIT_INTERRUPTED
        conclude(cfg, p, data, time.monotonic() - began, budget, resumed, outcome)
        return outcome.code
    except KeyboardInterrupt:
        outcome.summary, outcome.status = {**outcome.summary, "state": "interrupted"}, "KILLED"
        raise
    finally:
        if tracker is not None:
            record_end(tracker, outcome, p.path)


def prune(cfg: SweepConfig, analysis: Any) -> None:
    """Finished trials keep their best and latest checkpoints; a failed delete keeps what is left, and says so."""
    try:
        prune_finished_trials(analysis, cfg.objective, cfg.trials.num_to_keep)
    except OSError as exc:
        print(f"{cfg.name}: could not delete the checkpoints finished trials no longer need: {first_line(exc)}")


def record_end(tracker: SweepTracker, outcome: Any, path: str) -> None:
    """Record the end in MLflow; a tracking failure here is reported, the sweep's own results stand."""
    try:
        grid = outcome.grid
        if grid is None:  # interrupted before Tune returned: read back what the folder holds
            if not tune.Tuner.can_restore(path):
                return
            grid = tune.ResultGrid(tune.ExperimentAnalysis(path))
        tracker.finish(outcome.summary, grid, outcome.best_checkpoint, outcome.status)
    except Exception as exc:  # noqa: BLE001 - the results on disk must survive a tracking failure
        print(f"tracking: could not record the end of the sweep: {first_line(exc)}", file=sys.stderr)


def conclude(
    cfg: SweepConfig,
    p: Planned,
    data: SweepData,
    wall_s: float,
    budget: SweepBudget | None,
    resumed: bool,
    outcome: Any,
) -> None:
    """Final estimate with the best checkpoint, then the summary: on disk, printed, for the tracker."""
    from tune.console import print_final, print_table
    from tune.results import build_summary, defaults_estimate, final_estimate, label_free_ranking, trial_rows

    rows = trial_rows(outcome.grid, cfg.objective)
    experiment = {"name": p.name, "sweep": cfg.name, "experiment_path": p.path, "resumed": resumed}
    # of the sweep's time budget, across all its runs and experiments
    experiment["budget_spent_s"] = None if budget is None else round(budget.last_saved, 1)
    common = dict(experiment=experiment, rows=rows, data=data, config=cfg.as_dict(), wall_s=wall_s)
    if not any(r["objective"] is not None for r in rows):
        outcome.summary = build_summary(state="failed", best=None, ranking=None, **common)
        write_json(join(p.path, SUMMARY_FILE), outcome.summary)
        print(f"{p.name}: failed, no trial reported {cfg.objective}; see the error files under {p.path}")
        return
    best = final_estimate(outcome.grid, cfg.objective, data, cfg.final_n_logsnr)
    ranking = label_free_ranking(outcome.grid, cfg.objective) if data.true_mi is not None else None
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
