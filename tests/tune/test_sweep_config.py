"""A bad sweep config exits with code 2 and names the field, before anything starts or is written."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sweep_helpers import TINY, tiny_config, write_config

from dmi.config import EstimatorConfig
from tune.cli import main
from tune.config import load_config

ROOT = Path(__file__).resolve().parents[2]


def _search(**params):
    return {**TINY["search"], "params": {**TINY["search"]["params"], **params}}


def _logsnr_range() -> tuple[float, float]:
    d = EstimatorConfig()
    return d.logsnr_loc - d.logsnr_clip * d.logsnr_scale, d.logsnr_loc + d.logsnr_clip * d.logsnr_scale


BAD = {
    "unknown top-level key": (dict(colour="blue"), "colour"),
    "unknown estimator key": (dict(estimator={"colour": 1}), "estimator.colour"),
    "wrong estimator type": (dict(estimator={"max_steps": "many"}), "estimator.max_steps"),
    "wrong bool type": (dict(estimator={"gaussian_base": "yes"}), "estimator.gaussian_base"),
    "wrong members type": (dict(estimator={"members": "four"}), "estimator.members"),
    "wrong bound type": (
        dict(search=_search(model_dim={"low": "8", "high": 16})),
        "search.params.model_dim.low",
    ),
    "low above high": (
        dict(search=_search(learning_rate={"low": 1e-2, "high": 1e-3})),
        "search.params.learning_rate",
    ),
    "log scale from zero": (
        dict(search=_search(learning_rate={"low": 0.0, "high": 1e-3})),
        "search.params.learning_rate.low",
    ),
    "snr outside log-SNR range": (
        dict(search=_search(snr_threshold={"low": _logsnr_range()[0] - 1, "high": 0.0})),
        "search.params.snr_threshold",
    ),
    "unknown objective": (dict(objective="accuracy"), "objective"),
    "unknown architecture": (
        dict(search=_search(architecture={"choices": ["unified", "dense"]})),
        "search.params.architecture",
    ),
    "ema_decay without EMA": (dict(search=_search(use_ema={"choices": [False]})), "search.params.ema_decay"),
    "searched and fixed": (dict(estimator={"max_steps": 120, "model_dim": 8}), "search.params.model_dim"),
    "not searchable": (dict(search=_search(max_steps={"low": 10, "high": 20})), "search.params.max_steps"),
    "seed point off branch": (
        dict(
            search={
                **TINY["search"],
                "points_to_evaluate": [{"architecture": "unified", "snr_threshold": 3.0}],
            }
        ),
        "search.points_to_evaluate[0].snr_threshold",
    ),
    "seed point out of range": (
        dict(search={**TINY["search"], "points_to_evaluate": [{"model_dim": 64}]}),
        "search.points_to_evaluate[0].model_dim",
    ),
    "grace period beyond reports": (dict(scheduler={"grace_period": 10}), "scheduler.grace_period"),
    "report interval beyond steps": (dict(trials={"val_every_n_steps": 500}), "trials.val_every_n_steps"),
    "report interval not dividing": (dict(trials={"val_every_n_steps": 50}), "trials.val_every_n_steps"),
    "negative gpu": (dict(trials={"resources": {"cpu": 1, "gpu": -1}}), "trials.resources.gpu"),
    "missing data size": (dict(data={"n_train": None}), "data.n_train"),
    "unknown task type": (dict(data={**TINY["data"], "task_type": "banana"}), "data"),
    "two data sources": (dict(data={**TINY["data"], "path": "x.npz"}), "data"),
    "missing name": (dict(name=None), "name"),
}


def _drop_nulls(config: dict) -> dict:
    """A None in ``changes`` removes the key (a missing required field)."""
    return {k: _drop_nulls(v) if isinstance(v, dict) else v for k, v in config.items() if v is not None}


@pytest.mark.parametrize("changes, field", BAD.values(), ids=BAD.keys())
def test_bad_config_exits_2_naming_the_field(tmp_path, capsys, changes, field) -> None:
    config = _drop_nulls(tiny_config(**changes))
    storage = tmp_path / "results"
    code = main(["run", str(write_config(tmp_path, config)), "--storage", str(storage)])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("dmi-tune: error: ") and len(err.splitlines()) == 1, err
    assert f" {field}" in err or f"error: {field}" in err, err
    assert not storage.exists()


def test_abs_error_objective_needs_known_truth(tmp_path, capsys) -> None:
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "pairs.npz", x=rng.normal(size=(50, 2)), y=rng.normal(size=(50, 2)))
    config = tiny_config(objective="abs_error", data={"path": "pairs.npz"})
    config["data"] = {"path": "pairs.npz"}
    assert main(["run", str(write_config(tmp_path, config))]) == 2
    assert "objective: abs_error needs a benchmark task" in capsys.readouterr().err


def test_missing_file_and_bad_yaml_exit_2(tmp_path, capsys) -> None:
    assert main(["run", str(tmp_path / "absent.yaml")]) == 2
    (tmp_path / "bad.yaml").write_text("name: [unclosed\n")
    assert main(["run", str(tmp_path / "bad.yaml")]) == 2
    err = capsys.readouterr().err
    assert "no such file" in err and "not valid YAML" in err


def test_bad_data_file_exits_2_before_ray_starts(tmp_path, capsys) -> None:
    np.savez(tmp_path / "only_x.npz", x=np.zeros((40, 2)))
    config = tiny_config()
    config["data"] = {"path": "only_x.npz"}
    storage = tmp_path / "results"
    assert main(["run", str(write_config(tmp_path, config)), "--storage", str(storage)]) == 2
    assert "no array 'y'" in capsys.readouterr().err
    assert not storage.exists()


def test_unknown_sweep_name_exits_2(tmp_path, capsys) -> None:
    assert main(["status", "nothing", "--storage", str(tmp_path)]) == 2
    assert main(["best", "nothing", "--storage", str(tmp_path)]) == 2
    assert capsys.readouterr().err.count("dmi-tune: error:") == 2


@pytest.mark.parametrize("path", sorted((ROOT / "configs" / "sweep").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_are_valid(path) -> None:
    cfg = load_config(path)
    assert cfg.search.num_samples >= 1 and cfg.scheduler.max_t >= 1


def test_fields_whose_default_is_none_take_an_integer_or_null(tmp_path) -> None:
    """members and val_interval default to None (automatic); a sweep may fix them."""
    fixed = {"members": 1, "val_interval": 40}
    cfg = load_config(write_config(tmp_path, tiny_config(estimator={**TINY["estimator"], **fixed})))
    assert (cfg.base_estimator().members, cfg.base_estimator().val_interval) == (1, 40)
    cfg = load_config(write_config(tmp_path, tiny_config(estimator={**TINY["estimator"], "members": None})))
    assert cfg.base_estimator().members is None


def test_shipped_sweeps_cover_the_issue() -> None:
    quick, overnight, grid = (
        load_config(ROOT / "configs" / "sweep" / f"{n}.yaml") for n in ("quick", "overnight", "grid")
    )
    assert quick.data.is_benchmark and {"architecture", "model_dim", "learning_rate"} <= set(quick.search.params)
    assert overnight.data.n_train + overnight.data.n_val == 100_000 and overnight.data.n_test == 10_000
    assert len(grid.data.tasks) >= 3


def test_unreachable_tracking_store_exits_2_before_anything_runs(tmp_path, capsys) -> None:
    config = tiny_config(tracking=True)
    storage = tmp_path / "results"
    code = main(
        [
            "run",
            str(write_config(tmp_path, config)),
            "--storage",
            str(storage),
            "--tracking-uri",
            "http://127.0.0.1:9",
        ]
    )
    assert code == 2
    assert "127.0.0.1:9" in capsys.readouterr().err
    assert not storage.exists()


@pytest.mark.parametrize("path", sorted((ROOT / "configs" / "sweep").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_sweep_enqueues_the_library_defaults(path) -> None:
    """The sweep's pick is chosen among the defaults too (benchmarks/selection.py scores it so)."""
    defaults = EstimatorConfig()
    points = load_config(path).search.points_to_evaluate
    assert any(all(getattr(defaults, k) == v for k, v in p.items()) for p in points), points
