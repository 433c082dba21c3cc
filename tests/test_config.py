"""Hyperparameter validation names the field."""

from __future__ import annotations

import pytest

from dmi.config import ConfigError, EstimatorConfig


@pytest.mark.parametrize(
    "changes, field",
    [
        (dict(architecture="dense"), "architecture"),
        (dict(model_dim=0), "model_dim"),
        (dict(learning_rate=-1.0), "learning_rate"),
        (dict(ema_decay=1.0), "ema_decay"),
        (dict(y_drop_prob=1.0), "y_drop_prob"),
        (dict(batch_size=2.5), "batch_size"),
        (dict(preprocess="minmax"), "preprocess"),
    ],
)
def test_bad_values_name_the_field(changes, field) -> None:
    with pytest.raises(ConfigError, match=field):
        EstimatorConfig(**changes)


def test_unknown_key_is_named() -> None:
    with pytest.raises(ConfigError, match="colour"):
        EstimatorConfig.from_dict({"colour": "blue"})


def test_model_dim_is_honoured() -> None:
    from dmi.module import build_denoiser

    denoiser = build_denoiser(EstimatorConfig(model_dim=37), 50, 50)
    assert denoiser.inner.width == 37 and denoiser.inner.in_proj.weight.shape == (1, 101, 37)
    moe = build_denoiser(EstimatorConfig(architecture="moe", model_dim=37), 50, 50)
    assert moe.inner.low.in_proj.weight.shape == moe.inner.high.in_proj.weight.shape == (1, 101, 37)
