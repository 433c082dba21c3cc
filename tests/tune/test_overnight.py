"""Overnight sweeps: one experiment per night, one Optuna study across nights, a clean end on the budget."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pandas as pd
import pytest
from sweep_helpers import tiny_config, write_config

import tune.overnight
from tune.cli import main
from tune.overnight import night_of, nightly_name


def test_a_night_is_named_after_the_evening_it_began() -> None:
    assert night_of(dt.datetime(2026, 12, 1, 22, 0)) == dt.date(2026, 12, 1)
    assert night_of(dt.datetime(2026, 12, 2, 3, 30)) == dt.date(2026, 12, 1)  # resumed after midnight: same night
    assert night_of(dt.datetime(2026, 12, 2, 12, 0)) == dt.date(2026, 12, 2)
    assert nightly_name("overnight", dt.datetime(2026, 1, 1, 2, 0)) == "overnight-2025-12-31"


def _last_val_losses(experiment: Path) -> dict[str, float]:
    """Each trial's config (as JSON) -> its last reported val_loss (what the searcher tells Optuna)."""
    out = {}
    for folder in experiment.glob("trial_*"):
        config = json.loads((folder / "params.json").read_text())
        out[json.dumps(config, sort_keys=True)] = float(pd.read_csv(folder / "progress.csv")["val_loss"].iloc[-1])
    return out


def test_two_nights_build_one_optuna_study(local_ray, tmp_path, capsys, monkeypatch) -> None:
    import optuna

    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    config = tiny_config(
        name="nightly",
        search={"num_samples": 2, "optuna_storage": url, "study_name": "dmi-nightly"},
        scheduler={"type": "fifo"},
    )
    path, storage = write_config(tmp_path, config), tmp_path / "results"
    nights = {}
    for evening in (dt.datetime(2026, 12, 1, 22, 0), dt.datetime(2026, 12, 3, 1, 0)):
        monkeypatch.setattr(tune.overnight, "now", lambda evening=evening: evening)
        assert main(["run", str(path), "--storage", str(storage), "--nightly"]) == 0
        nights[evening] = capsys.readouterr().out
    first, second = (storage / "nightly-2026-12-01"), (storage / "nightly-2026-12-02")
    assert sorted(p.name for p in storage.iterdir() if p.is_dir()) == [first.name, second.name]
    assert "continuing from" not in nights[dt.datetime(2026, 12, 1, 22, 0)]
    assert "optuna study dmi-nightly: continuing from 2 earlier trials" in nights[dt.datetime(2026, 12, 3, 1, 0)]

    study = optuna.load_study(study_name="dmi-nightly", storage=url)
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 4
    first_losses, second_losses = _last_val_losses(first), _last_val_losses(second)
    assert len(first_losses) == len(second_losses) == 2
    assert sorted(t.value for t in study.trials) == pytest.approx(
        sorted([*first_losses.values(), *second_losses.values()])
    )
    # The second night neither re-runs the first night's points nor redraws its random start.
    assert not set(first_losses) & set(second_losses)


def test_unusable_optuna_storage_exits_2_before_anything_runs(tmp_path, capsys) -> None:
    config = tiny_config(search={"optuna_storage": "nosuchdialect://host/db", "study_name": "s"})
    storage = tmp_path / "results"
    assert main(["run", str(write_config(tmp_path, config)), "--storage", str(storage)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dmi-tune: error: search.optuna_storage: cannot open 'nosuchdialect://host/db'")
    assert not storage.exists()


def test_time_budget_ends_the_night_with_everything_recorded(local_ray, tmp_path) -> None:
    """Exit 3; the final estimate from the best report; every MLflow run closed, none left running."""
    from mlflow import MlflowClient

    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    config = tiny_config(
        name="budget",
        tracking=True,
        tracking_uri=tracking,
        time_budget_s=20,
        estimator={"max_steps": 600},
        search={"num_samples": 30},
        scheduler={"type": "fifo"},
        trials={"max_concurrent_trials": 1},
    )
    storage = tmp_path / "results"
    assert main(["run", str(write_config(tmp_path, config)), "--storage", str(storage)]) == 3
    summary = json.loads((storage / "budget" / "dmi_summary.json").read_text())
    assert summary["state"] == "time_budget" and 1 <= summary["n_trials"] < 30
    reported = [row for row in summary["trials"] if row["objective"] is not None]
    assert summary["best_metrics"]["val_loss"] == min(row["objective"] for row in reported)
    assert summary["final_estimate"]["n_points"] == 1000 and Path(summary["best_checkpoint"]).is_dir()

    client = MlflowClient(tracking)
    experiment = client.get_experiment_by_name("budget")
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert len(children) == summary["n_trials"]
    assert {r.info.status for r in children} <= {"FINISHED", "KILLED"}
