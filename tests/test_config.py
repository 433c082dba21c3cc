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


def test_every_field_says_what_it_does() -> None:
    import dataclasses

    for f in dataclasses.fields(EstimatorConfig):
        text = f.metadata.get("help")
        assert isinstance(text, str) and text.strip(), f"{f.name} has no metadata help"


def test_estimate_help_shows_each_field_help(capsys) -> None:
    import dataclasses

    from dmi.cli import main

    with pytest.raises(SystemExit) as stop:
        main(["estimate", "--help"])
    assert stop.value.code == 0
    shown = "".join(capsys.readouterr().out.split())  # argparse rewraps (and may split at hyphens)
    for f in dataclasses.fields(EstimatorConfig):
        assert "".join(f.metadata["help"].split()) in shown, f.name


def test_the_log_snr_range_and_proposal_come_from_the_config() -> None:
    cfg = EstimatorConfig(logsnr_loc=2.0, logsnr_scale=3.0, logsnr_clip=4.0)
    assert cfg.logsnr_range == (-10.0, 14.0)
    proposal = cfg.proposal()
    assert (proposal.loc, proposal.scale, proposal.clip) == (2.0, 3.0, 4.0)
    assert (proposal.low, proposal.high) == cfg.logsnr_range
    assert EstimatorConfig().logsnr_range == (-12.0, 24.0)


def test_import_loads_no_torch() -> None:
    import subprocess
    import sys

    code = "import sys, dmi.cli, dmi.config; assert 'torch' not in sys.modules, 'torch imported'"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
