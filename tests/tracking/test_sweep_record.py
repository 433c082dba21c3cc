"""A real tiny sweep, read back through ``MlflowClient`` from its temporary sqlite store."""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import tiny_sweep
from mlflow import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

PLOTS = {
    "optimization_history.png",
    "parallel_coordinates.png",
    "param_importances.png",
    "best_trial_mi.png",
    "best_spectrum.png",
}


@pytest.fixture(scope="module")
def store(recorded):
    client = MlflowClient(recorded.tracker.tracking_uri)
    runs = client.search_runs([recorded.tracker.experiment_id], max_results=100)
    runs = [r for r in runs if r.data.tags.get("dmi.sweep_name") == recorded.name]  # other tests add sweeps
    parents = [r for r in runs if r.data.tags.get("dmi.role") == "sweep"]
    children = {r.data.tags["dmi.trial_id"]: r for r in runs if r.data.tags.get("dmi.role") == "trial"}
    return client, parents, children


def test_store_is_an_absolute_sqlite_file_in_the_storage_folder(recorded):
    assert recorded.tracker.tracking_uri == f"sqlite:///{recorded.storage.resolve()}/mlflow.db"
    assert (recorded.storage / "mlflow.db").is_file()


def test_one_parent_and_one_child_per_trial_linked_to_it(recorded, store):
    client, parents, children = store
    assert len(parents) == 1
    parent = parents[0]
    assert parent.data.tags["dmi.sweep_name"] == recorded.name
    assert parent.info.status == "FINISHED"
    assert len(children) == len(tiny_sweep.POINTS) == len(recorded.grid)
    assert {r.data.tags[MLFLOW_PARENT_RUN_ID] for r in children.values()} == {parent.info.run_id}
    assert {r.metrics["trial_id"] for r in recorded.grid} == set(children)


def test_child_runs_hold_params_metrics_and_status(recorded, store):
    client, _, children = store
    runs_by_lr = {float(r.data.params["learning_rate"]): r for r in children.values()}
    unified, moe, stopped, failed = (runs_by_lr[p["learning_rate"]] for p in tiny_sweep.POINTS)

    assert moe.data.params["snr_threshold"] == "4.0" and moe.data.params["architecture"] == "moe"
    assert "snr_threshold" not in unified.data.params  # the conditional key of the branch not taken

    for run, reports in ((unified, tiny_sweep.MAX_REPORTS), (moe, tiny_sweep.MAX_REPORTS), (stopped, 1)):
        for key in ("val_loss", "mi", "mi_orthogonal", "mi_stderr", "mi_orthogonal_stderr"):
            history = client.get_metric_history(run.info.run_id, key)
            assert sorted(m.step for m in history) == list(range(1, reports + 1)), key
        assert "training_iteration" not in run.data.metrics and "pid" not in run.data.metrics

    assert unified.info.status == moe.info.status == "FINISHED"
    assert unified.data.tags["dmi.trial_status"] == moe.data.tags["dmi.trial_status"] == "finished"
    assert stopped.info.status == "FINISHED" and stopped.data.tags["dmi.trial_status"] == "stopped_early"
    assert failed.info.status == "FAILED" and failed.data.tags["dmi.trial_status"] == "failed"
    assert failed.data.tags["dmi.error"].startswith("FloatingPointError: training loss is nan")
    assert "\x1b[" not in failed.data.tags["dmi.error_detail"]


def test_parent_run_holds_config_best_trial_estimates_and_counts(recorded, store):
    client, parents, _ = store
    parent = client.get_run(parents[0].info.run_id)
    params, metrics, tags = parent.data.params, parent.data.metrics, parent.data.tags
    summary = recorded.summary

    assert params["objective"] == "val_loss" and params["scheduler.max_t"] == str(tiny_sweep.MAX_REPORTS)
    assert params["search.params.learning_rate"] == "[0.0001, 1.0]"
    assert tags["dmi.task"] == "multinormal_sparse_2_dim_2"
    assert tags["dmi.version.mlflow"] == mlflow.__version__ and "dmi.version.ray" in tags
    assert len(tags.get("mlflow.source.git.commit", "")) == 40  # the project is a git checkout

    assert tags["dmi.best_trial_id"] == summary["best_trial_id"]
    assert params["best.learning_rate"] == str(summary["best_config"]["learning_rate"])
    final = summary["final_estimate"]
    assert metrics["final_mi"] == pytest.approx(final["mi"])
    assert metrics["final_mi_orthogonal"] == pytest.approx(final["mi_orthogonal"])
    assert metrics["final_mi_stderr"] == pytest.approx(final["mi_stderr"])
    assert metrics["final_mi_orthogonal_stderr"] == pytest.approx(final["mi_orthogonal_stderr"])
    assert metrics["final_mi_cross"] == pytest.approx(0.5 * (final["mi"] + final["mi_orthogonal"]))
    assert metrics["final_mi_cross_stderr"] == pytest.approx(final["mi_cross_stderr"])
    assert metrics["abs_error_cross"] == pytest.approx(abs(final["mi_cross"] - summary["true_mi"]))
    assert metrics["gt_mi"] == pytest.approx(summary["true_mi"])
    assert metrics["abs_error"] == pytest.approx(abs(final["mi"] - summary["true_mi"]))
    assert metrics["objective_value"] == pytest.approx(summary["best_metrics"]["objective"])
    counts = {"finished": 2, "stopped_early": 1, "failed": 1}
    assert {k: metrics[f"trials_{k}"] for k in counts} == counts and metrics["trials_total"] == 4


def test_parent_run_artifacts(recorded, store, tmp_path):
    client, parents, children = store
    run_id = parents[0].info.run_id
    top = {a.path for a in client.list_artifacts(run_id)}
    expected = {"sweep_config.yaml", "best_config.yaml", "best_estimator_config.yaml", "results.csv", "plots"}
    assert expected | {"best_spectrum.json"} <= top
    import json

    spectrum = json.load(open(client.download_artifacts(run_id, "best_spectrum.json", str(tmp_path))))
    assert spectrum["integral"] == pytest.approx(recorded.summary["final_estimate"]["mi"], abs=0.1)
    best_run = children[recorded.summary["best_trial_id"]].info.run_id  # and under the best trial's own run
    assert {a.path for a in client.list_artifacts(best_run, "spectrum")} == {
        "spectrum/best_spectrum.json",
        "spectrum/best_spectrum.png",
    }
    assert {a.path.split("/")[-1] for a in client.list_artifacts(run_id, "plots")} == PLOTS
    table = pd.read_csv(client.download_artifacts(run_id, "results.csv", str(tmp_path)))
    assert len(table) == len(tiny_sweep.POINTS) and set(table["trial_id"]) == set(children)
    assert table["error"].dropna().str.startswith("FloatingPointError").tolist() == [True]
    import yaml

    best = yaml.safe_load(open(client.download_artifacts(run_id, "best_config.yaml", str(tmp_path))))
    assert best == recorded.summary["best_config"]


def test_registered_champion_predicts_within_the_standard_error_of_the_final_estimate(
    recorded, task_data, monkeypatch
):
    outcome = recorded.outcome
    name = outcome["model_name"]
    assert name == "dmi-multinormal_sparse_2_dim_2"
    assert outcome["champion_version"] == outcome["model_version"]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", recorded.tracker.tracking_uri)  # as a colleague would
    model = mlflow.pyfunc.load_model(f"models:/{name}@champion")
    columns = [c["name"] for c in model.metadata.get_input_schema().to_dict()]
    assert columns == ["x0", "x1", "y0", "y1"]
    assert [c["name"] for c in model.metadata.get_output_schema().to_dict()] == [
        "mi",
        "mi_orthogonal",
        "mi_stderr",
        "mi_orthogonal_stderr",
        "mi_cross",
        "mi_cross_stderr",
        "in_domain",
        "domain_score",
    ]
    frame = pd.DataFrame(np.hstack([task_data["x_test"], task_data["y_test"]]), columns=columns)
    predicted = model.predict(frame)
    assert len(predicted) == 1
    assert bool(predicted["in_domain"][0]) and predicted["domain_score"][0] < 0.5
    final = recorded.summary["final_estimate"]
    for key in ("mi", "mi_orthogonal", "mi_cross"):
        assert abs(predicted[key][0] - final[key]) <= final[f"{key}_stderr"], key
        assert predicted[f"{key}_stderr"][0] > 0
    # The preprocessing statistics travel with the model (and in its metadata).
    preprocessing = model.metadata.metadata["preprocessing"]
    assert len(preprocessing["x_shift"]) == 2 and all(s > 0 for s in preprocessing["y_scale"])


def test_artifacts_live_beside_the_database(recorded, store):
    """Not in MLflow's default ./mlruns of whatever directory the driver ran in."""
    client, parents, _ = store
    root = client.get_experiment(recorded.tracker.experiment_id).artifact_location
    assert root == (recorded.storage.resolve() / "mlartifacts").as_uri()
    artifacts = Path(parents[0].info.artifact_uri.removeprefix("file://"))
    assert artifacts.is_relative_to(recorded.storage.resolve()) and (artifacts / "results.csv").is_file()
    assert (artifacts / "estimator" / "MLmodel").is_file()  # the registered pyfunc


def test_report_reads_the_sweep_back_from_mlflow(recorded, capsys):
    from tune.commands import report

    parser = argparse.ArgumentParser()
    report.add_arguments(parser)
    assert report.run(parser.parse_args([recorded.name, "--storage", str(recorded.storage)])) == 0
    out = capsys.readouterr().out
    assert f"trial {recorded.summary['best_trial_id']}" in out
    assert f"{recorded.summary['final_estimate']['mi']:.4f}" in out
    assert "2 finished" in out and "1 stopped_early" in out and "1 failed" in out
    db = recorded.storage.resolve() / "mlflow.db"
    assert f"mlflow ui --backend-store-uri sqlite:///{db} --host 127.0.0.1 --port 5000" in out


def champion(recorded, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", recorded.tracker.tracking_uri)
    return mlflow.pyfunc.load_model(f"models:/{recorded.outcome['model_name']}@champion")


def test_champion_on_a_fresh_sample_of_its_task_is_in_domain_and_agrees(recorded, task_data, monkeypatch):
    from dmi.diagnostics import EstimateWarning
    from dmi.tasks import sample_task

    x, y = sample_task(task_data["spec"], 1000, seed=12345)  # rows the sweep never saw
    frame = pd.DataFrame(np.hstack([x, y]), columns=["x0", "x1", "y0", "y1"])
    with warnings.catch_warnings():
        warnings.simplefilter("error", EstimateWarning)  # no false alarm
        predicted = champion(recorded, monkeypatch).predict(frame, params={"strict": True})
    assert bool(predicted["in_domain"][0]) and predicted["domain_score"][0] < 0.5
    final = recorded.summary["final_estimate"]
    se = np.hypot(predicted["mi_stderr"][0], final["mi_stderr"])  # two independent samples
    assert abs(predicted["mi"][0] - final["mi"]) <= 3 * se


def test_champion_on_independent_data_warns_and_strict_refuses(recorded, monkeypatch):
    """True MI 0, the same columns: the estimator must not give a confident number silently."""
    from dmi.diagnostics import EstimateWarning

    rng = np.random.default_rng(7)
    frame = pd.DataFrame(rng.normal(size=(1000, 4)) * [3.0, 1.0, 1.0, 0.2], columns=["x0", "x1", "y0", "y1"])
    model = champion(recorded, monkeypatch)
    with pytest.warns(EstimateWarning, match="data unlike the estimator's training data"):
        predicted = model.predict(frame)
    assert not bool(predicted["in_domain"][0]) and predicted["domain_score"][0] > 2.0
    with pytest.raises(ValueError, match=r"refused \(strict\): data unlike"):
        model.predict(frame, params={"strict": True})
