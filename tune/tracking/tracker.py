"""``SweepTracker``: what the sweep driver calls to record a sweep in MLflow.

create (resolve and check the store, make the experiment) → start (parent run) →
tune_callback (child runs, inside ``Tuner.fit``) → finish (best trial, artifacts, model).
Everything touching the store happens in the driver process; trials never open it.
"""

from __future__ import annotations

import importlib.metadata
import logging
import platform
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mlflow import MlflowClient
from mlflow.entities import Metric, RunTag
from mlflow.exceptions import MlflowException
from mlflow.utils.mlflow_tags import MLFLOW_GIT_COMMIT, MLFLOW_RUN_NAME

from tune.tracking.artifacts import plain, write_yaml
from tune.tracking.callback import TrialRunCallback
from tune.tracking.finish import record_finish
from tune.tracking.registry import default_model_name
from tune.tracking.runs import (
    TAG_ROLE,
    TAG_SWEEP,
    SweepRuns,
    find_parent_run,
    flatten_params,
    log_params_tolerant,
    now_ms,
)
from tune.tracking.sync import Journal, is_permanent, journal_path, sync_journal
from tune.tracking.uri import (
    TrackingUnavailable,
    artifact_root,
    artifacts_via,
    bounded_http_requests,
    check_reachable,
    local_folder,
    one_line,
    resolve_tracking_uri,
)

log = logging.getLogger(__name__)

VERSIONED_PACKAGES = ("dmi", "torch", "lightning", "ray", "optuna", "mlflow", "numpy", "benchmark-mi")
RUN_STATUSES = {"finished": "FINISHED", "failed": "FAILED", "killed": "KILLED", "interrupted": "KILLED"}


def benchmark_tasks(sweep_config: Mapping[str, Any]) -> list:
    """The benchmark tasks (``TaskSpec``) named in the config's ``data`` section; [] for a data file.

    Takes ``data.tasks`` (a list of task mappings) or one task written inline in ``data``.
    """
    from dmi.tasks import TaskSpec

    data = sweep_config.get("data")
    if not isinstance(data, Mapping):
        return []
    entries = data.get("tasks") or [data]
    return [
        TaskSpec(str(t["task_type"]), int(t["dim"]), float(t["strength"]))
        for t in entries
        if isinstance(t, Mapping) and {"task_type", "dim", "strength"} <= set(t)
    ]


def git_commit(folder: Path) -> tuple[str | None, bool]:
    """(commit, dirty) of the repository holding ``folder``, or (None, False) outside one."""
    try:
        commit = subprocess.run(
            ["git", "-C", str(folder), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        )
        if commit.returncode != 0:
            return None, False
        status = subprocess.run(
            ["git", "-C", str(folder), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        return commit.stdout.strip(), bool(status.stdout.strip())
    except (OSError, subprocess.SubprocessError):
        return None, False


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in VERSIONED_PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return versions


def run_status(status: str) -> str:
    upper = str(status).upper()
    if upper in RUN_STATUSES.values():
        return upper
    if str(status).lower() in RUN_STATUSES:
        return RUN_STATUSES[str(status).lower()]
    raise ValueError(f"unknown sweep status {status!r}; use FINISHED, FAILED or KILLED")


class SweepTracker:
    """One sweep's record in MLflow: an experiment, a parent run, a child run per trial."""

    def __init__(
        self,
        tracking_uri: str,
        storage_dir: str,
        experiment_name: str,
        experiment_id: str,
        sweep_name: str,
        sweep_config: Mapping[str, Any],
    ) -> None:
        self.tracking_uri = tracking_uri
        self.storage_dir = str(storage_dir) if "://" in str(storage_dir) else str(local_folder(storage_dir))
        self.experiment_name = experiment_name
        self.experiment_id = experiment_id
        self.sweep_name = sweep_name
        self.sweep_config = dict(sweep_config)
        self.parent_run_id: str | None = None
        self.tasks = benchmark_tasks(self.sweep_config)
        self._truths: dict[str, float] | None = None

    @classmethod
    def create(
        cls,
        tracking_uri: str | None,
        storage_dir: str,
        experiment_name: str,
        sweep_name: str,
        sweep_config: Mapping[str, Any],
    ) -> SweepTracker:
        """Resolve the URI, check the store, create the experiment (here, before any trial)."""
        uri = resolve_tracking_uri(tracking_uri, sweep_config, storage_dir)
        check_reachable(uri)
        client = MlflowClient(uri)
        try:
            experiment = client.get_experiment_by_name(experiment_name)
            if experiment is None:
                try:
                    experiment_id = client.create_experiment(experiment_name, artifact_root(uri))
                except MlflowException:  # created meanwhile by another driver
                    experiment_id = client.get_experiment_by_name(experiment_name).experiment_id
            else:
                experiment_id = experiment.experiment_id
                if experiment.lifecycle_stage == "deleted":
                    client.restore_experiment(experiment_id)
        except MlflowException as exc:
            message = f"tracking store {uri}: experiment {experiment_name!r}: {one_line(exc)}"
            raise TrackingUnavailable(message) from None
        return cls(uri, storage_dir, experiment_name, experiment_id, sweep_name, sweep_config)

    # -- properties --------------------------------------------------------------------------
    @property
    def client(self) -> MlflowClient:
        return MlflowClient(self.tracking_uri)

    @property
    def journal_path(self) -> Path:
        return journal_path(self.storage_dir, self.sweep_name)

    @property
    def runs(self) -> SweepRuns:
        if self.parent_run_id is None:
            raise RuntimeError("SweepTracker.start() must come first")
        return SweepRuns(self.tracking_uri, self.experiment_id, self.parent_run_id, self.sweep_name)

    @property
    def truths(self) -> dict[str, float]:
        """True MI of each benchmark task, by task name (computed once: bmi imports JAX)."""
        if self._truths is None:
            from dmi.tasks import true_mi

            self._truths = {task.name: true_mi(task) for task in self.tasks}
        return self._truths

    @property
    def true_mi(self) -> float | None:
        """The truth when the sweep has exactly one benchmark task."""
        return next(iter(self.truths.values())) if len(self.tasks) == 1 else None

    def model_name(self) -> str:
        """``model_name`` from the config, else ``dmi-<task>`` (``dmi-<sweep>`` for several tasks)."""
        task_name = self.tasks[0].name if len(self.tasks) == 1 else None
        return str(self.sweep_config.get("model_name") or default_model_name(task_name, self.sweep_name))

    # -- the parent run ----------------------------------------------------------------------
    def start(self, resumed: bool = False) -> str:
        """Open the sweep's parent run: the existing one for this sweep name, else a new one."""
        client = self.client
        try:
            with bounded_http_requests():  # a server lost meanwhile fails the start in seconds, not minutes
                found = find_parent_run(client, self.experiment_id, self.sweep_name)
                if found is None:
                    if resumed:
                        log.warning("resuming sweep %s: no parent run in MLflow, starting one", self.sweep_name)
                    run = client.create_run(
                        self.experiment_id,
                        tags={TAG_SWEEP: self.sweep_name, TAG_ROLE: "sweep"},
                        run_name=self.sweep_name,
                    )
                    self.parent_run_id, began, starts = run.info.run_id, run.info.start_time, 1
                else:
                    self.parent_run_id, began = found.info.run_id, found.info.start_time
                    client.update_run(self.parent_run_id, status="RUNNING")
                    starts = int(found.data.tags.get("dmi.starts", "1")) + 1
                self._log_sweep_description(client, starts, resumed, began)
        except (MlflowException, OSError) as exc:
            raise TrackingUnavailable(f"tracking store {self.tracking_uri}: {one_line(exc)}") from None
        return self.parent_run_id

    def _log_sweep_description(self, client: MlflowClient, starts: int, resumed: bool, began: int) -> None:
        run_id = self.parent_run_id
        commit, dirty = git_commit(Path(__file__).resolve().parent)
        tags = {
            MLFLOW_RUN_NAME: self.sweep_name,
            "dmi.starts": str(starts),
            "dmi.resumed": str(bool(resumed)).lower(),
            "dmi.storage_dir": self.storage_dir,
            "dmi.experiment_path": f"{self.storage_dir.rstrip('/')}/{self.sweep_name}",
            **{f"dmi.version.{name}": version for name, version in package_versions().items()},
        }
        if commit:
            tags[MLFLOW_GIT_COMMIT] = commit
            tags["dmi.git_dirty"] = str(dirty).lower()
        if self.tasks:
            tags["dmi.task"] = ",".join(task.name for task in self.tasks)[:5000]
        client.log_batch(run_id, tags=[RunTag(k, v) for k, v in tags.items()])
        conflicts = log_params_tolerant(client, run_id, flatten_params(self.sweep_config))
        if conflicts:
            log.warning("sweep %s: config differs from the recorded one in %s", self.sweep_name, conflicts)
            client.set_tag(run_id, "dmi.config_changed", ",".join(conflicts)[:5000])
        truths = (
            {"gt_mi": self.true_mi}
            if self.true_mi is not None
            else {f"gt_mi.{name}": value for name, value in self.truths.items()}
        )
        # Stamped with the run's start: logging it again on a resume adds no point.
        client.log_batch(run_id, metrics=[Metric(k, v, began, 0) for k, v in truths.items()])
        with tempfile.TemporaryDirectory() as tmp, artifacts_via(self.tracking_uri):
            client.log_artifact(run_id, str(write_yaml(Path(tmp) / "sweep_config.yaml", self.sweep_config)))

    def tune_callback(self, max_iterations: int | None = None) -> TrialRunCallback:
        """The Tune callback for ``RunConfig(callbacks=[...])``; picklable plain data.

        ``max_iterations``: reports of a trial that runs to the end (fewer = stopped early).
        """
        if max_iterations is None:
            scheduler = self.sweep_config.get("scheduler")
            max_iterations = scheduler.get("max_t") if isinstance(scheduler, Mapping) else None
        return TrialRunCallback(self.runs, str(self.journal_path), max_iterations)

    # -- the end of the sweep ----------------------------------------------------------------
    def finish(
        self,
        summary: Mapping[str, Any],
        result_grid: Any,
        best_checkpoint_dir: str | None,
        status: str = "FINISHED",
    ) -> dict[str, Any] | None:
        """Record the outcome on the parent run and register the best model.

        With the store down, the whole step goes to the journal (``dmi-tune sync`` replays
        it) and None is returned: the sweep's own results are on disk either way.
        """
        record = {
            "op": "finish",
            **self.runs.as_dict(),
            "summary": plain(dict(summary)),
            "experiment_path": str(result_grid.experiment_path),
            "best_checkpoint_dir": None if best_checkpoint_dir is None else str(best_checkpoint_dir),
            "status": run_status(status),
            "model_name": self.model_name(),
            "true_mi": self.true_mi,
            "task_names": [task.name for task in self.tasks],
            "time": now_ms(),
        }
        try:
            # Bounded: with the server gone, MLflow's own retries would hold the driver for minutes.
            with bounded_http_requests():
                sync_journal(self.journal_path)
                return record_finish(self.client, record, result_grid)
        except Exception as exc:
            if is_permanent(exc):
                raise
            Journal(self.journal_path).append(record)
            log.warning(
                "MLflow store %s unavailable at the end of sweep %s (%s); run `dmi-tune sync %s` later",
                self.tracking_uri,
                self.sweep_name,
                one_line(exc),
                self.sweep_name,
            )
            return None
