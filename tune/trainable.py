"""The Tune function trainable: one trial = one estimator trained with ``dmi.training.fit``.

Every validation reports a fixed set of keys (``REPORTED``) with a Lightning checkpoint; a restarted
trial resumes from ``tune.get_checkpoint()``. The trainable knows nothing of the searcher or scheduler.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch

from tune.objectives import CANDIDATES, OBJECTIVE_INPUTS, score

CHECKPOINT_FILE = "checkpoint.ckpt"
# The estimate, the training loss, how held-out selection chooses this trial's weights, every objective.
REPORTED = (
    *OBJECTIVE_INPUTS,
    *("train_loss", "selected_step", "best_val_loss", "trained_steps", "train_nll", "nll_gap", "early_stopped"),
    *(name for name in CANDIDATES if name not in OBJECTIVE_INPUTS),
)


class ObjectiveReport(pl.Callback):
    """Adds every candidate objective to the metrics; the reports so far, which some read, go in the checkpoint."""

    def __init__(self) -> None:
        self.history: list[dict[str, float]] = []

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        metrics = trainer.callback_metrics
        if trainer.sanity_checking or "val_loss" not in metrics:
            return
        self.history.append({key: float(metrics[key]) for key in OBJECTIVE_INPUTS if key in metrics})
        for name in CANDIDATES:
            if name not in OBJECTIVE_INPUTS:
                metrics[name] = torch.tensor(score(self.history, name), dtype=torch.float64)

    def state_dict(self) -> dict[str, Any]:
        return {"history": [dict(r) for r in self.history]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = [{k: float(v) for k, v in r.items()} for r in state_dict.get("history", [])]


class TrialReport(pl.Callback):
    """Each validation's row and checkpoint to Tune; ``train_seconds`` leaves out Tune's share, survives a restore."""

    def __init__(self, true_mi: float | None) -> None:
        import ray

        self.true_mi = true_mi if true_mi is not None and math.isfinite(true_mi) else None
        self.metrics = list(REPORTED) + ([] if self.true_mi is None else ["abs_error"])
        node, gpus = ray.get_runtime_context().get_node_id(), ",".join(str(g) for g in ray.get_gpu_ids())
        device = "cuda" if gpus and torch.cuda.is_available() else "cpu"  # a GPU Ray gave, if CUDA sees it too
        self.placement = {"node_id": node, "gpu_ids": gpus, "device": device, "started_at": time.time()}
        self.began, self.before, self.reporting = time.monotonic(), 0.0, 0.0

    def seconds(self) -> float:
        return self.before + time.monotonic() - self.began - self.reporting

    def row(self, values: dict[str, Any], failure: str = "") -> dict[str, Any]:
        """Every report with the same keys in order (Tune's CSV logger keeps a run's first columns), NaN if missing."""
        row = {name: values.get(name, math.nan) for name in self.metrics}
        row.update(self.placement, train_seconds=math.nan if failure else self.seconds(), reported_at=time.time())
        return row | {"diverged": float(bool(failure)), "failure": failure}

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        from ray import tune

        if trainer.sanity_checking:
            return
        began = time.monotonic()
        try:
            values = {k: float(v) for k, v in trainer.callback_metrics.items() if k in self.metrics}
            if not values:
                return
            if self.true_mi is not None and "mi" in values:
                values["abs_error"] = abs(values["mi"] - self.true_mi)
            row = self.row(values)
            with tempfile.TemporaryDirectory() as folder:
                trainer.save_checkpoint(os.path.join(folder, CHECKPOINT_FILE))
                tune.report(row, checkpoint=tune.Checkpoint.from_directory(folder))
        finally:
            self.reporting += time.monotonic() - began

    def state_dict(self) -> dict[str, float]:
        return {"train_seconds": self.seconds()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.before = float(state_dict.get("train_seconds", 0.0))


def train_estimator(
    config: dict[str, Any], *, data: dict, true_mi: float | None, val_every_n_steps: int, num_threads: int
) -> None:
    """Train the estimator of ``config`` (a mapping of ``EstimatorConfig`` fields) and report."""
    from ray import tune

    from dmi.config import EstimatorConfig
    from dmi.training import fit

    torch.set_num_threads(max(1, num_threads))  # as many threads as the trial has CPUs
    # Lightning's banners and Ray's per-checkpoint notes would repeat in every trial: warnings only.
    for name in ("lightning.pytorch", "lightning.fabric", "lightning", "ray.train", "ray.tune"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # torch's, raised by Lightning 2.6 on torch >= 2.10 once per fit.
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)", category=FutureWarning)
    reporter = TrialReport(true_mi)
    checkpoint = tune.get_checkpoint()
    try:
        with checkpoint.as_directory() if checkpoint else contextlib.nullcontext() as folder:
            fit(
                EstimatorConfig.from_dict(config),
                *(data[k] for k in ("x_train", "y_train", "x_val", "y_val")),
                callbacks=[ObjectiveReport(), reporter],
                val_every_n_steps=val_every_n_steps,
                ckpt_path=Path(folder) / CHECKPOINT_FILE if folder else None,
                accelerator="gpu" if reporter.placement["device"] == "cuda" else "cpu",
                devices=1,
            )
    except FloatingPointError as exc:
        # A NaN loss comes back on every retry, and Tune's max_failures retries any exception: end the trial
        # with a report that says so (``diverged`` 1, NaN metrics; Optuna records it as FAIL, tune.sweep).
        tune.report(reporter.row({}, failure=f"{type(exc).__name__}: {exc}"))
