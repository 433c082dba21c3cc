"""The Tune function trainable: one trial = one estimator trained with ``dmi.training.fit``.

Every validation reports ``val_loss`` (held-out NLL sum, label-free), ``mi``,
``mi_orthogonal``, their standard errors, the selection state (selected step, train NLL and
the train/held-out gap, whether early stopping ended the trial) and, when the truth is
known, ``abs_error``, together with a Lightning checkpoint; a restarted trial resumes from
``tune.get_checkpoint()``. A trial ends early once its held-out NLL has not improved for
``patience`` validations.
The trainable knows nothing of the searcher or scheduler.
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch

from tune.objectives import CANDIDATES, OBJECTIVE_INPUTS, score

CHECKPOINT_FILE = "checkpoint.ckpt"
REPORTED = (
    "val_loss",
    "mi",
    "mi_orthogonal",
    "mi_stderr",
    "mi_orthogonal_stderr",
    "val_nll_x",
    "val_nll_x_given_y",
    "train_loss",
    # held-out selection (dmi.selection.HeldOutSelection): how this trial's weights are chosen
    "selected_step",
    "best_val_loss",
    "trained_steps",
    "train_nll",
    "nll_gap",
    "early_stopped",
)
# every candidate objective (tune.objectives), whichever the sweep is judged by
REPORTED = REPORTED + tuple(name for name in CANDIDATES if name not in REPORTED)


class ObjectiveReport(pl.Callback):
    """Adds every candidate objective of ``tune.objectives`` to the metrics Tune reports.

    Some of them read the trial's earlier reports (the stability of its estimate), so the
    reports so far are kept here and in the Lightning checkpoint: a restored trial goes on
    scoring as if it had never stopped.
    """

    def __init__(self) -> None:
        self.history: list[dict[str, float]] = []

    @property
    def state_key(self) -> str:
        return "ObjectiveReport"

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        metrics = trainer.callback_metrics
        if trainer.sanity_checking or "val_loss" not in metrics:
            return
        self.history.append({key: float(metrics[key]) for key in OBJECTIVE_INPUTS if key in metrics})
        for name in CANDIDATES:
            if name not in OBJECTIVE_INPUTS:  # val_loss, val_nll_x_given_y: reported as they are
                metrics[name] = torch.tensor(score(self.history, name), dtype=torch.float64)

    def state_dict(self) -> dict[str, Any]:
        return {"history": [dict(r) for r in self.history]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = [{k: float(v) for k, v in r.items()} for r in state_dict.get("history", [])]


class AbsErrorCallback(pl.Callback):
    """Adds ``abs_error`` = |mi − truth| to the metrics before Tune's callback reports them."""

    def __init__(self, true_mi: float) -> None:
        self.true_mi = float(true_mi)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        mi = trainer.callback_metrics.get("mi")
        if mi is not None:
            trainer.callback_metrics["abs_error"] = torch.tensor(abs(float(mi) - self.true_mi))


def trial_placement() -> dict[str, Any]:
    """Where this trial runs: its node, the GPUs Ray gave it and the device it trains on.

    A GPU is used only when Ray assigned one *and* CUDA sees it; otherwise the trial trains on
    the CPU (a CPU-only torch, or GPUs a test cluster declares without having them).
    """
    import ray

    gpu_ids = [str(g) for g in ray.get_gpu_ids()]
    return {
        "node_id": ray.get_runtime_context().get_node_id(),
        "gpu_ids": ",".join(gpu_ids),
        "device": "cuda" if gpu_ids and torch.cuda.is_available() else "cpu",
        "started_at": time.time(),
    }


def report_row(
    values: dict[str, Any],
    metrics: list[str],
    placement: dict[str, Any],
    train_seconds: float,
    diverged: bool = False,
    failure: str = "",
) -> dict[str, Any]:
    """Every report with the same keys in the same order, a missing metric as NaN.

    Tune's CSV logger takes its columns from the first report of a run and appends to the
    file of an earlier run: a report with other keys (``train_loss`` is logged every 50 steps,
    so a trial restored just after one of them has none at its next report) would shift
    every later row against the header of ``progress.csv``.
    """
    row = {name: values.get(name, float("nan")) for name in metrics}
    row.update(placement, train_seconds=train_seconds, reported_at=time.time())
    row.update(diverged=float(diverged), failure=failure)
    return row


def report_callback(metrics: list[str], placement: dict[str, Any]) -> pl.Callback:
    """Tune's Lightning report-and-checkpoint callback, plus placement and training seconds.

    ``train_seconds`` counts this trial's time in training and validation, not in reporting and
    checkpointing (Tune's share); it survives a restore through the Lightning checkpoint, so
    that a sweep's overhead can be measured.
    """
    from ray.tune.integration.pytorch_lightning import TuneReportCheckpointCallback

    class PlacedReport(TuneReportCheckpointCallback):
        def __init__(self) -> None:
            super().__init__(metrics=metrics, filename=CHECKPOINT_FILE, on="validation_end")
            self.began, self.before, self.reporting = time.monotonic(), 0.0, 0.0

        @property
        def state_key(self) -> str:
            return "PlacedReport"

        def seconds(self) -> float:
            return self.before + time.monotonic() - self.began - self.reporting

        def _handle(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
            began = time.monotonic()
            try:
                super()._handle(trainer, pl_module)
            finally:
                self.reporting += time.monotonic() - began

        def state_dict(self) -> dict[str, float]:
            return {"train_seconds": self.seconds()}

        def load_state_dict(self, state_dict: dict[str, Any]) -> None:
            self.before = float(state_dict.get("train_seconds", 0.0))

        def _get_report_dict(self, trainer: pl.Trainer, pl_module: pl.LightningModule):
            report = super()._get_report_dict(trainer, pl_module)
            if report:
                report = report_row(report, metrics, placement, self.seconds())
            return report

    return PlacedReport()


def quiet_trial() -> None:
    """Lightning's banners and Ray's per-checkpoint notes would repeat in every trial: warnings only."""
    for name in ("lightning.pytorch", "lightning.fabric", "lightning", "ray.train", "ray.tune"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")


def train_estimator(
    config: dict[str, Any],
    *,
    data: dict[str, np.ndarray],
    true_mi: float | None,
    val_every_n_steps: int,
    num_threads: int,
) -> None:
    """Train the estimator of ``config`` (a mapping of ``EstimatorConfig`` fields) and report."""
    from ray import tune

    from dmi.config import EstimatorConfig
    from dmi.training import fit

    torch.set_num_threads(max(1, num_threads))  # as many threads as the trial has CPUs
    quiet_trial()
    cfg = EstimatorConfig.from_dict(config)
    known_truth = true_mi is not None and math.isfinite(true_mi)
    metrics = list(REPORTED) + (["abs_error"] if known_truth else [])
    callbacks: list[pl.Callback] = [ObjectiveReport()]
    if known_truth:
        callbacks.append(AbsErrorCallback(true_mi))
    placement = trial_placement()
    callbacks.append(report_callback(metrics, placement))
    arrays = (data["x_train"], data["y_train"], data["x_val"], data["y_val"])
    device = {"accelerator": "gpu" if placement["device"] == "cuda" else "cpu", "devices": 1}
    checkpoint = tune.get_checkpoint()
    try:
        if checkpoint is None:
            fit(cfg, *arrays, callbacks=callbacks, val_every_n_steps=val_every_n_steps, **device)
            return
        with checkpoint.as_directory() as folder:
            resume = Path(folder) / CHECKPOINT_FILE
            fit(cfg, *arrays, callbacks=callbacks, val_every_n_steps=val_every_n_steps, ckpt_path=resume, **device)
    except FloatingPointError as exc:
        report_divergence(exc, metrics, placement)


def report_divergence(exc: FloatingPointError, metrics: list[str], placement: dict[str, Any]) -> None:
    """End a diverged trial with a last report that says so, instead of raising.

    A NaN or infinite loss comes back on every retry from the same checkpoint, and Tune's
    ``max_failures`` retries any exception (kept for what it is for: lost nodes and killed
    workers). The trial therefore ends here, after one attempt. Its last report carries
    ``diverged = 1``, the reason in ``failure``, and a NaN for every metric. The sweep's
    searcher records it in Optuna as FAIL (``tune.searcher``), and Tune's best-result search
    skips its NaN.
    """
    from ray import tune

    reason = f"{type(exc).__name__}: {exc}"
    tune.report(report_row({}, metrics, placement, float("nan"), diverged=True, failure=reason))
