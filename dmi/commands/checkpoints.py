"""Checkpoint naming by configuration, safe inspection, and periodic saving during training.

A checkpoint is ``{dir}/{task_name}/dmi_{arch}_{hash}.ckpt`` where the hash covers every
training-relevant setting except the budget (max_steps), so a run with a larger
``--max_epochs`` finds the same file and resumes it. Nothing here unpickles arbitrary
objects: checkpoints are read with ``weights_only=True``.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import lightning.pytorch as pl

from dmi.config import EstimatorConfig
from dmi.errors import UsageError

# Not part of what is trained: the budget, and the estimation grids.
NOT_HASHED = ("max_steps", "n_logsnr", "val_n_logsnr")


def config_hash(cfg: EstimatorConfig, data: dict[str, Any]) -> str:
    """Short stable hash of the training configuration and what defines its data."""
    values = {k: v for k, v in cfg.as_dict().items() if k not in NOT_HASHED}
    text = json.dumps({"estimator": values, "data": data}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def checkpoint_path(root: str | os.PathLike, task_name: str, architecture: str, digest: str) -> Path:
    return Path(root) / task_name / f"dmi_{architecture}_{digest}.ckpt"


def trained_steps(path: Path) -> int:
    """The step count stored in a checkpoint, loaded with ``weights_only=True``."""
    return int(_load(path)["global_step"])


def stored_selection(path: Path):
    """The held-out selection a checkpoint records (a ``SelectionReport``), or None."""
    from dmi.selection import report_from_state

    state = _load(path)  # refuses an unsafe or corrupt file with a one-line UsageError
    return report_from_state(state.get("callbacks", {}), int(state["global_step"]))


def _load(path: Path) -> dict[str, Any]:
    import torch


    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # an unsafe or corrupt file: refuse it, never unpickle it
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UsageError(f"cannot load checkpoint {path} safely: {reason}") from exc


class PeriodicCheckpoint(pl.Callback):
    """Save the whole training state every ``every_n_steps``, atomically, so a killed run resumes."""

    def __init__(self, path: Path, every_n_steps: int) -> None:
        self.path, self.every = Path(path), max(int(every_n_steps), 1)

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        from dmi.training import save_checkpoint

        step = trainer.global_step
        if step % self.every == 0 and step < trainer.max_steps:
            save_checkpoint(trainer, self.path)
