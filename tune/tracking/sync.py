"""An append-only journal of the records that could not reach MLflow, replayed once the store answers."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from dmi.tempfiles import locked
from tune.tracking.uri import bounded_http_requests, local_folder

log = logging.getLogger(__name__)

JOURNAL_NAME = "mlflow-journal.jsonl"
# MLflow error codes that a retry cannot fix: the record is dropped with a warning.
PERMANENT_ERROR_CODES = frozenset({"INVALID_PARAMETER_VALUE", "RESOURCE_DOES_NOT_EXIST", "BAD_REQUEST"})


def journal_path(storage_dir: str | os.PathLike, sweep_name: str) -> Path:
    """The journal of a sweep: in its Tune experiment folder (if that is on a local disk)."""
    return local_folder(storage_dir) / sweep_name / JOURNAL_NAME


def pending_journals(storage_dir: str | os.PathLike, name: str) -> list[Path]:
    """Journals waiting for sweep ``name``: its own, or those of its tasks (``name-<task>``)."""
    own = journal_path(storage_dir, name)
    candidates = [own, *sorted(own.parent.parent.glob(f"{name}-*/{JOURNAL_NAME}"))]
    return [path for path in candidates if Journal(path).pending()]


def is_permanent(exc: BaseException) -> bool:
    """True for a record the store refuses (a retry cannot help), False for an outage."""
    from mlflow.exceptions import MlflowException

    if isinstance(exc, MlflowException):
        return exc.error_code in PERMANENT_ERROR_CODES
    # A malformed record, or a file it names that is gone (a deleted checkpoint).
    return isinstance(exc, (KeyError, TypeError, ValueError, FileNotFoundError))


class Journal:
    """Records appended one JSON line at a time under a lock; replayed in order."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    def pending(self) -> bool:
        return self.path.exists() and self.path.stat().st_size > 0

    def append(self, record: Mapping[str, Any]) -> None:
        with locked(self.path), open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record, default=str, allow_nan=True) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def records(self) -> list[dict[str, Any]]:
        lines = self.path.read_text(encoding="utf-8").splitlines() if self.path.exists() else []
        records = []
        for number, line in enumerate(lines, start=1):
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                if line.strip():  # cut short by a crash mid-write: nothing after it was acknowledged either
                    log.warning("%s:%d: unreadable journal line skipped", self.path, number)
        return records

    def replay(self, apply: Callable[[dict[str, Any]], None]) -> int:
        """Apply every record in order and return how many; a transient failure is raised, the file kept."""
        with locked(self.path):
            records = self.records()
            for record in records:
                try:
                    apply(record)
                except Exception as exc:
                    if not is_permanent(exc):
                        raise
                    log.warning("journal record %s dropped: %s", record.get("op"), exc)
            self.path.unlink(missing_ok=True)
            return len(records)


def make_applier(tracking_uri: str | None = None) -> Callable[[dict[str, Any]], None]:
    """A function applying any journal record to the store it names (or ``tracking_uri``)."""
    from mlflow import MlflowClient

    from tune.tracking.finish import replay_finish
    from tune.tracking.runs import TrialRecorder

    recorders: dict[str, TrialRecorder] = {}

    def apply(record: dict[str, Any]) -> None:
        uri = tracking_uri or record["tracking_uri"]
        if record["op"] == "finish":
            replay_finish({**record, "tracking_uri": uri})
            return
        if uri not in recorders:
            recorders[uri] = TrialRecorder(MlflowClient(uri))
        recorders[uri].apply(record)

    return apply


def sync_journal(path: str | os.PathLike, tracking_uri: str | None = None) -> int:
    """Replay a journal into MLflow; returns how many records went through (0 if none waited)."""
    journal = Journal(path)
    if not journal.pending():
        return 0
    with bounded_http_requests():
        return journal.replay(make_applier(tracking_uri))
