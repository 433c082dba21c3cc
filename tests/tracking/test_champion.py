"""The ``champion`` alias moves only to a model whose objective beats the current champion's."""

from __future__ import annotations

import pytest
import tiny_sweep
from mlflow import MlflowClient


def champion_version(client: MlflowClient, name: str) -> str:
    return str(client.get_model_version_by_alias(name, "champion").version)


def test_a_worse_sweep_registers_a_version_but_keeps_the_champion(recorded):
    from tune.tracking.tracker import SweepTracker

    client = MlflowClient(recorded.tracker.tracking_uri)
    name = recorded.outcome["model_name"]
    before = champion_version(client, name)
    worse = recorded.summary["best_metrics"]["objective"] + 1.0
    tracker = SweepTracker.create(
        None, str(recorded.storage), "dmi-tiny", "tiny-worse", recorded.config, **tiny_sweep.same_task(recorded)
    )
    tracker.start(resumed=False)
    summary = tiny_sweep.with_objective(recorded.summary, objective_value=worse)
    outcome = tracker.finish(summary, recorded.grid, recorded.checkpoint_dir, "FINISHED")

    assert outcome["model_name"] == name and outcome["model_version"] != before
    assert outcome["champion_moved"] is False and champion_version(client, name) == before
    version = client.get_model_version(name, outcome["model_version"])
    assert float(version.tags["dmi.objective_value"]) == pytest.approx(worse)
    parent = client.get_run(outcome["parent_run_id"]).data
    assert parent.metrics["final_mi"] == pytest.approx(recorded.summary["final_estimate"]["mi"])
    assert parent.metrics["objective_value"] == pytest.approx(worse)
    assert parent.tags["dmi.champion_moved"] == "false"


def test_champion_moves_to_a_better_model_and_not_across_objectives(recorded):
    from tune.tracking.registry import log_and_register

    client = MlflowClient(recorded.tracker.tracking_uri)
    name = "dmi-champion-rule"
    experiment = recorded.tracker.experiment_id

    def register(objective: str, value: float, trial: str):
        run = client.create_run(experiment, run_name=f"sweep-{trial}")
        checkpoint = recorded.checkpoint_dir
        registered = log_and_register(client, run.info.run_id, checkpoint, name, objective, value, trial)
        return registered, champion_version(client, name)

    first, champion = register("val_loss", 5.0, "a")
    assert first.promoted and champion == first.version  # no champion yet: the first one is it
    worse, champion = register("val_loss", 5.5, "b")
    assert not worse.promoted and champion == first.version
    better, champion = register("val_loss", 4.5, "c")
    assert better.promoted and champion == better.version
    other, champion = register("abs_error", 0.01, "d")  # a different yardstick is not comparable
    assert not other.promoted and champion == better.version
