"""Held-out selection: validation split off the training rows, early stopping, best weights, resume."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dmi.commands.checkpoints import stored_selection
from dmi.config import ConfigError, EstimatorConfig
from dmi.data import DataError
from dmi.selection import HeldOutSelection
from dmi.training import fit, holdout_split, save_checkpoint

TINY = dict(model_dim=16, n_blocks=1, batch_size=256, val_interval=20, val_n_logsnr=8)


def noisy_pair(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2))
    return x, x + rng.normal(size=(n, 2))  # I = log 2 nats


def test_holdout_split_is_a_seeded_partition_of_the_training_rows() -> None:
    x, y = noisy_pair(1000)
    xf, yf, xv, yv = holdout_split(x, y, 0.1, seed=3)
    assert (len(xf), len(xv)) == (900, 100)
    rows = {tuple(r) for r in np.concatenate([xf, xv])}
    assert rows == {tuple(r) for r in x}
    again = holdout_split(x, y, 0.1, seed=3)
    assert np.array_equal(again[2], xv)
    with pytest.raises(DataError, match="too few samples to hold out"):
        holdout_split(x[:5], y[:5], 0.1, seed=0)


def test_config_refuses_bad_selection_values() -> None:
    for bad in (dict(val_fraction=0.6), dict(val_fraction=-0.1), dict(patience=0), dict(val_interval=0)):
        with pytest.raises(ConfigError, match=next(iter(bad))):
            EstimatorConfig(**bad)


def test_early_stopping_on_a_small_sample_keeps_the_best_weights() -> None:
    """200 rows, a budget of 3000 steps: the held-out NLL turns up long before the cap."""
    x, y = noisy_pair(200)
    cfg = EstimatorConfig(max_steps=3000, patience=5, learning_rate=5e-3, gaussian_base=False, **TINY)
    module, trainer = fit(cfg, x, y)
    report = module.selection
    assert report.stopped_early and trainer.global_step < cfg.max_steps
    assert report.trained_steps == trainer.global_step
    scores = dict(report.val_history)
    assert report.best_val_loss == scores[report.selected_step]
    # A later step replaces the selected one only when significantly better, so none is far lower.
    assert min(scores.values()) > report.best_val_loss - 0.5
    # After the best, patience validations without improvement, then the stop.
    later = [s for s in scores if s > report.selected_step]
    assert len(later) == cfg.patience
    # The returned module carries the selected weights: re-scoring the validation set gives the best score.
    selection = next(c for c in trainer.callbacks if isinstance(c, HeldOutSelection))
    val = trainer.datamodule.val
    est = module.estimate_preprocessed(val.x, val.y, cfg.val_n_logsnr, seed=0)
    assert est.nll_x + est.nll_x_given_y == pytest.approx(report.best_val_loss, abs=1e-4)
    assert selection is not None and selection.best_step == report.selected_step
    gap = report.as_dict()
    assert gap["nll_gap"] == pytest.approx(gap["val_nll"] - gap["train_nll"])
    # By the stop the network memorises its 180 rows: the held-out NLL is above the training one.
    assert float(trainer.callback_metrics["nll_gap"]) > gap["nll_gap"] + 0.1


def test_a_later_step_must_be_better_by_more_than_its_paired_standard_error() -> None:
    rule = HeldOutSelection(patience=3, min_se=1.0)
    rule.best_points, rule.best_score = torch.zeros(400, dtype=torch.float64), 0.0
    noise = torch.randn(400, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert not rule.significantly_better(noise - 0.01)  # 0.01 lower, paired SE 0.05: noise
    assert rule.significantly_better(noise - 0.2)  # 0.2 lower: 4 SE


def test_the_untrained_model_is_a_candidate() -> None:
    """With an exact Gaussian base, a network trained at a huge learning rate never beats step 0."""
    x, y = noisy_pair(2000)
    cfg = EstimatorConfig(max_steps=400, patience=3, learning_rate=0.5, **TINY)
    module, _ = fit(cfg, x, y)
    assert module.selection.val_history[0][0] == 0
    assert module.selection.selected_step == 0
    assert float(module.denoiser.inner.out.weight.abs().max()) == 0.0  # the zero-initialised output layer
    est = module.estimate(x, y, seed=0)  # the base's weights came back: MI is the Gaussian MI
    assert abs(est.mi - np.log(2)) < 0.1


def test_selection_off_trains_to_the_cap() -> None:
    x, y = noisy_pair(300)
    cfg = EstimatorConfig(max_steps=60, val_fraction=0.0, **TINY)
    module, trainer = fit(cfg, x, y)
    assert module.selection is None and trainer.global_step == 60


def test_selection_state_survives_a_checkpoint_and_resume(tmp_path) -> None:
    x, y = noisy_pair(400)
    cfg = EstimatorConfig(max_steps=80, patience=50, **TINY)
    module, trainer = fit(cfg, x, y)
    path = save_checkpoint(trainer, tmp_path / "a.ckpt")
    stored = stored_selection(path)
    assert stored.selected_step == module.selection.selected_step
    assert stored.val_history == module.selection.val_history
    assert stored.fit_gap == pytest.approx(module.selection.fit_gap)
    longer = cfg.replace(max_steps=160)
    resumed, trainer2 = fit(longer, x, y, ckpt_path=path)
    steps = [s for s, _ in resumed.selection.val_history]
    assert steps[: len(module.selection.val_history)] == [s for s, _ in module.selection.val_history]
    assert trainer2.global_step == 160 and steps[-1] == 160


def test_selected_weights_are_the_averaged_ones_under_ema() -> None:
    x, y = noisy_pair(400)
    cfg = EstimatorConfig(max_steps=100, patience=50, use_ema=True, ema_decay=0.9, **TINY)
    module, trainer = fit(cfg, x, y)
    selection = next(c for c in trainer.callbacks if isinstance(c, HeldOutSelection))
    val = trainer.datamodule.val
    est = module.estimate_preprocessed(val.x, val.y, cfg.val_n_logsnr, seed=0)
    assert est.nll_x + est.nll_x_given_y == pytest.approx(selection.best_score, abs=1e-4)
    assert torch.isfinite(torch.tensor(module.selection.best_val_loss))
