"""Fit an estimator on a sample: preprocessing, Gaussian base, Lightning Trainer, checkpoints.

Shared by the library API, the command line and the sweep trainable, so all three train
the same way.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch

from dmi.config import EstimatorConfig
from dmi.data import SampleDataModule, Standardizer, validate_sample
from dmi.module import DiffusionMIModule

# Lightning's advice about dataloader workers does not apply: batches are device gathers.
warnings.filterwarnings("ignore", message=".*does not have many workers.*")
warnings.filterwarnings("ignore", message=".*Total length of .* across ranks is zero.*")


def build_module(cfg: EstimatorConfig, x_train: np.ndarray, y_train: np.ndarray) -> DiffusionMIModule:
    """A fresh module whose preprocessing and Gaussian base are fitted on the training set."""
    sx, sy = Standardizer.fit(x_train, cfg.preprocess), Standardizer.fit(y_train, cfg.preprocess)
    module = DiffusionMIModule(x_train.shape[1], y_train.shape[1], **cfg.as_dict())
    module.set_preprocessing(sx.shift, sx.scale, sy.shift, sy.scale)
    xt, yt = module.preprocess(torch.as_tensor(x_train), torch.as_tensor(y_train))
    module.set_gaussian_base(xt, yt)
    return module


def make_trainer(
    cfg: EstimatorConfig,
    callbacks: Sequence[pl.Callback] = (),
    val_every_n_steps: int | None = None,
    **trainer_kwargs: Any,
) -> pl.Trainer:
    """A Trainer counted in steps, with Lightning's EMA callback when ``use_ema`` is on."""
    callbacks = list(callbacks)
    if cfg.use_ema:
        from lightning.pytorch.callbacks import EMAWeightAveraging

        callbacks.append(EMAWeightAveraging(decay=cfg.ema_decay))
    kwargs: dict[str, Any] = dict(
        max_steps=cfg.max_steps,
        max_epochs=-1,
        accelerator="auto",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        check_val_every_n_epoch=None,
        val_check_interval=val_every_n_steps or max(cfg.max_steps // 10, 1),
        log_every_n_steps=50,
    )
    kwargs.update(trainer_kwargs)
    return pl.Trainer(callbacks=callbacks, **kwargs)


def fit(
    cfg: EstimatorConfig,
    x_train,
    y_train,
    x_val=None,
    y_val=None,
    *,
    callbacks: Sequence[pl.Callback] = (),
    val_every_n_steps: int | None = None,
    ckpt_path: str | os.PathLike | None = None,
    module: DiffusionMIModule | None = None,
    **trainer_kwargs: Any,
) -> tuple[DiffusionMIModule, pl.Trainer]:
    """Train ``cfg`` on (x_train, y_train), validating on (x_val, y_val) if given.

    ``ckpt_path`` resumes a Lightning checkpoint (optimizer, EMA and step count included);
    training then continues up to ``cfg.max_steps``. With EMA on, the returned module
    holds the averaged weights.
    """
    x_train, y_train = validate_sample(x_train, y_train, min_samples=2)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    module = module or build_module(cfg, x_train, y_train)
    px, py = (
        module.preprocess(torch.as_tensor(a), torch.as_tensor(b)) for a, b in [(x_train, y_train)]
    ).__next__()
    vx = vy = None
    if x_val is not None:
        x_val, y_val = validate_sample(x_val, y_val, min_samples=2)
        vx, vy = module.preprocess(torch.as_tensor(x_val), torch.as_tensor(y_val))
    data = SampleDataModule(px, py, vx, vy, cfg.batch_size, seed=cfg.seed)
    trainer = make_trainer(cfg, callbacks, val_every_n_steps, **trainer_kwargs)
    if vx is None:
        trainer.limit_val_batches = 0
    trainer.fit(
        module, datamodule=data, ckpt_path=None if ckpt_path is None else str(ckpt_path), weights_only=True
    )
    module.eval()
    return module, trainer


def save_checkpoint(trainer: pl.Trainer, path: str | os.PathLike) -> Path:
    """Write a Lightning checkpoint atomically: a temporary file, then a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        trainer.save_checkpoint(tmp, weights_only=False)  # full state: optimizer, EMA, loops
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def load_module(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> DiffusionMIModule:
    """Load a trained module; tensors and plain values only (``weights_only=True``)."""
    module = DiffusionMIModule.load_from_checkpoint(str(path), map_location=map_location, weights_only=True)
    module.eval()
    return module
