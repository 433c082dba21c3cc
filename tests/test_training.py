"""Training recovers a known MI; checkpoints round-trip; EMA on and off both train."""

from __future__ import annotations

import pytest
import torch

from dmi.config import EstimatorConfig
from dmi.training import build_module, fit, load_module, save_checkpoint


# The mixture's variant is slow (38 s); the default run trains a mixture in tests/test_moe.py and the sweeps.
@pytest.mark.parametrize("architecture", ["unified", pytest.param("moe", marks=pytest.mark.slow)])
def test_recovers_weak_multinormal(architecture: str, weak_task_sample) -> None:
    s = weak_task_sample
    cfg = EstimatorConfig(architecture=architecture, max_steps=1500, gaussian_base=False)
    module, trainer = fit(cfg, s["x_train"], s["y_train"], s["x_test"], s["y_test"])
    est = module.estimate(s["x_test"], s["y_test"], seed=0)
    assert abs(est.mi - s["mi"]) < 0.15, est
    assert abs(est.mi_orthogonal - s["mi"]) < 0.15, est
    assert abs(est.mi_cross - s["mi"]) < 0.15, est
    for key in ("train_loss", "val_loss", "val_nll_x", "val_nll_x_given_y", "mi", "mi_orthogonal"):
        assert key in trainer.callback_metrics


def test_save_load_estimate_is_identical(tmp_path, weak_task_sample) -> None:
    s = weak_task_sample
    cfg = EstimatorConfig(architecture="moe", max_steps=100, model_dim=32)
    module, trainer = fit(cfg, s["x_train"], s["y_train"])
    path = save_checkpoint(trainer, tmp_path / "m.ckpt")
    assert not list(tmp_path.glob("*.tmp"))
    again = load_module(path)
    a = module.estimate(s["x_test"], s["y_test"], seed=5)
    b = again.estimate(s["x_test"], s["y_test"], seed=5)
    assert a.mi == b.mi and a.mi_orthogonal == b.mi_orthogonal
    assert again.cfg == module.cfg


def test_a_checkpoint_from_before_y_squares_loads_as_it_was_trained(tmp_path, weak_task_sample) -> None:
    """Checkpoints saved before ``y_squares`` existed hold a network without y² inputs."""
    s = weak_task_sample
    cfg = EstimatorConfig(max_steps=30, model_dim=8, n_blocks=1, y_squares=False, val_fraction=0.0)
    module, trainer = fit(cfg, s["x_train"], s["y_train"])
    path = save_checkpoint(trainer, tmp_path / "old.ckpt")
    checkpoint = torch.load(path, weights_only=True)
    del checkpoint["hyper_parameters"]["y_squares"]  # as an older release saved it
    torch.save(checkpoint, path)
    again = load_module(path)
    assert again.cfg.y_squares is False
    assert again.estimate(s["x_test"], s["y_test"], seed=1).mi == module.estimate(s["x_test"], s["y_test"], seed=1).mi


def test_a_saved_ema_run_loads_the_selected_weights(tmp_path, weak_task_sample) -> None:
    """Under EMA the selected weights are not the latest average, which Lightning would save."""
    s = weak_task_sample
    cfg = EstimatorConfig(max_steps=400, model_dim=16, n_blocks=1, use_ema=True, ema_decay=0.9, patience=2)
    module, trainer = fit(cfg, s["x_train"], s["y_train"], val_every_n_steps=100)
    assert module.selection.selected_step < module.selection.trained_steps  # an earlier step was kept
    plain = save_checkpoint(trainer, tmp_path / "plain.ckpt")
    chosen = save_checkpoint(trainer, tmp_path / "selected.ckpt", selected=module)
    a = module.estimate(s["x_test"], s["y_test"], seed=5)
    assert load_module(chosen).estimate(s["x_test"], s["y_test"], seed=5).mi == a.mi
    assert load_module(chosen).domain_reference == module.domain_reference
    # Without ``selected`` the file holds the last average: the recorded estimate would not come back.
    assert load_module(plain).estimate(s["x_test"], s["y_test"], seed=5).mi != a.mi
    _, resumed = fit(cfg.replace(max_steps=500), s["x_train"], s["y_train"], ckpt_path=chosen)
    assert resumed.global_step > trainer.global_step  # still resumable


@pytest.mark.parametrize("use_ema", [False, True])
def test_ema_on_and_off_both_train(use_ema: bool, weak_task_sample) -> None:
    s = weak_task_sample
    cfg = EstimatorConfig(max_steps=400, model_dim=32, use_ema=use_ema, ema_decay=0.99, gaussian_base=False)
    start = build_module(cfg, s["x_train"], s["y_train"]).estimate(s["x_test"], s["y_test"], seed=0)
    module, trainer = fit(cfg, s["x_train"], s["y_train"], s["x_test"], s["y_test"], val_every_n_steps=200)
    end = module.estimate(s["x_test"], s["y_test"], seed=0)
    # Training lowers the held-out NLL bounds and moves MI up from its zero start.
    assert end.nll_x + end.nll_x_given_y < start.nll_x + start.nll_x_given_y - 0.5
    assert abs(start.mi) < 1e-6 and end.mi_orthogonal > 0.5
    ema = [c for c in trainer.callbacks if type(c).__name__ == "EMAWeightAveraging"]
    assert bool(ema) == use_ema
    if use_ema:  # the returned weights are the averaged ones
        averaged = dict(ema[0]._average_model.module.named_parameters())
        for name, param in module.named_parameters():
            assert torch.allclose(param, averaged[name].to(param.device))


def test_resume_from_checkpoint_continues_the_step_count(tmp_path, weak_task_sample) -> None:
    s = weak_task_sample
    cfg = EstimatorConfig(max_steps=60, model_dim=16)
    _, trainer = fit(cfg, s["x_train"], s["y_train"])
    path = save_checkpoint(trainer, tmp_path / "m.ckpt")
    _, trainer2 = fit(cfg.replace(max_steps=100), s["x_train"], s["y_train"], ckpt_path=path)
    assert trainer2.global_step == 100


def test_batches_resume_mid_epoch_where_they_stopped() -> None:
    from dmi.data import TensorBatches

    x = torch.arange(20, dtype=torch.float32).reshape(10, 2)
    full = TensorBatches(x, x, batch_size=2, seed=3)
    first = [b[0].clone() for b in full]
    partial = TensorBatches(x, x, batch_size=2, seed=3)
    it = iter(partial)
    next(it), next(it)
    resumed = TensorBatches(x, x, batch_size=2, seed=3)
    resumed.load_state_dict(partial.state_dict())
    rest = [b[0] for b in resumed]
    assert len(rest) == 3 and all(torch.equal(a, b) for a, b in zip(first[2:], rest, strict=True))


def test_read_only_rows_build_a_module_without_a_warning() -> None:
    """A sweep's rows come read-only from Ray's object store: torch would warn in every trial."""
    import warnings

    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.standard_normal((200, 2))
    y = x + rng.standard_normal((200, 2))
    for array in (x, y):
        array.setflags(write=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        build_module(EstimatorConfig(), x, y, x[:50], y[:50])
