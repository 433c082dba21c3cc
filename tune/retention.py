"""Which checkpoints a trial keeps, and when the rest may go.

Ray's own pruning (``CheckpointConfig(num_to_keep=...)`` with a score) deletes a checkpoint as soon as a
better one arrives, and that can be the one the last experiment snapshot names as a running trial's
latest: a driver killed before the next snapshot then resumes that trial from a folder that is gone
("does not exist on storage anymore") and the trial errors. So Tune deletes nothing while a run goes
on; after the run, once Tune's final snapshot is on storage, each trial that snapshot calls TERMINATED
keeps its ``num_to_keep`` best checkpoints by the objective and its latest. An unfinished trial keeps
all of its checkpoints, as a restart may resume it from any of them.
"""

from __future__ import annotations

import math
from typing import Any

from tune.objectives import MODE


def _score(metrics: dict[str, Any], objective: str) -> float:
    try:
        value = float(metrics.get(objective))
    except (TypeError, ValueError):
        return math.nan
    return value if MODE == "min" else -value


def ranked_checkpoints(result: Any, objective: str) -> list[Any]:
    """A trial's checkpoints with a finite objective, best first (the earlier report on a tie)."""
    scored = [
        (_score(metrics, objective), metrics.get("training_iteration", 0), checkpoint)
        for checkpoint, metrics in result.best_checkpoints
    ]
    return [c for s, _, c in sorted((e for e in scored if math.isfinite(e[0])), key=lambda e: e[:2])]


def best_checkpoint(result: Any, objective: str) -> Any | None:
    """The checkpoint of the trial's best report by the objective; None if no report scores."""
    ranked = ranked_checkpoints(result, objective)
    return ranked[0] if ranked else None


def _exists(checkpoint: Any) -> bool:
    import pyarrow.fs as pafs

    return checkpoint.filesystem.get_file_info(checkpoint.path).type != pafs.FileType.NotFound


def prune_finished_trials(analysis: Any, objective: str, num_to_keep: int) -> int:
    """Delete what finished trials no longer need (see the module's docstring); the number deleted.

    ``analysis`` is the experiment read as a restart would (``ExperimentAnalysis``: Tune's saved
    snapshot), so a trial is only pruned once that snapshot says it is finished.
    """
    from ray import tune

    finished = {trial.path for trial in analysis.trials if trial.status == "TERMINATED"}
    deleted = 0
    for result in tune.ResultGrid(analysis):
        if result.path not in finished:
            continue
        keep = {c.path for c in ranked_checkpoints(result, objective)[:num_to_keep]}
        if result.checkpoint is not None:
            keep.add(result.checkpoint.path)
        for checkpoint, _ in result.best_checkpoints:
            if checkpoint.path not in keep and _exists(checkpoint):
                checkpoint.filesystem.delete_dir(checkpoint.path)
                deleted += 1
    return deleted
