"""Parent and child runs, found again by tags so that a resumed or rerun sweep never duplicates them.

Trial records apply idempotently: child runs are looked up first, metrics carry Tune's report time.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Mapping
from typing import Any

from mlflow import MlflowClient
from mlflow.entities import Metric, Param, Run, RunTag
from mlflow.exceptions import MlflowException
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from tune.tracking.uri import artifact_root

log = logging.getLogger(__name__)

TAG_SWEEP = "dmi.sweep_name"
TAG_ROLE = "dmi.role"  # "sweep" on the parent, "trial" on children
TAG_TRIAL_ID = "dmi.trial_id"
TAG_TRIAL_STATUS = "dmi.trial_status"  # finished | stopped_early | failed
MAX_PARAM_VALUE, MAX_TAG_VALUE = 6000, 8000  # MLflow's limits on a value
BATCH = 100  # MLflow's limit on params per log_batch


def flatten(values: Mapping[str, Any], sep: str = ".", prefix: str = "") -> dict[str, Any]:
    """Nested mapping → ``{"a.b": value}`` (an empty mapping stays a value)."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, sep, f"{prefix}{key}{sep}"))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def flatten_params(values: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """MLflow params: dotted names; strings as they are, other values as JSON."""
    return {
        key: (value if isinstance(value, str) else json.dumps(value, default=str))[:MAX_PARAM_VALUE]
        for key, value in flatten(values, prefix=prefix).items()
    }


def log_params(client: MlflowClient, run_id: str, values: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Log the params not yet on the run; return those there with another value (immutable, not an error)."""
    params, existing = flatten_params(values, prefix), client.get_run(run_id).data.params
    fresh = [Param(key, value) for key, value in params.items() if key not in existing]
    for start in range(0, len(fresh), BATCH):
        client.log_batch(run_id, params=fresh[start : start + BATCH])
    return {key: value for key, value in params.items() if key in existing and existing[key] != value}


def log_batch(client: MlflowClient, run_id: str, tags: dict, metrics: dict, stamp: int = 0, step: int = 0) -> None:
    """Tags and metrics (at time ``stamp``, in ms, and ``step``) in one call."""
    stamped = [Metric(key, float(value), int(stamp), int(step)) for key, value in metrics.items()]
    client.log_batch(run_id, metrics=stamped, tags=[RunTag(key, value) for key, value in tags.items()])


def quoted(value: str) -> str:
    """A literal for an MLflow search filter."""
    return f'"{value}"' if "'" in value else f"'{value}'"


def open_experiment(client: MlflowClient, name: str) -> str:
    """The id of experiment ``name``, created (its files beside a sqlite database) or restored if need be."""
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        with contextlib.suppress(MlflowException):  # else created meanwhile by another driver
            client.create_experiment(name, artifact_root(client.tracking_uri))
        experiment = client.get_experiment_by_name(name)
    elif experiment.lifecycle_stage == "deleted":
        client.restore_experiment(experiment.experiment_id)
    return experiment.experiment_id


def parent_run(client: MlflowClient, experiment_id: str, sweep_name: str) -> tuple[Run, bool]:
    """The sweep's parent run (the oldest, should there be several) set running again, or a new one; created?"""
    query = f"tags.`{TAG_SWEEP}` = {quoted(sweep_name)} and tags.`{TAG_ROLE}` = 'sweep'"
    runs = client.search_runs([experiment_id], query, order_by=["attributes.start_time ASC"], max_results=1)
    if runs:
        client.update_run(runs[0].info.run_id, status="RUNNING")
        return runs[0], False
    tags = {TAG_SWEEP: sweep_name, TAG_ROLE: "sweep"}
    return client.create_run(experiment_id, tags=tags, run_name=sweep_name), True


def child_runs(client: MlflowClient, experiment_id: str, parent_run_id: str, trial_id: str | None = None) -> list[Run]:
    """The trial runs under a parent (or the one of ``trial_id``), oldest first; paged: there can be thousands."""
    query = f"tags.`{MLFLOW_PARENT_RUN_ID}` = '{parent_run_id}'"
    if trial_id is not None:
        query += f" and tags.`{TAG_TRIAL_ID}` = {quoted(trial_id)}"
    runs, token = [], None
    while True:
        page = client.search_runs([experiment_id], query, order_by=["attributes.start_time ASC"], page_token=token)
        runs.extend(page)
        if not (token := page.token):
            return runs


def trial_status(run: Run) -> str:
    """finished / stopped_early / failed as recorded, else what MLflow's run status says."""
    by_status = {"RUNNING": "running", "FAILED": "failed", "KILLED": "interrupted"}
    return run.data.tags.get(TAG_TRIAL_STATUS) or by_status.get(run.info.status, "finished")


class TrialRecorder:
    """Applies trial records to the store, remembering which child run belongs to which trial."""

    def __init__(self, client: MlflowClient) -> None:
        self.client = client
        self.run_ids: dict[tuple[str, str], str] = {}

    def apply(self, record: Mapping[str, Any]) -> None:
        op, trial, parent = record["op"], record["trial_id"], record["parent_run_id"]
        experiment, sweep = record["experiment_id"], record["sweep_name"]
        if op not in ("trial_start", "trial_result", "trial_end"):
            raise ValueError(f"unknown trial record {op!r}")
        if (parent, trial) not in self.run_ids:  # else found by tag, else created
            found = child_runs(self.client, experiment, parent, trial)
            if not found:
                tags = {MLFLOW_PARENT_RUN_ID: parent, TAG_TRIAL_ID: trial, TAG_SWEEP: sweep, TAG_ROLE: "trial"}
                name = record.get("trial_name") or trial
                found = [self.client.create_run(experiment, int(record["time"]), tags, run_name=name)]
            self.run_ids[parent, trial] = found[0].info.run_id
        run_id = self.run_ids[parent, trial]
        if op == "trial_start":
            if self.client.get_run(run_id).info.status != "RUNNING":
                # A trial restarted after the driver was interrupted: the run is live again.
                self.client.update_run(run_id, status="RUNNING")
                self.client.set_tag(run_id, TAG_TRIAL_STATUS, "running")
            conflicts = log_params(self.client, run_id, record.get("params", {}))
            if conflicts:
                log.warning("trial %s: params %s differ from the recorded ones", trial, list(conflicts))
        elif op == "trial_result" and record["metrics"]:
            log_batch(self.client, run_id, {}, record["metrics"], record["time"], record["step"])
        elif op == "trial_end":
            tags = {TAG_TRIAL_STATUS: record["status"]}
            if record.get("error"):
                tags["dmi.error"] = record["error"][:MAX_TAG_VALUE]
            if record.get("error_detail"):
                tags["dmi.error_detail"] = record["error_detail"][-MAX_TAG_VALUE:]
            log_batch(self.client, run_id, tags, {})
            status = "FAILED" if record["status"] == "failed" else "FINISHED"
            self.client.set_terminated(run_id, status=status, end_time=int(record["time"]))
