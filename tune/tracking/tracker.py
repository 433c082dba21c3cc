"""What the sweep driver calls to record a sweep in MLflow; only the driver process touches the store.

``SweepTracker``: create (store, experiment) → start (parent run) → tune_callback (``TrialRunCallback``, a child
run per trial; what the store does not take goes to the journal) → finish (best trial, files, model).
"""

from __future__ import annotations

import functools
import logging
import math
import platform
import re
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.utils.mlflow_tags import MLFLOW_GIT_COMMIT, MLFLOW_RUN_NAME
from ray.tune import Callback
from ray.tune.result import AUTO_RESULT_KEYS, TIME_TOTAL_S, TRAINING_ITERATION

from dmi.errors import TrackingUnavailable
from tune.summary import diverged
from tune.tracking.finish import plain, record_finish, write_yaml
from tune.tracking.registry import package_versions
from tune.tracking.runs import flatten_params, log_batch, log_params, open_experiment, parent_run
from tune.tracking.sync import Journal, is_permanent, journal_path, make_applier, sync_journal
from tune.tracking.uri import artifacts_via, bounded_http_requests, check_reachable, one_line, resolve_tracking_uri

if TYPE_CHECKING:
    from dmi.tasks import TaskSpec

log = logging.getLogger(__name__)

VERSIONED_PACKAGES = ("dmi", "torch", "lightning", "ray", "optuna", "mlflow", "numpy", "benchmark-mi")
RUN_STATUSES = {"finished": "FINISHED", "failed": "FAILED", "killed": "KILLED", "interrupted": "KILLED"}
# Tune's bookkeeping is not a metric of the estimator (the wall time is kept).
SKIPPED_RESULT_KEYS = frozenset(AUTO_RESULT_KEYS) - {TIME_TOTAL_S} | {"done", "trial_id", "experiment_tag"}
ERROR_LINE = re.compile(r"^\s*([A-Za-z_][\w.]*(Error|Exception|Interrupt)\b.*)$")
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")


def git_commit(folder: Path) -> tuple[str | None, bool]:
    """(commit, dirty) of the repository holding ``folder``, or (None, False) outside one."""

    def git(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True, timeout=10)

    try:
        commit = git("rev-parse", "HEAD")
        if commit.returncode != 0:
            return None, False
        return commit.stdout.strip(), bool(git("status", "--porcelain", "--untracked-files=no").stdout.strip())
    except (OSError, subprocess.SubprocessError):
        return None, False


@dataclass
class SweepTracker:
    """One sweep's record in MLflow: an experiment, a parent run, a child run per trial."""

    tracking_uri: str
    storage_dir: str
    experiment_name: str
    experiment_id: str
    sweep_name: str
    sweep_config: dict[str, Any]
    task: TaskSpec | None = None
    true_mi: float | None = None
    parent_run_id: str | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        storage = str(self.storage_dir)
        self.storage_dir = storage if "://" in storage else str(Path(storage).expanduser().resolve())
        self.sweep_config = dict(self.sweep_config)

    @classmethod
    def create(
        cls,
        tracking_uri: str | None,
        storage_dir: str,
        experiment_name: str,
        sweep_name: str,
        sweep_config: Mapping[str, Any],
        task: TaskSpec | None = None,
        true_mi: float | None = None,
    ) -> SweepTracker:
        """Resolve the URI, check the store, create the experiment (before any trial); ``task``: the data's task."""
        uri = resolve_tracking_uri(tracking_uri, sweep_config, storage_dir)
        check_reachable(uri)
        try:
            experiment_id = open_experiment(MlflowClient(uri), experiment_name)
        except MlflowException as exc:
            message = f"tracking store {uri}: experiment {experiment_name!r}: {one_line(exc)}"
            raise TrackingUnavailable(message) from None
        return cls(uri, storage_dir, experiment_name, experiment_id, sweep_name, sweep_config, task, true_mi)

    @property
    def journal_path(self) -> Path:
        return journal_path(self.storage_dir, self.sweep_name)

    @property
    def runs(self) -> dict[str, str]:
        """The sweep's place in the store, as every record names it."""
        if self.parent_run_id is None:
            raise RuntimeError("SweepTracker.start() must come first")
        names = ("tracking_uri", "experiment_id", "parent_run_id", "sweep_name")
        return {name: getattr(self, name) for name in names}

    def start(self, resumed: bool = False) -> str:
        """Open the sweep's parent run (the existing one for this sweep name, else a new one) and describe it."""
        client = MlflowClient(self.tracking_uri)
        try:
            with bounded_http_requests():  # a server lost meanwhile fails the start in seconds, not minutes
                run, created = parent_run(client, self.experiment_id, self.sweep_name)
                if created and resumed:
                    log.warning("resuming sweep %s: no parent run in MLflow, starting one", self.sweep_name)
                starts = 1 if created else int(run.data.tags.get("dmi.starts", "1")) + 1
                run_id = self.parent_run_id = run.info.run_id
                commit, dirty = git_commit(Path(__file__).resolve().parent)
                versions = {"python": platform.python_version(), **package_versions(VERSIONED_PACKAGES)}
                tags = {
                    MLFLOW_RUN_NAME: self.sweep_name,
                    "dmi.starts": str(starts),
                    "dmi.resumed": str(bool(resumed)).lower(),
                    "dmi.storage_dir": self.storage_dir,
                    "dmi.experiment_path": f"{self.storage_dir.rstrip('/')}/{self.sweep_name}",
                    **{f"dmi.version.{name}": version for name, version in versions.items()},
                }
                if commit:
                    tags.update({MLFLOW_GIT_COMMIT: commit, "dmi.git_dirty": str(dirty).lower()})
                if self.task is not None:
                    tags["dmi.task"] = self.task.name
                log_batch(client, run_id, tags, {})
                conflicts = list(log_params(client, run_id, self.sweep_config))
                if conflicts:
                    log.warning("sweep %s: config differs from the recorded one in %s", self.sweep_name, conflicts)
                    client.set_tag(run_id, "dmi.config_changed", ",".join(conflicts)[:5000])
                if self.true_mi is not None:  # stamped with the run's start: logged again on a resume, no new point
                    log_batch(client, run_id, {}, {"gt_mi": self.true_mi}, run.info.start_time)
                with tempfile.TemporaryDirectory() as tmp, artifacts_via(self.tracking_uri):
                    client.log_artifact(run_id, str(write_yaml(Path(tmp) / "sweep_config.yaml", self.sweep_config)))
        except (MlflowException, OSError) as exc:
            raise TrackingUnavailable(f"tracking store {self.tracking_uri}: {one_line(exc)}") from None
        return run_id

    def tune_callback(self) -> TrialRunCallback:
        """The Tune callback for ``RunConfig(callbacks=[...])``: a child run per trial."""
        max_iterations = (self.sweep_config.get("scheduler") or {}).get("max_t")
        return TrialRunCallback(self.runs, str(self.journal_path), max_iterations)

    def finish(
        self, summary: Mapping[str, Any], result_grid: Any, best_checkpoint_dir: str | None, status: str = "FINISHED"
    ) -> dict[str, Any] | None:
        """Record the outcome and register the best model; with the store down, journal it and return None."""
        if str(status).lower() not in RUN_STATUSES:
            raise ValueError(f"unknown sweep status {status!r}; use FINISHED, FAILED or KILLED")
        task_name = None if self.task is None else self.task.name
        record = {
            "op": "finish",
            **self.runs,
            "summary": plain(dict(summary)),
            "experiment_path": str(result_grid.experiment_path),
            "best_checkpoint_dir": None if best_checkpoint_dir is None else str(best_checkpoint_dir),
            "status": RUN_STATUSES[str(status).lower()],
            # From the config, else dmi-<task> (dmi-<sweep> for several tasks).
            "model_name": str(self.sweep_config.get("model_name") or f"dmi-{task_name or self.sweep_name}"),
            "true_mi": self.true_mi,
            "time": int(time.time() * 1000),
        }
        try:
            with bounded_http_requests():  # with the server gone, MLflow's own retries would take minutes
                sync_journal(self.journal_path)
                return record_finish(MlflowClient(self.tracking_uri), record, result_grid)
        except Exception as exc:
            if is_permanent(exc):
                raise
            Journal(self.journal_path).append(record)
            message = "MLflow store %s unavailable at the end of sweep %s (%s); run `dmi-tune sync %s` later"
            log.warning(message, self.tracking_uri, self.sweep_name, one_line(exc), self.sweep_name)
            return None


def result_metrics(result: dict[str, Any]) -> dict[str, float]:
    """The numbers a trial reported (NaN kept, infinities dropped), without Tune's bookkeeping."""
    numbers = {k: v for k, v in result.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    return {k: float(v) for k, v in numbers.items() if k not in SKIPPED_RESULT_KEYS and not math.isinf(v)}


def error_text(trial: Any) -> tuple[str, str]:
    """(the exception line, the tail of the trace) from the trial's error file, if any."""
    path = getattr(trial, "error_file", None)
    text = ""
    if path and Path(path).exists():
        text = ANSI_ESCAPE.sub("", Path(path).read_text(encoding="utf-8", errors="replace"))
    lines = [line for line in text.splitlines() if line.strip()]
    matches = [m.group(1).strip() for line in lines if (m := ERROR_LINE.match(line))]
    headline = matches[-1] if matches else (lines[-1].strip() if lines else "trial failed (no error file)")
    return headline, text[-4000:]


def never_fails(hook: Callable[..., None]) -> Callable[..., None]:
    """A recording problem is logged; it never reaches Tune, which would end the sweep."""

    @functools.wraps(hook)
    def guarded(self: Any, *args: Any, **kwargs: Any) -> None:
        try:
            hook(self, *args, **kwargs)
        except Exception:  # noqa: BLE001
            log.exception("MLflow recording (%s) failed; the sweep goes on", hook.__name__)

    return guarded


@dataclass(eq=False)
class TrialRunCallback(Callback):
    """One MLflow child run per Tune trial: params, per-report metrics, final status."""

    sweep: dict[str, str]  # SweepTracker.runs
    journal_path: str
    max_iterations: int | None  # a trial that completes with fewer reports was stopped early
    retry_after_s: float = 30.0
    _apply: Callable[[dict[str, Any]], None] | None = field(default=None, init=False, repr=False)
    _offline_until: float = field(default=0.0, init=False, repr=False)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_apply": None, "_offline_until": 0.0}

    @never_fails
    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._submit("trial_start", trial, params=flatten_params(trial.config or {}))

    @never_fails
    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        step = int(result.get(TRAINING_ITERATION, 0))
        self._submit("trial_result", trial, step=step, metrics=result_metrics(result))

    @never_fails
    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        last = trial.last_result or {}
        if diverged(last):  # ended by its trainable without a retry: a failure all the same
            reason = str(last.get("failure", "training diverged"))
            self._submit("trial_end", trial, status="failed", error=reason, error_detail=reason)
            return
        stopped = self.max_iterations is not None and int(last.get(TRAINING_ITERATION, 0)) < self.max_iterations
        self._submit("trial_end", trial, status="stopped_early" if stopped else "finished")

    @never_fails
    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        headline, detail = error_text(trial)
        self._submit("trial_end", trial, status="failed", error=headline, error_detail=detail)

    @never_fails
    def on_experiment_end(self, trials: list, **info: Any) -> None:
        self.flush()

    def apply(self, record: dict[str, Any]) -> None:
        """Write one record to the store, opening it lazily (after unpickling too)."""
        self._apply = self._apply or make_applier()
        self._apply(record)

    def flush(self) -> bool:
        """Replay the journal if one waits; True when nothing is left in it."""
        journal = Journal(self.journal_path)
        if not journal.pending():
            return True
        if time.monotonic() < self._offline_until:
            return False
        try:
            with bounded_http_requests(timeout_s=10, retries=1):
                count = journal.replay(self.apply)
            log.warning("MLflow is back: %d journaled records replayed", count)
            return True
        except Exception as exc:  # noqa: BLE001 - the sweep goes on whatever the store does
            self._go_offline(exc)
            return False

    def _submit(self, op: str, trial: Any, **fields: Any) -> None:
        """Apply a record now, or journal it: the journal keeps the order once anything is queued."""
        record = {"op": op, **self.sweep, "trial_id": str(trial.trial_id), "trial_name": str(trial)}
        record.update(time=int(time.time() * 1000), **fields)
        try:
            if self.flush() and time.monotonic() >= self._offline_until:
                with bounded_http_requests(timeout_s=10, retries=1):
                    self.apply(record)
                return
        except Exception as exc:  # noqa: BLE001
            if is_permanent(exc):
                log.warning("MLflow refused %s of %s: %s", op, record["trial_id"], one_line(exc))
                return
            self._go_offline(exc)
        try:
            Journal(self.journal_path).append(record)
        except OSError as exc:
            log.error("MLflow record of trial %s lost: journal not writable: %s", record["trial_id"], exc)

    def _go_offline(self, exc: BaseException) -> None:
        if time.monotonic() >= self._offline_until:
            message = "MLflow store %s unavailable (%s); journaling to %s, retry in %.0f s"
            log.warning(message, self.sweep["tracking_uri"], one_line(exc), self.journal_path, self.retry_after_s)
        self._offline_until = time.monotonic() + self.retry_after_s
        self._apply = None  # a fresh client (and connection) on the next attempt
