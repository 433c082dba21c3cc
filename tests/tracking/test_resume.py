"""Resuming or rerunning a sweep reopens its runs: no duplicate parent, child or model version."""

from __future__ import annotations

import ray.cloudpickle
import tiny_sweep
from mlflow import MlflowClient

from tune.tracking.tracker import SweepTracker


class FakeTrial:
    """What a Tune callback reads from a trial (a restarted driver sees the same trial ids)."""

    def __init__(self, trial_id: str, config: dict, iterations: int, error_file: str | None = None) -> None:
        self.trial_id, self.config = trial_id, config
        self.last_result = {"training_iteration": iterations}
        self.error_file = error_file

    def __str__(self) -> str:
        return f"train_{self.trial_id}"


def sweep_runs(client: MlflowClient, experiment_id: str, name: str, role: str) -> list:
    wanted = {"dmi.sweep_name": name, "dmi.role": role}
    runs = client.search_runs([experiment_id], max_results=500)
    return [r for r in runs if all(r.data.tags.get(k) == v for k, v in wanted.items())]


def test_rerun_reopens_the_parent_and_reuses_children_and_model_version(recorded, tmp_path):
    client = MlflowClient(recorded.tracker.tracking_uri)
    experiment_id, name = recorded.tracker.experiment_id, recorded.name
    children = sweep_runs(client, experiment_id, name, "trial")
    model = recorded.outcome["model_name"]
    versions = len(client.search_model_versions(f"name = '{model}'"))

    tracker = SweepTracker.create(
        None, str(recorded.storage), "dmi-tiny", name, recorded.config, **tiny_sweep.same_task(recorded)
    )
    assert tracker.start(resumed=True) == recorded.tracker.parent_run_id
    assert client.get_run(tracker.parent_run_id).data.tags["dmi.starts"] == "2"

    # Tune pickles callbacks into tuner.pkl; an unpickled one must still work.
    callback = ray.cloudpickle.loads(ray.cloudpickle.dumps(tracker.tune_callback()))
    error_file = tmp_path / "error.txt"
    for run in children:
        config = {k: v if k == "architecture" else float(v) for k, v in run.data.params.items()}
        reports = len(client.get_metric_history(run.info.run_id, "val_loss"))
        status = run.data.tags["dmi.trial_status"]
        if status == "failed":
            error_file.write_text(run.data.tags["dmi.error_detail"])
        trial = FakeTrial(run.data.tags["dmi.trial_id"], config, reports, str(error_file))
        callback.on_trial_start(iteration=0, trials=[], trial=trial)
        assert client.get_run(run.info.run_id).info.status == "RUNNING"  # reopened, not duplicated
        if status == "failed":
            callback.on_trial_error(iteration=0, trials=[], trial=trial)
        else:
            callback.on_trial_complete(iteration=0, trials=[], trial=trial)
        after = client.get_run(run.info.run_id)
        assert after.data.tags["dmi.trial_status"] == status and after.info.status == run.info.status
        assert after.data.tags.get("dmi.error") == run.data.tags.get("dmi.error")
    assert len(sweep_runs(client, experiment_id, name, "trial")) == len(children)
    assert len(sweep_runs(client, experiment_id, name, "sweep")) == 1

    outcome = tracker.finish(recorded.summary, recorded.grid, recorded.checkpoint_dir, "FINISHED")
    assert outcome["model_version"] == recorded.outcome["model_version"]
    assert len(client.search_model_versions(f"name = '{model}'")) == versions
    assert client.get_run(tracker.parent_run_id).info.status == "FINISHED"
