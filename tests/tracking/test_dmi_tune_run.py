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
    "compare_defaults": False,  # its record is tested on a summary below: the defaults train ~20 s
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
    # How the objective ranked the trials by true error, and its plot: one point per trial.
    ranking = summary["ranking"]
    assert parent.data.metrics["fidelity_regret"] == ranking["regret"]
    assert parent.data.metrics["fidelity_pick_abs_error"] == ranking["pick_abs_error"]
    assert "fidelity.disagreement.regret" in parent.data.metrics
    plots = {a.path for a in client.list_artifacts(parent.info.run_id, "plots")}
    assert "plots/objective_vs_abs_error.png" in plots
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


def test_summary_metrics_carry_fidelity_and_the_library_defaults():
    from tune.tracking.finish import summary_metrics

    summary = {
        "ranking": {
            "spearman": 0.6,
            "regret": 0.01,
            "pick_abs_error": 0.05,
            "best_abs_error": 0.04,
            "candidates": {"val_loss": {"spearman": -0.2, "regret": 0.3}},
        },
        "library_defaults": {"mi": 1.1, "mi_stderr": 0.03, "abs_error": 0.08, "trained_steps": 3000},
        "final_domain": {"in_domain": True, "domain_score": 0.08},
        "budget_spent_s": 120.5,
    }
    metrics = summary_metrics(summary)
    assert metrics["final_in_domain"] == 1.0 and metrics["final_domain_score"] == 0.08
    assert metrics["budget_spent_s"] == 120.5
    assert metrics["fidelity_spearman"] == 0.6 and metrics["fidelity_regret"] == 0.01
    assert metrics["fidelity.val_loss.spearman"] == -0.2
    assert metrics["defaults_abs_error"] == 0.08 and metrics["defaults_trained_steps"] == 3000
