"""Parent and child runs, found again by tags so that a resumed or rerun sweep never duplicates them.

A trial's life reaches MLflow as three kinds of plain records (``trial_start``,
``trial_result``, ``trial_end``). Applying a record is idempotent: the child run is looked
up by its trial id before one is created, metrics carry the timestamp taken when Tune
reported them (the store drops exact duplicates), params are only ever re-logged with the
value they already have. So a record can be retried or replayed from the journal safely.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mlflow import MlflowClient
from mlflow.entities import Metric, Param, Run, RunStatus, RunTag
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

log = logging.getLogger(__name__)

TAG_SWEEP = "dmi.sweep_name"
TAG_ROLE = "dmi.role"  # "sweep" on the parent, "trial" on children
TAG_TRIAL_ID = "dmi.trial_id"
TAG_TRIAL_STATUS = "dmi.trial_status"  # finished | stopped_early | failed
TAG_ERROR = "dmi.error"
TAG_ERROR_DETAIL = "dmi.error_detail"

TRIAL_STATUSES = ("finished", "stopped_early", "failed")
MAX_PARAM_VALUE = 6000  # MLflow's limit on a param value
MAX_TAG_VALUE = 8000
BATCH = 100  # MLflow's limit on params per log_batch


@dataclass(frozen=True)
class SweepRuns:
    """Plain data naming a sweep's place in the store: travels in pickles and journal records."""

    tracking_uri: str
    experiment_id: str
    parent_run_id: str
    sweep_name: str

    def as_dict(self) -> dict[str, str]:
        return dict(
            tracking_uri=self.tracking_uri,
            experiment_id=self.experiment_id,
            parent_run_id=self.parent_run_id,
            sweep_name=self.sweep_name,
        )


def now_ms() -> int:
    return int(time.time() * 1000)


def flatten_params(values: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested mapping → ``{"a.b": "value"}``; lists and other values as JSON-ish text."""
    flat: dict[str, str] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten_params(value, prefix=f"{name}."))
            continue
        if isinstance(value, str):
            text = value
        else:
            try:
                text = json.dumps(value, default=str)
            except (TypeError, ValueError):
                text = str(value)
        flat[name] = text[:MAX_PARAM_VALUE]
    return flat


def log_params_tolerant(client: MlflowClient, run_id: str, params: Mapping[str, str]) -> list[str]:
    """Log params not yet on the run; return the keys already there with another value.

    Params are immutable in MLflow; a rerun whose value changed must not fail the sweep.
    """
    existing = client.get_run(run_id).data.params
    conflicts = [key for key, value in params.items() if key in existing and existing[key] != value]
    fresh = [Param(key, value) for key, value in params.items() if key not in existing]
    for start in range(0, len(fresh), BATCH):
        client.log_batch(run_id, params=fresh[start : start + BATCH])
    return conflicts


def quoted(value: str) -> str:
    """A literal for an MLflow search filter."""
    return f'"{value}"' if "'" in value else f"'{value}'"


def find_parent_run(client: MlflowClient, experiment_id: str, sweep_name: str) -> Run | None:
    """The sweep's parent run in this experiment (the oldest, should there be several)."""
    runs = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{TAG_SWEEP}` = {quoted(sweep_name)} and tags.`{TAG_ROLE}` = 'sweep'",
        order_by=["attributes.start_time ASC"],
        max_results=10,
    )
    return runs[0] if runs else None


def child_runs(client: MlflowClient, experiment_id: str, parent_run_id: str) -> list[Run]:
    """All trial runs under a parent (paged: a sweep can have thousands)."""
    runs: list[Run] = []
    token = None
    while True:
        page = client.search_runs(
            [experiment_id],
            filter_string=f"tags.`{MLFLOW_PARENT_RUN_ID}` = '{parent_run_id}'",
            max_results=1000,
            page_token=token,
        )
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def find_child_run(client: MlflowClient, sweep: SweepRuns, trial_id: str) -> Run | None:
    runs = client.search_runs(
        [sweep.experiment_id],
        filter_string=(
            f"tags.`{MLFLOW_PARENT_RUN_ID}` = '{sweep.parent_run_id}'"
            f" and tags.`{TAG_TRIAL_ID}` = {quoted(trial_id)}"
        ),
        order_by=["attributes.start_time ASC"],
        max_results=10,
    )
    return runs[0] if runs else None


class TrialRecorder:
    """Applies trial records to the store, remembering which child run belongs to which trial."""

    def __init__(self, client: MlflowClient) -> None:
        self.client = client
        self.run_ids: dict[tuple[str, str], str] = {}

    def apply(self, record: Mapping[str, Any]) -> None:
        sweep = SweepRuns(**{key: record[key] for key in SweepRuns.__dataclass_fields__})
        op = record["op"]
        if op == "trial_start":
            self._start(sweep, record)
        elif op == "trial_result":
            run_id = self._child(sweep, record)
            metrics = [
                Metric(key, float(value), int(record["time"]), int(record["step"]))
                for key, value in record["metrics"].items()
            ]
            if metrics:
                self.client.log_batch(run_id, metrics=metrics)
        elif op == "trial_end":
            self._end(sweep, record)
        else:
            raise ValueError(f"unknown trial record {op!r}")

    def _child(self, sweep: SweepRuns, record: Mapping[str, Any]) -> str:
        """The trial's child run: remembered, found by tag, or created (in that order)."""
        key = (sweep.parent_run_id, record["trial_id"])
        if key not in self.run_ids:
            found = find_child_run(self.client, sweep, record["trial_id"])
            if found is None:
                tags = {
                    MLFLOW_PARENT_RUN_ID: sweep.parent_run_id,
                    TAG_TRIAL_ID: record["trial_id"],
                    TAG_SWEEP: sweep.sweep_name,
                    TAG_ROLE: "trial",
                }
                run = self.client.create_run(
                    sweep.experiment_id,
                    start_time=int(record["time"]),
                    tags=tags,
                    run_name=record.get("trial_name") or record["trial_id"],
                )
                self.run_ids[key] = run.info.run_id
            else:
                self.run_ids[key] = found.info.run_id
        return self.run_ids[key]

    def _start(self, sweep: SweepRuns, record: Mapping[str, Any]) -> None:
        run_id = self._child(sweep, record)
        run = self.client.get_run(run_id)
        if run.info.status != RunStatus.to_string(RunStatus.RUNNING):
            # A trial restarted after the driver was interrupted: the run is live again.
            self.client.update_run(run_id, status="RUNNING")
            self.client.set_tag(run_id, TAG_TRIAL_STATUS, "running")
        conflicts = log_params_tolerant(self.client, run_id, record.get("params", {}))
        if conflicts:
            log.warning("trial %s: params %s differ from the recorded ones", record["trial_id"], conflicts)

    def _end(self, sweep: SweepRuns, record: Mapping[str, Any]) -> None:
        run_id = self._child(sweep, record)
        status = record["status"]
        tags = [RunTag(TAG_TRIAL_STATUS, status)]
        if record.get("error"):
            tags.append(RunTag(TAG_ERROR, record["error"][:MAX_TAG_VALUE]))
        if record.get("error_detail"):
            tags.append(RunTag(TAG_ERROR_DETAIL, record["error_detail"][-MAX_TAG_VALUE:]))
        self.client.log_batch(run_id, tags=tags)
        mlflow_status = "FAILED" if status == "failed" else "FINISHED"
        self.client.set_terminated(run_id, status=mlflow_status, end_time=int(record["time"]))
