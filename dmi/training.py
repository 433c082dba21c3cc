"""Fit an estimator on a sample: preprocessing, Gaussian base, Lightning Trainer, checkpoints.

Shared by the library API, the command line and the sweep trainable, so all three train
the same way.
"""

from __future__ import annotations

import contextlib
import math
import os
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch

from dmi.config import EstimatorConfig
from dmi.data import DataError, SampleDataModule, Standardizer, rank_gauss, rank_gauss_knots, validate_sample
from dmi.denoisers import GaussianDenoiser
from dmi.module import DiffusionMIModule
from dmi.selection import HeldOutSelection
from dmi.tempfiles import atomic_path

# Lightning messages that do not apply here, silenced only while ``fit`` trains: advice
# about dataloader workers (batches are device gathers, not loader workers), and the note
# that a validation loader is empty (when training runs without a validation split).
LIGHTNING_NOISE = (".*does not have many workers.*", ".*Total length of .* across ranks is zero.*")


@contextlib.contextmanager
def lightning_noise_ignored() -> Iterator[None]:
    """Ignore ``LIGHTNING_NOISE`` inside the block, every other warning as before."""
    with warnings.catch_warnings():
        for message in LIGHTNING_NOISE:
            warnings.filterwarnings("ignore", message=message)
        yield


Preprocessed = tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]


def build_module(
    cfg: EstimatorConfig,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray | None = None,
    y_val: np.ndarray | None = None,
) -> DiffusionMIModule:
    """A fresh module whose preprocessing and Gaussian base are fitted on the training set.

    Held-out rows, when given, choose the Gaussian base's regularisation and, with
    ``preprocess="auto"``, between ``rescale`` and ``rank_gauss``: the one under which the
    fitted Gaussian gives the held-out x the lower NLL in x's own coordinates (Jacobian
    included). A quantile map is a small-sample blessing for heavy tails and a curse at
    very high MI, where its knot noise exceeds the conditional spread of x. Without
    held-out rows, ``auto`` means ``rescale``.
    """
    return _build_module(cfg, x_train, y_train, x_val, y_val)[0]


def _build_module(
    cfg: EstimatorConfig,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray | None,
    y_val: np.ndarray | None,
) -> tuple[DiffusionMIModule, Preprocessed]:
    """``build_module``, and the training (and held-out) rows under the chosen preprocessing."""
    # A sweep's rows come read-only from Ray's object store; torch warns before sharing such memory.
    x_train, y_train = np.require(x_train, requirements="W"), np.require(y_train, requirements="W")
    cfg = cfg.for_training_rows(len(x_train))
    if x_val is not None and y_val is not None:
        x_val, y_val = np.require(x_val, requirements="W"), np.require(y_val, requirements="W")
    module = DiffusionMIModule(x_train.shape[1], y_train.shape[1], **cfg.as_dict())
    if cfg.preprocess == "auto":
        choices = ["rescale", "rank_gauss"] if x_val is not None else ["rescale"]
    else:
        choices = [cfg.preprocess]
    best: tuple[float, str, GaussianDenoiser | None, Preprocessed] | None = None
    for choice in choices:
        fit_preprocessing(module, choice, x_train, y_train)
        px, py = module.preprocess(torch.as_tensor(x_train), torch.as_tensor(y_train))
        if x_val is None:
            best = (0.0, choice, GaussianDenoiser.from_sample(px, py), (px, py, None, None))
            break
        vx, vy = module.preprocess(torch.as_tensor(x_val), torch.as_tensor(y_val))
        base = GaussianDenoiser.from_sample_selected(px, py, vx, vy)
        score = sum(base.gaussian_nll(vx, vy)) - 2 * float(module.log_jacobian_x(torch.as_tensor(x_val)).mean())
        if best is None or score < best[0]:
            best = (score, choice, base, (px, py, vx, vy))
    _, choice, base, rows = best
    # Refit the chosen maps (a later candidate overwrote them); they are a function of the
    # training rows alone, so ``rows``, computed under the same maps, stay exact.
    fit_preprocessing(module, choice, x_train, y_train)
    if module.denoiser.base is not None:
        module.denoiser.base.load_state_dict(base.state_dict())
    return module, rows


def fit_preprocessing(module: DiffusionMIModule, method: str, x: np.ndarray, y: np.ndarray) -> None:
    """Set ``module``'s per-coordinate maps (``rescale``, ``rank_gauss`` or ``none``) from training rows."""
    xt, yt = torch.as_tensor(x, dtype=torch.float64), torch.as_tensor(y, dtype=torch.float64)
    module.rank_gauss_on.fill_(method == "rank_gauss")
    if method == "rank_gauss":
        module.set_rank_knots(rank_gauss_knots(np.asarray(x)), rank_gauss_knots(np.asarray(y)))
        xt, yt = rank_gauss(xt, module.x_knots), rank_gauss(yt, module.y_knots)
    scaling = "none" if method == "none" else "rescale"
    sx, sy = Standardizer.fit(xt.numpy(), scaling), Standardizer.fit(yt.numpy(), scaling)
    module.set_preprocessing(sx.shift, sx.scale, sy.shift, sy.scale)


def fitted_choices(module: DiffusionMIModule) -> dict[str, Any]:
    """What the training data chose: the networks (members=None), the preprocessing, the Gaussian base."""
    cfg = module.cfg
    out: dict[str, Any] = {
        "preprocessing": module.preprocessing,
        "members": cfg.members,
        "member_width": cfg.model_dim,
        "batch_rows": cfg.batch_size,
    }
    base = module.denoiser.base
    if base is not None:
        out.update(
            base_rank=int(base.rank),
            base_shrinkage=float(base.shrinkage),
            base_gaussian_mi=float(base.gaussian_mi),
        )
    return out


def holdout_split(x: np.ndarray, y: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, ...]:
    """(x_fit, y_fit, x_val, y_val): a seeded random ``fraction`` of the training sample for selection."""
    n_val = int(round(len(x) * fraction))
    if n_val < 2 or len(x) - n_val < 2:
        raise DataError(
            f"too few samples to hold out a validation set: {len(x)} training samples at val_fraction {fraction:g}"
        )
    order = np.random.default_rng([seed, 1]).permutation(len(x))
    val, keep = order[:n_val], order[n_val:]
    return x[keep], y[keep], x[val], y[val]


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


MIN_VAL_INTERVAL = 200
VAL_COST_SHARE = 0.1


def auto_val_interval(cfg: EstimatorConfig, n_val: int) -> int:
    """Steps between held-out evaluations: 200, or more where evaluation would cost over ~10 %.

    One evaluation passes the validation rows and a training probe of at most as many
    rows through both predictions at ``val_n_logsnr`` nodes; a step is about three passes
    of a batch. On 5,000 samples that allows 200; on 100,000, about 1,500.
    """
    from dmi.selection import PROBE_ROWS

    rows = (n_val + min(n_val, PROBE_ROWS)) * cfg.val_n_logsnr * 2
    return max(MIN_VAL_INTERVAL, math.ceil(rows / (3 * cfg.batch_size * VAL_COST_SHARE)))


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
    """Train ``cfg`` on (x_train, y_train) and return the weights selected on held-out data.

    Without (x_val, y_val), ``cfg.val_fraction`` of the training sample is held out (never
    the caller's test data). Every ``val_every_n_steps`` steps (default ``cfg.val_interval``,
    else ``auto_val_interval``) the label-free held-out NLL is evaluated; training stops
    after ``cfg.patience`` evaluations without a significant improvement (``max_steps`` is a
    cap) and the selected weights are restored. ``module.selection`` then says how they were
    chosen. ``val_fraction=0`` and no validation data trains to ``max_steps`` and keeps the
    last weights.

    ``ckpt_path`` resumes a Lightning checkpoint (optimizer, EMA, selection state and step
    count included).
    """
    x_train, y_train = validate_sample(x_train, y_train, min_samples=2)
    if x_val is None and cfg.val_fraction > 0:
        x_train, y_train, x_val, y_val = holdout_split(x_train, y_train, cfg.val_fraction, cfg.seed)
    elif x_val is not None:
        x_val, y_val = validate_sample(x_val, y_val, min_samples=2)
    cfg = cfg.for_training_rows(len(x_train))  # members=None: packed or not, by the training rows
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    if module is None:
        module, (px, py, vx, vy) = _build_module(cfg, x_train, y_train, x_val, y_val)
    else:  # a given module keeps its own preprocessing
        px, py = module.preprocess(torch.as_tensor(x_train), torch.as_tensor(y_train))
        vx = vy = None
        if x_val is not None:
            vx, vy = module.preprocess(torch.as_tensor(x_val), torch.as_tensor(y_val))
    data = SampleDataModule(px, py, vx, vy, cfg.batch_size, seed=cfg.seed)
    selection = HeldOutSelection(cfg.patience) if vx is not None else None
    callbacks = [selection, *callbacks] if selection is not None else list(callbacks)
    interval = val_every_n_steps or cfg.val_interval or auto_val_interval(cfg, len(vx) if vx is not None else 0)
    trainer = make_trainer(cfg, callbacks, interval, **trainer_kwargs)
    if vx is None:
        trainer.limit_val_batches = 0
    with lightning_noise_ignored():
        trainer.fit(module, datamodule=data, ckpt_path=None if ckpt_path is None else str(ckpt_path), weights_only=True)
    if selection is not None:
        selection.restore_best(module)
        module.selection = selection.report(trainer)
    module.eval()
    return module, trainer


def save_checkpoint(
    trainer: pl.Trainer, path: str | os.PathLike, selected: DiffusionMIModule | None = None
) -> Path:
    """Write a Lightning checkpoint atomically: a temporary file, then a rename.

    ``selected``: the module ``fit`` returned, whose weights the checkpoint's ``state_dict``
    then holds. With EMA on, Lightning's ``EMAWeightAveraging`` writes its latest average
    there instead, which is not the weights held-out selection kept (nor the ones its domain
    reference describes): a checkpoint loaded for estimation must give the estimate that was
    recorded. The raw weights and the average for resuming training stay as Lightning saves them.
    """
    path = Path(path)
    with atomic_path(path) as tmp:
        trainer.save_checkpoint(tmp, weights_only=False)  # full state: optimizer, EMA, loops
        if selected is not None:
            checkpoint = torch.load(tmp, map_location="cpu", weights_only=True)
            checkpoint["state_dict"] = {k: v.detach().cpu() for k, v in selected.state_dict().items()}
            torch.save(checkpoint, tmp)
    return path


def load_module(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> DiffusionMIModule:
    """Load a trained module; tensors and plain values only (``weights_only=True``)."""
    module = DiffusionMIModule.load_from_checkpoint(str(path), map_location=map_location, weights_only=True)
    module.eval()
    return module
