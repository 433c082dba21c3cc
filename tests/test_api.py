"""``DiffusionMI`` follows bmi's estimator protocol and runs inside bmi's benchmark code."""

from __future__ import annotations

import numpy as np
import pytest

from dmi import DataError, DiffusionMI


def test_runs_inside_bmi_benchmark(tmp_path) -> None:
    from bmi.benchmark import run_estimator
    from bmi.benchmark.tasks import task_multinormal_sparse

    task = task_multinormal_sparse(dim_x=2, dim_y=2, strength=2.0)
    sample = tmp_path / "sample.csv"
    task.save_sample(sample, n_samples=4000, seed=0)
    estimator = DiffusionMI(architecture="unified", max_steps=600, model_dim=32)
    result = run_estimator(estimator, "dmi-unified", sample, task.id, seed=0)
    assert result.success, result
    assert abs(result.mi_estimate - task.mutual_information) < 0.3
    info = result.additional_information
    assert {"mi_orthogonal", "mi_stderr", "mi_orthogonal_stderr", "train_seconds"} <= set(info)
    params = estimator.parameters()
    assert params.architecture == "unified" and params.model_dim == 32


def test_estimate_returns_float_and_refuses_bad_input() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 2))
    y = x + rng.normal(size=(400, 2))
    estimator = DiffusionMI(architecture="moe", max_steps=50, model_dim=8)
    assert isinstance(estimator.estimate(x, y), float)
    with pytest.raises(DataError, match="NaN"):
        estimator.estimate(np.where(x > 2, np.nan, x), y)
    with pytest.raises(DataError, match="different numbers"):
        estimator.estimate(x, y[:10])
    with pytest.raises(DataError, match="constant"):
        estimator.estimate(np.c_[x, np.ones(400)], y)
    with pytest.raises(DataError, match="too few"):
        estimator.estimate(x[:3], y[:3])


def test_parameters_are_a_typed_documented_model() -> None:
    import dataclasses

    import pydantic
    from bmi.interface import BaseModel

    from dmi.config import EstimatorConfig

    params = DiffusionMI(architecture="moe", model_dim=32, test_fraction=0.25).parameters()
    assert isinstance(params, BaseModel)
    assert params.architecture == "moe" and params.model_dim == 32 and params.test_fraction == 0.25
    model = type(params)
    for f in dataclasses.fields(EstimatorConfig):
        assert model.__fields__[f.name].field_info.description == f.metadata["help"]
    schema = model.schema()["properties"]
    assert schema["model_dim"]["minimum"] == 1 and schema["architecture"]["enum"] == ["unified", "moe"]
    assert schema["ema_decay"]["exclusiveMinimum"] == 0 and schema["ema_decay"]["exclusiveMaximum"] == 1
    with pytest.raises(pydantic.ValidationError, match="model_dim"):
        model(model_dim=0)
    with pytest.raises(pydantic.ValidationError, match="snr_threshold"):  # the config's cross-field check
        model(architecture="moe", snr_threshold=50.0)
