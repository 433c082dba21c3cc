"""Build one Tune experiment (new or restored): trainable, Optuna searcher, ASHA, run settings."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tune.config import SweepConfig
from tune.data import SweepData
from tune.space import make_space
from tune.trainable import train_estimator

if TYPE_CHECKING:
    from ray.tune import Stopper


def trial_dirname(trial) -> str:
    """Short trial folders (Ray's default spells out the whole config)."""
    return f"trial_{trial.trial_id}"


def make_trainable(cfg: SweepConfig, data: SweepData):
    """The function trainable with its data in the object store and its resources declared."""
    from ray import tune

    arrays = {k: getattr(data, k) for k in ("x_train", "y_train", "x_val", "y_val")}
    trainable = tune.with_parameters(
        train_estimator,
        data=arrays,
        true_mi=data.true_mi,
        val_every_n_steps=cfg.trials.val_every_n_steps,
        num_threads=max(1, int(cfg.trials.cpu)),
    )
    return tune.with_resources(trainable, {"cpu": cfg.trials.cpu, "gpu": cfg.trials.gpu})


def make_searcher(cfg: SweepConfig, task_label: str | None = None):
    """Optuna over the space; with an RDB storage, the study earlier nights left (tune.overnight)."""
    from tune.overnight import searcher_settings
    from tune.searcher import DivergenceAwareOptunaSearch

    settings = searcher_settings(cfg.search, task_label)
    if settings.earlier_trials:
        print(f"optuna study {settings.study_name}: continuing from {settings.earlier_trials} earlier trials")
    return DivergenceAwareOptunaSearch(
        space=make_space(cfg.search.params, cfg.base_estimator()),
        metric=cfg.objective,
        mode="min",
        points_to_evaluate=settings.points_to_evaluate,
        seed=settings.seed,
        storage=settings.storage,
        study_name=settings.study_name,
    )


def make_scheduler(cfg: SweepConfig):
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    s = cfg.scheduler
    if s.kind == "fifo":
        return FIFOScheduler()
    return ASHAScheduler(
        time_attr="training_iteration",
        metric=cfg.objective,
        mode="min",
        max_t=s.max_t,
        grace_period=s.grace_period,
        reduction_factor=s.reduction_factor,
    )


def new_tuner(cfg: SweepConfig, data: SweepData, name: str, storage: str, callbacks: list, budget: Stopper | None):
    from ray import tune

    tune_config = tune.TuneConfig(
        search_alg=make_searcher(cfg, data.label if len(cfg.data.tasks) > 1 else None),
        scheduler=make_scheduler(cfg),
        num_samples=cfg.search.num_samples,
        max_concurrent_trials=cfg.trials.max_concurrent_trials,
        reuse_actors=cfg.trials.reuse_actors,
        trial_dirname_creator=trial_dirname,
    )
    run_config = tune.RunConfig(
        name=name,
        storage_path=storage,
        callbacks=callbacks,
        stop=budget,  # tune.budget.SweepBudget: Tune's own time_budget_s restarts at every restore
        checkpoint_config=tune.CheckpointConfig(
            num_to_keep=cfg.trials.num_to_keep,
            checkpoint_score_attribute=cfg.objective,
            checkpoint_score_order="min",
        ),
        failure_config=tune.FailureConfig(max_failures=cfg.trials.max_failures),
        verbose=0,
    )
    return tune.Tuner(
        make_trainable(cfg, data),
        param_space=dict(cfg.estimator),
        tune_config=tune_config,
        run_config=run_config,
    )


def restored_tuner(cfg: SweepConfig, data: SweepData, path: str, callbacks: list[Any], budget_file: str | None = None):
    """Resume an interrupted experiment: finished trials stay finished, unfinished ones continue.

    The time budget (a ``SweepBudget`` stopper) comes back with the experiment and goes on
    from the seconds earlier runs spent, as recorded in ``budget_file``.
    """
    from ray import tune

    from tune.budget import ledger_at

    with ledger_at(budget_file):
        tuner = tune.Tuner.restore(
            path, trainable=make_trainable(cfg, data), resume_unfinished=True, resume_errored=False
        )
    # The RunConfig comes back unpickled from the first run, callbacks included; this run's
    # callbacks (its tracker, with its own connection) replace them. No public setter exists.
    tuner._local_tuner.get_run_config().callbacks = callbacks
    return tuner


def saved_statuses(path: str) -> list[str]:
    """Trial statuses as saved on disk: PENDING/RUNNING/PAUSED there mean resumable work."""
    from ray.tune import ExperimentAnalysis

    return [t.status for t in ExperimentAnalysis(path).trials]
