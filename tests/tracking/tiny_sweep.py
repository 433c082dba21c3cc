"""A real, tiny Ray Tune + Optuna sweep recorded by ``SweepTracker``, for the tracking tests.

Four trials in a fixed order (Optuna's ``points_to_evaluate``): two unified, one MoE (its
conditional ``snr_threshold`` present), one stopped after its first report and one that
diverges (fails). The summary is computed as the driver computes it: the best trial's
checkpoint, loaded and run on a held-out test set.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

TASK = {"task_type": "multinormal", "dim": 2, "strength": 2.0}
FIXED = dict(model_dim=8, n_blocks=1, max_steps=60, batch_size=128, val_n_logsnr=8, n_logsnr=16, patience=1000)
VAL_EVERY = 20
MAX_REPORTS = FIXED["max_steps"] // VAL_EVERY
DIVERGING_LR = 0.5  # the trainable raises above this: a failed trial on purpose
POINTS = [
    {"architecture": "unified", "learning_rate": 3e-3},
    {"architecture": "moe", "learning_rate": 2e-3, "snr_threshold": 4.0},
    {"architecture": "unified", "learning_rate": 1e-3},  # stopped after its first report
    {"architecture": "unified", "learning_rate": 0.8},  # diverges
]
REPORTED = ["train_loss", "val_loss", "mi", "mi_orthogonal", "mi_stderr", "mi_orthogonal_stderr"]


def sweep_config(name: str) -> dict[str, Any]:
    """A config in the driver's shape (``SweepConfig.as_dict``), reduced to what tracking reads."""
    return {
        "name": name,
        "objective": "val_loss",
        "data": {"tasks": [TASK], "n_train": 2000, "n_val": 400, "n_test": 1000, "seed": 0},
        "estimator": FIXED,
        "search": {"num_samples": len(POINTS), "seed": 0, "params": {"learning_rate": [1e-4, 1.0]}},
        "scheduler": {"kind": "fifo", "max_t": MAX_REPORTS},
        "trials": {"val_every_n_steps": VAL_EVERY},
    }


def space(trial) -> None:
    """Define-by-run: ``snr_threshold`` only for MoE trials."""
    architecture = trial.suggest_categorical("architecture", ["unified", "moe"])
    trial.suggest_float("learning_rate", 1e-4, 1.0, log=True)
    if architecture == "moe":
        trial.suggest_float("snr_threshold", 2.0, 6.0)


def train(config: dict[str, Any], data: dict[str, np.ndarray]) -> None:
    from ray.tune.integration.pytorch_lightning import TuneReportCheckpointCallback

    from dmi.config import EstimatorConfig
    from dmi.training import fit

    if config["learning_rate"] > DIVERGING_LR:
        raise FloatingPointError("training loss is nan: training diverged (simulated)")
    cfg = EstimatorConfig.from_dict({**FIXED, **config})
    report = TuneReportCheckpointCallback(metrics=REPORTED, filename="checkpoint.ckpt", on="validation_end")
    fit(
        cfg,
        data["x_train"],
        data["y_train"],
        data["x_val"],
        data["y_val"],
        callbacks=[report],
        val_every_n_steps=VAL_EVERY,
    )


def stop_third(trial_id: str, result: dict[str, Any]) -> bool:
    """Stop the third point after one report: a trial ended early, as ASHA would."""
    third = result["config"]["learning_rate"] == POINTS[2]["learning_rate"]
    return third and result["training_iteration"] >= 1


def task_data() -> dict[str, Any]:
    from dmi.tasks import TaskSpec, sample_task, true_mi

    spec = TaskSpec(**TASK)
    x, y = sample_task(spec, 3400, seed=0)
    return {
        "x_train": x[:2000],
        "y_train": y[:2000],
        "x_val": x[2000:2400],
        "y_val": y[2000:2400],
        "x_test": x[2400:],
        "y_test": y[2400:],
        "truth": true_mi(spec),
        "spec": spec,
    }


def run_tuner(storage: Path, name: str, callbacks: list, data: dict[str, Any]):
    from ray import tune
    from ray.tune.search.optuna import OptunaSearch

    search = OptunaSearch(space=space, metric="val_loss", mode="min", points_to_evaluate=POINTS, seed=0)
    arrays = {k: v for k, v in data.items() if k.startswith(("x_", "y_"))}
    trainable = tune.with_parameters(train, data=arrays)
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=search, num_samples=len(POINTS), max_concurrent_trials=2, reuse_actors=True
        ),
        run_config=tune.RunConfig(
            name=name,
            storage_path=str(storage),
            callbacks=callbacks,
            stop=stop_third,
            verbose=0,
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            failure_config=tune.FailureConfig(max_failures=0),
        ),
    )
    return tuner.fit()


def driver_summary(result_grid, data: dict[str, Any], config: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """What the driver hands to ``finish``, built with the driver's own helpers (``tune.results``)."""
    from tune.data import SweepData
    from tune.results import build_summary, final_estimate, trial_rows

    sweep_data = SweepData(
        data["spec"].name,
        data["x_train"],
        data["y_train"],
        data["x_val"],
        data["y_val"],
        data["x_test"],
        data["y_test"],
        data["truth"],
    )
    rows = trial_rows(result_grid, "val_loss")
    best = final_estimate(result_grid, "val_loss", sweep_data, n_logsnr=FIXED["n_logsnr"])
    experiment = {"name": config["name"], "sweep": config["name"]}
    experiment["experiment_path"] = result_grid.experiment_path
    summary = build_summary(
        experiment=experiment,
        state="finished",
        rows=rows,
        best=best,
        ranking=None,
        data=sweep_data,
        config=config,
        wall_s=1.0,
    )
    return summary, best["best_checkpoint"]


def with_objective(summary: dict[str, Any], objective_value: float) -> dict[str, Any]:
    """The same outcome with its best trial's objective value replaced."""
    return {**summary, "best_metrics": {**summary["best_metrics"], "objective": objective_value}}


def task():
    from dmi.tasks import TaskSpec

    return TaskSpec(**TASK)


def same_task(recorded: Any) -> dict[str, Any]:
    """The task and truth of the recorded sweep, for another tracker of the same data."""
    return {"task": recorded.tracker.task, "true_mi": recorded.tracker.true_mi}
