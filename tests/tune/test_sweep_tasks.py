"""A multi-task sweep: one experiment per task, each tracked in MLflow, indexed under the sweep's name."""

from __future__ import annotations

import json

import pytest
from sweep_helpers import tiny_config, write_config

from tune.cli import main


@pytest.mark.slow  # about 45 s: two experiments, each with its own trial workers and MLflow record
def test_multi_task_sweep_runs_one_tracked_experiment_per_task(local_ray, tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # MLflow's sqlite store makes ./mlruns in the working directory
    tasks = [
        {"task_type": "multinormal", "dim": 3, "strength": 2},
        {"task_type": "half_cube", "dim": 3, "strength": 2},
    ]
    config = tiny_config(
        name="multi",
        tracking=True,
        tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
        estimator={"max_steps": 60},
        search={"num_samples": 2, "points_to_evaluate": []},
        scheduler={"type": "fifo"},
    )
    config["data"] = {"tasks": tasks, "n_train": 2000, "n_val": 500, "n_test": 500}
    storage = tmp_path / "results"
    assert main(["run", str(write_config(tmp_path, config)), "--storage", str(storage)]) == 0
    names = ["multi-multinormal_sparse_2_dim_3", "multi-half_cube_multinormal_sparse_2_dim_3"]
    index = json.loads((storage / "multi" / "dmi_summary.json").read_text())
    assert index["kind"] == "multi_task" and index["state"] == "finished"
    assert [e["name"] for e in index["experiments"]] == names
    for entry in index["experiments"]:
        summary = json.loads((storage / entry["name"] / "dmi_summary.json").read_text())
        assert summary["n_trials"] == 2 and summary["data"]["label"] == entry["task"]
        assert entry["final_estimate"] == summary["final_estimate"] and entry["true_mi"] == summary["true_mi"]

    capsys.readouterr()
    assert main(["status", "multi", "--storage", str(storage)]) == 0
    out = capsys.readouterr().out
    assert all(f"{n}: finished; 2 trials" in out for n in names)

    from mlflow import MlflowClient

    client = MlflowClient(config["tracking_uri"])
    experiment = client.get_experiment_by_name("multi")
    runs = client.search_runs([experiment.experiment_id])
    parents = {r.info.run_name: r.info.status for r in runs if r.info.run_name in names}
    assert parents == {n: "FINISHED" for n in names}
