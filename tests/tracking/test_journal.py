"""MLflow down mid-sweep: records go to the journal, the sweep goes on, ``sync`` replays them once."""

from __future__ import annotations

import argparse

import pytest
from mlflow import MlflowClient

import tune.tracking.tracker as tracker_module
from tune.tracking.runs import TrialRecorder
from tune.tracking.sync import Journal
from tune.tracking.tracker import SweepTracker


class FakeTrial:
    def __init__(self, trial_id: str, config: dict, error_file: str | None = None) -> None:
        self.trial_id, self.config, self.error_file = trial_id, config, error_file
        self.last_result: dict = {}

    def __str__(self) -> str:
        return f"train_{self.trial_id}"


class Outage:
    """Makes every store write fail with a connection error while ``down`` is set."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.down = False
        apply, finish = TrialRecorder.apply, tracker_module.record_finish

        def guarded(function):
            def call(*args, **kwargs):
                if self.down:
                    raise ConnectionError("connection refused (simulated outage)")
                return function(*args, **kwargs)

            return call

        monkeypatch.setattr(TrialRecorder, "apply", guarded(apply))
        monkeypatch.setattr("tune.tracking.tracker.record_finish", guarded(finish))


def report(callback, trial: FakeTrial, step: int, val_loss: float) -> None:
    trial.last_result = {"training_iteration": step, "val_loss": val_loss, "mi": 1.0 / val_loss}
    callback.on_trial_result(iteration=step, trials=[], trial=trial, result=trial.last_result)


def children(client: MlflowClient, tracker: SweepTracker) -> dict:
    runs = client.search_runs([tracker.experiment_id])
    return {r.data.tags["dmi.trial_id"]: r for r in runs if r.data.tags.get("dmi.role") == "trial"}


def steps(client: MlflowClient, run) -> list[int]:
    return sorted(m.step for m in client.get_metric_history(run.info.run_id, "val_loss"))


def sync(storage) -> int:
    from tune.commands import sync as command

    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    return command.run(parser.parse_args(["outage", "--storage", str(storage)]))


def test_outage_is_journaled_and_replayed_once_by_sync(recorded, tmp_path, monkeypatch, capsys):
    config = {"name": "outage", "model_name": "dmi-journal-test", "scheduler": {"max_t": 2}}
    tracker = SweepTracker.create(None, str(tmp_path), "dmi-outage", "outage", config)
    tracker.start(resumed=False)
    callback = tracker.tune_callback()
    outage = Outage(monkeypatch)
    client = MlflowClient(tracker.tracking_uri)

    a = FakeTrial("aaaa0001", {"learning_rate": 0.01})
    callback.on_trial_start(iteration=0, trials=[], trial=a)
    report(callback, a, 1, 2.0)
    outage.down = True
    report(callback, a, 2, 1.5)
    callback.on_trial_complete(iteration=0, trials=[], trial=a)
    outage.down = False  # back, but the callback waits out its retry delay: order is kept
    error = tmp_path / "error.txt"
    error.write_text("Traceback ...\nValueError: bad trial\n")
    b = FakeTrial("bbbb0002", {"learning_rate": 0.5}, str(error))
    callback.on_trial_start(iteration=0, trials=[], trial=b)
    callback.on_trial_error(iteration=0, trials=[], trial=b)

    journal = Journal(tracker.journal_path)
    assert [r["op"] for r in journal.records()] == ["trial_result", "trial_end", "trial_start", "trial_end"]
    live = children(client, tracker)
    assert list(live) == ["aaaa0001"] and steps(client, live["aaaa0001"]) == [1]

    outage.down = True
    summary = {
        "objective": "val_loss",
        "best_metrics": {"objective": 1.5},
        "final_estimate": {"mi": 0.7},
        "best_trial_id": "aaaa0001",
    }
    assert tracker.finish(summary, recorded.grid, recorded.checkpoint_dir, "FINISHED") is None
    records = journal.records()
    assert records[-1]["op"] == "finish" and len(records) == 5
    outage.down = False

    assert sync(tmp_path) == 0
    assert "5 records replayed" in capsys.readouterr().out
    assert not journal.pending()

    def check() -> None:
        runs = children(client, tracker)
        assert sorted(runs) == ["aaaa0001", "bbbb0002"]
        assert steps(client, runs["aaaa0001"]) == [1, 2]
        a, b = runs["aaaa0001"], runs["bbbb0002"]
        assert a.info.status == "FINISHED" and a.data.tags["dmi.trial_status"] == "finished"
        assert b.info.status == "FAILED" and b.data.tags["dmi.error"] == "ValueError: bad trial"
        parent = client.get_run(tracker.parent_run_id)
        assert parent.info.status == "FINISHED" and parent.data.metrics["final_mi"] == 0.7
        assert len(client.search_model_versions("name = 'dmi-journal-test'")) == 1

    check()
    for record in records:  # the same records once more: replay is idempotent
        journal.append(record)
    assert sync(tmp_path) == 0
    check()
    assert sync(tmp_path) == 0 and "nothing to sync" in capsys.readouterr().out


def test_the_callback_replays_its_journal_itself_once_the_store_answers(tmp_path, monkeypatch):
    tracker = SweepTracker.create(None, str(tmp_path), "dmi-outage", "outage", {"name": "outage"})
    tracker.start(resumed=False)
    callback = tracker.tune_callback()
    callback.retry_after_s = 0.0
    outage = Outage(monkeypatch)
    client = MlflowClient(tracker.tracking_uri)
    trial = FakeTrial("cccc0003", {"learning_rate": 0.01})

    outage.down = True
    callback.on_trial_start(iteration=0, trials=[], trial=trial)
    report(callback, trial, 1, 2.0)
    assert Journal(tracker.journal_path).pending() and not children(client, tracker)
    outage.down = False
    report(callback, trial, 2, 1.0)
    assert not Journal(tracker.journal_path).pending()
    assert steps(client, children(client, tracker)["cccc0003"]) == [1, 2]
