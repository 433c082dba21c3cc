"""End to end: ``dmi-tune run`` with tracking on records the sweep; ``report`` reads it back."""

from __future__ import annotations

import argparse
import json

import yaml
from mlflow import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

CONFIG = {
    "name": "e2e",
    "objective": "val_loss",
    "data": {
        "task_type": "multinormal",
        "dim": 2,
        "strength": 2,
        "n_train": 2000,
        "n_val": 400,
        "n_test": 500,
    },
    "estimator": {
        "max_steps": 40,
        "model_dim": 8,
        "n_blocks": 1,
        "batch_size": 128,
        "val_n_logsnr": 8,
        "patience": 1000,
    },
    "search": {
        "num_samples": 2,
        "seed": 0,
        "params": {"architecture": {"choices": ["unified", "moe"]}, "snr_threshold": {"low": 2, "high": 6}},
        "points_to_evaluate": [{"architecture": "unified"}, {"architecture": "moe", "snr_threshold": 4.0}],
    },
    "scheduler": {"type": "fifo"},
    "trials": {"val_every_n_steps": 20, "resources": {"cpu": 1}, "max_concurrent_trials": 2},
    "final_n_logsnr": 16,
    "tracking": True,
}


def test_dmi_tune_run_records_the_sweep_and_report_reads_it(ray_session, tmp_path, capsys):
    from tune.cli import main

    config = tmp_path / "e2e.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    storage = tmp_path / "results"
    assert main(["run", str(config), "--storage", str(storage)]) == 0
    summary = json.loads((storage / "e2e" / "dmi_summary.json").read_text())

    client = MlflowClient(f"sqlite:///{storage}/mlflow.db")
    experiment = client.get_experiment_by_name("e2e")
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if r.data.tags.get("dmi.role") == "sweep"]
    children = [r for r in runs if r.data.tags.get("dmi.role") == "trial"]
    assert len(parents) == 1 and len(children) == 2
    parent = parents[0]
    assert {c.data.tags[MLFLOW_PARENT_RUN_ID] for c in children} == {parent.info.run_id}
    assert {c.data.tags["dmi.trial_status"] for c in children} == {"finished"}
    assert {c.data.params["architecture"] for c in children} == {"unified", "moe"}
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["dmi.best_trial_id"] == summary["best_trial_id"]
    assert parent.data.metrics["final_mi"] == summary["final_estimate"]["mi"]
    assert parent.data.metrics["gt_mi"] == summary["true_mi"]
    assert parent.data.metrics["trials_finished"] == 2
    version = client.get_model_version_by_alias("dmi-multinormal_sparse_2_dim_2", "champion")
    assert version.run_id == parent.info.run_id

    from tune.commands import report  # `dmi-tune report` once registered in tune.commands

    parser = argparse.ArgumentParser()
    report.add_arguments(parser)
    capsys.readouterr()
    assert report.run(parser.parse_args(["e2e", "--storage", str(storage)])) == 0
    out = capsys.readouterr().out
    assert f"trial {summary['best_trial_id']}" in out and "2 finished" in out
    assert "--host 127.0.0.1" in out
