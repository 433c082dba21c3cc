"""The driver's side of MLflow tracking: optional, imported lazily, never the cause of a lost sweep.

``tune.tracking`` (``SweepTracker``) may be absent; then sweeps run untracked. An unreachable
store is bad input (exit 2) and is found before Ray starts or any trial trains.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
import sys
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from tune.config import SweepConfig

log = logging.getLogger(__name__)


class TrackingError(Exception):
    """The tracking store cannot be used (exit code 2)."""


class Tracker(Protocol):
    def start(self, resumed: bool) -> Any: ...
    def tune_callback(self) -> Any: ...
    def finish(self, summary: dict, result_grid: Any, best_checkpoint_dir: str | None, status: str) -> Any: ...


def tracking_available() -> bool:
    return importlib.util.find_spec("tune.tracking") is not None


def make_trackers(cfg: SweepConfig, planned: list, storage: str, tracking_uri: str | None) -> dict[str, Tracker]:
    """One tracker per experiment (each sees the config of its own task), keyed by experiment name."""
    if not cfg.tracking:
        return {}
    if not tracking_available():
        print("tracking: tune.tracking is not installed; the sweep runs unrecorded", file=sys.stderr)
        return {}
    from tune.tracking import SweepTracker, TrackingUnavailable

    trackers = {}
    for p in planned:
        own = cfg if p.task is None else dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, tasks=(p.task,)))
        try:
            trackers[p.name] = SweepTracker.create(
                tracking_uri=tracking_uri or cfg.tracking_uri,
                storage_dir=storage,
                experiment_name=cfg.name,
                sweep_name=p.name,
                sweep_config=own.as_dict(),
            )
        except TrackingUnavailable as exc:
            raise TrackingError(str(exc)) from None
    return trackers


def start_tracker(tracker: Tracker, resumed: bool) -> None:
    """Open the sweep's parent run; an unreachable store is bad input."""
    try:
        tracker.start(resumed=resumed)
    except Exception as exc:
        if type(exc).__name__ == "TrackingUnavailable":
            raise TrackingError(str(exc)) from None
        raise


def finish_tracker(tracker: Tracker, summary: dict, grid: Any, best_dir: str | None, status: str) -> None:
    """Record the end; a tracking failure here is reported, the sweep's own results stand."""
    try:
        if grid is None:
            grid = _grid_from_disk(summary.get("experiment_path"))
            if grid is None:
                return
        tracker.finish(summary=summary, result_grid=grid, best_checkpoint_dir=best_dir, status=status)
    except Exception as exc:  # noqa: BLE001 - the results on disk must survive a tracking failure
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"tracking: could not record the end of the sweep: {first}", file=sys.stderr)


def _grid_from_disk(path: str | None):
    if not path:
        return None
    from ray.tune import ExperimentAnalysis, ResultGrid, Tuner

    if not Tuner.can_restore(path):
        return None
    return ResultGrid(ExperimentAnalysis(path))
