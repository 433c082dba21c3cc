"""What a sweep survives in one bad night (see ``night.py``): each test checks one fault's outcome."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pandas as pd
import pytest
from fault_helpers import MlflowServer, free_port
from night import DIVERGING_LR, NIGHT, REPORTS, Night, count_records, mlflow_runs, run_night

pytestmark = pytest.mark.faults


@pytest.fixture(scope="module")
def night(tmp_path_factory, fault_ledger):
    folder = tmp_path_factory.mktemp("night")
    server = MlflowServer(folder / "mlflow", free_port())
    record = Night(folder, server)
    try:
        run_night(record, fault_ledger)
        yield record
    finally:
        print(f"night phases (s): {record.phases}; left by run 1: {record.left_by_run_1}")  # seen with -s
        server.stop()


@pytest.fixture(scope="module")
def trials(night):
    """Tune's final word on every trial, with its reports and error file, by trial id."""
    from ray.tune import ExperimentAnalysis

    found = {}
    for trial in ExperimentAnalysis(str(night.experiment)).trials:
        folder = night.experiment / f"trial_{trial.trial_id}"
        progress = folder / "progress.csv"
        error = folder / "error.txt"
        found[trial.trial_id] = SimpleNamespace(
            status=trial.status,
            config=trial.config,
            failures=trial.run_metadata.num_failures,
            reports=pd.read_csv(progress) if progress.exists() and progress.stat().st_size else pd.DataFrame(),
            error=error.read_text(errors="replace") if error.exists() else "",
            folder=folder,
        )
    return found


@pytest.fixture(scope="module")
def mlflow_record(night):
    """The sweep's parent runs and child runs (by trial id), read from the restarted server."""
    from mlflow import MlflowClient

    client = MlflowClient(night.server.uri)
    parents, children = mlflow_runs(client)
    return SimpleNamespace(client=client, parents=parents, children=children)


def iterations(reports: pd.DataFrame) -> set[int]:
    return set(reports["training_iteration"]) if "training_iteration" in reports else set()


def resumed_from_checkpoint(reports: pd.DataFrame) -> bool:
    """A report counted from a restore, later than the first: the trial went on instead of starting over."""
    return bool((reports["iterations_since_restore"] < reports["training_iteration"]).any())


def summary(night: Night) -> dict:
    return json.loads((night.experiment / "dmi_summary.json").read_text())


def test_an_unreachable_store_at_start_is_refused_before_any_training(night, fault_ledger):
    code, output, uri = night.refused
    assert code == 2, output
    assert output.startswith(f"dmi-tune: error: tracking store {uri} is unreachable") and output.count("\n") == 1
    assert not (night.storage / "refused").exists()  # no experiment folder, no trial, no Ray
    fault_ledger.survive("MLflow unreachable at start")


def test_a_killed_worker_is_retried_from_its_checkpoint(night, trials, fault_ledger):
    folder, index_at_kill = night.killed_worker
    trial = trials[folder.removeprefix("trial_")]
    assert trial.status == "TERMINATED" and trial.failures >= 1, trial.error
    assert "Failure # 1" in trial.error and "its worker process has died" in trial.error, trial.error
    assert iterations(trial.reports) == set(range(1, REPORTS + 1))
    assert index_at_kill >= 1 and resumed_from_checkpoint(trial.reports)
    # A lost worker is retried (above); a diverged trial is not: NaN would come back every time.
    diverged = [t for t in trials.values() if t.config["learning_rate"] == DIVERGING_LR]
    assert [t.failures for t in diverged] == [0]
    fault_ledger.survive("worker SIGKILL")


def test_a_diverging_trial_fails_in_tune_mlflow_and_optuna_and_the_sweep_goes_on(
    night, trials, mlflow_record, fault_ledger
):
    from ray.tune.search.optuna import OptunaSearch

    ((trial_id, trial),) = [(i, t) for i, t in trials.items() if t.config["learning_rate"] == DIVERGING_LR]
    # NaN at its first validation: one last report that says so, no retry, no error file.
    assert trial.failures == 0 and trial.error == ""
    assert list(trial.reports["diverged"]) == [1.0] and trial.reports["val_loss"].isna().all()
    assert all(t.status == "TERMINATED" for t in trials.values())  # the sweep went on
    row = next(r for r in summary(night)["trials"] if r["trial_id"] == trial_id)
    assert row["status"] == "DIVERGED" and row["failure"].startswith("FloatingPointError")
    assert "training diverged" in row["failure"]
    assert summary(night)["trial_counts"].get("DIVERGED") == 1

    (run,) = mlflow_record.children[trial_id]
    assert run.info.status == "FAILED" and run.data.tags["dmi.trial_status"] == "failed"
    assert run.data.tags["dmi.error"].startswith("FloatingPointError") and "diverged" in run.data.tags["dmi.error"]

    searcher = OptunaSearch()
    searcher.restore_from_dir(str(night.experiment))  # the searcher state Tune saved with the experiment
    study = searcher._ot_study
    states = {t.params["learning_rate"]: (t.state.name, t.value) for t in study.trials}
    assert states[DIVERGING_LR] == ("FAIL", None)
    assert all(state == "COMPLETE" for lr, (state, _) in states.items() if lr != DIVERGING_LR)
    assert study.best_trial.params["learning_rate"] != DIVERGING_LR
    assert summary(night)["best_config"]["learning_rate"] != DIVERGING_LR
    fault_ledger.survive("diverging trial")


def test_a_killed_driver_resumes_keeping_finished_trials(night, trials, mlflow_record, fault_ledger):
    code, output = night.second
    assert code == 0 and f"resuming {NIGHT['name']}" in output, output[-4000:]
    assert summary(night)["state"] == "finished"
    # The time budget goes on from what run 1 spent (Tune's own would restart from zero).
    assert 0 < night.budget_spent_at_kill < summary(night)["budget_spent_s"] < NIGHT["time_budget_s"]
    assert len(trials) == len(list(night.experiment.glob("trial_*"))) == NIGHT["search"]["num_samples"]

    # Trials finished before the kill were left alone.
    assert "TERMINATED" in night.saved_at_kill.values()
    for trial_id, progress in night.kept_progress.items():
        assert (trials[trial_id].folder / "progress.csv").read_text() == progress, trial_id
    # Interrupted ones went on from their checkpoints: after the kill, no report 1 again.
    assert night.checkpointed_at_kill
    for trial_id in night.checkpointed_at_kill:
        reports = trials[trial_id].reports
        run_2 = reports[reports["timestamp"] > night.driver_killed_at + 2]  # run 1's workers were gone by then
        assert trials[trial_id].status == "TERMINATED" and not run_2.empty, trial_id
        assert run_2["training_iteration"].min() > 1 and resumed_from_checkpoint(run_2), run_2
    rows = {row["trial_id"]: row for row in summary(night)["trials"]}
    for trial_id, trial in trials.items():
        if trial.status == "TERMINATED" and trial.config["learning_rate"] != DIVERGING_LR:
            assert iterations(trial.reports) == set(range(1, REPORTS + 1))
            assert rows[trial_id]["reports"] == REPORTS  # a report repeated after the restore counts once

    # MLflow: one parent, one child per trial (none duplicated by the restart), parent FINISHED.
    assert len(mlflow_record.parents) == 1 and mlflow_record.parents[0].info.status == "FINISHED"
    assert sorted(mlflow_record.children) == sorted(trials)
    assert all(len(runs) == 1 for runs in mlflow_record.children.values())
    fault_ledger.survive("driver SIGKILL")


def test_mlflow_lost_mid_sweep_loses_no_record(night, trials, mlflow_record, fault_ledger):
    code, output = night.second
    assert code == 0 and summary(night)["state"] == "finished", output[-4000:]
    assert night.journaled > 0  # the outage really cost records, kept in the journal meanwhile

    code, output = night.sync_down
    assert code == 2 and "still unavailable" in output and "journal kept" in output, output
    code, output = night.sync_up
    assert code == 0 and "records replayed into MLflow" in output, output
    assert not list(night.experiment.glob("mlflow-journal.jsonl"))

    expected, found, missing = count_records(mlflow_record.client, night.experiment)
    fault_ledger.lose(expected - found)
    assert found == expected, f"{expected - found} of {expected} records lost: {missing}"
    # Without the journal they would have been: the outage really cost records until the sync.
    during_expected, during_found, _ = night.during_outage
    assert during_expected == expected and during_found < expected
    fault_ledger.survive("MLflow server SIGKILL")


def test_the_local_ray_of_a_driver_serves_no_dashboard_beyond_localhost(night):
    """Ray's internal gRPC ports bind to all interfaces (Ray has no loopback-only mode on Linux): Ray's
    servers must run with token authentication, and the dashboard must be off or on 127.0.0.1 only.
    (``tests/tune/test_local_ray_auth.py`` also shows an outsider refused.)"""
    assert night.sockets, "no process of run 1 was seen"
    servers = [p for p, (command, _) in night.sockets.items() if command.split()[0].endswith(("gcs_server", "raylet"))]
    assert len(servers) == 2, {p: c[:40] for p, (c, _) in night.sockets.items()}
    for pid in servers:
        assert night.environments[pid].get("RAY_AUTH_MODE") == "token" and night.environments[pid].get("RAY_AUTH_TOKEN")
    dashboards = {pid: sockets for pid, (command, sockets) in night.sockets.items() if "dashboard.py" in command}
    assert all(address == "127.0.0.1" for sockets in dashboards.values() for address, _ in sockets), dashboards
    assert not any(port == 8265 for _, sockets in night.sockets.values() for _, port in sockets)
