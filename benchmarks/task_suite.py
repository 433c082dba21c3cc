"""Which tasks the accuracy benchmark runs: the original grid, its reduced default, bmi's own 40.

A task token is ``type:dim:strength`` (an original-grid task, e.g. ``spiral:10:1100``), a task
id of bmi's benchmark (``bmi.benchmark.BENCHMARK_TASKS``), ``grid`` (the original's 75) or
``bmi`` (all 40 of bmi's).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from dmi.commands.train import GRID
from dmi.tasks import TASK_TYPES, TaskSpec, make_task

DEFAULT_DIMS = (3, 10)
DEFAULT_STRENGTHS = (200, 1100, 2000)


class TaskError(ValueError):
    """A task token that names no task."""


@dataclass(frozen=True)
class BenchTask:
    """A bmi task with the labels the report uses. ``family``: task type, or ``bmi``."""

    label: str
    task_id: str
    family: str
    dim_x: int
    dim_y: int
    true_mi: float
    task: Any

    def sample(self, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        x, y = self.task.sample(n, seed=seed)
        return np.asarray(x, dtype=np.float32), np.asarray(y, dtype=np.float32)


def grid_tokens(dims, strengths, task_types=TASK_TYPES) -> list[str]:
    return [f"{t}:{d}:{s}" for d in dims for s in strengths for t in task_types]


def default_tokens() -> list[str]:
    """The hour-long default: every task type × dims 3 and 10 × strengths 200, 1100, 2000."""
    return grid_tokens(DEFAULT_DIMS, DEFAULT_STRENGTHS)


def full_tokens() -> list[str]:
    """The original's 75-task grid (the grid ``dmi train --run_all`` runs)."""
    return grid_tokens(GRID["dims"], GRID["strengths"], GRID["task_types"])


def from_spec(spec: TaskSpec) -> BenchTask:
    task = make_task(spec)
    return BenchTask(
        spec.name, task.id, spec.task_type, task.dim_x, task.dim_y, float(task.mutual_information), task
    )


def from_bmi(task) -> BenchTask:
    return BenchTask(task.id, task.id, "bmi", task.dim_x, task.dim_y, float(task.mutual_information), task)


def parse_spec(token: str) -> TaskSpec:
    parts = token.split(":")
    if len(parts) != 3:
        raise TaskError(f"task {token!r}: expected type:dim:strength, a bmi task id, 'grid' or 'bmi'")
    try:
        return TaskSpec(parts[0], int(parts[1]), float(parts[2]))
    except ValueError as exc:
        raise TaskError(f"task {token!r}: {exc}") from None


def resolve_tasks(tokens: list[str]) -> list[BenchTask]:
    """Tasks in the order given, duplicates dropped; an unknown token is a ``TaskError``."""
    from bmi.benchmark import BENCHMARK_TASKS

    expanded: list[str] = []
    for token in tokens:
        if token == "grid":
            expanded.extend(full_tokens())
        elif token == "bmi":
            expanded.extend(BENCHMARK_TASKS)
        else:
            expanded.append(token)
    tasks: dict[str, BenchTask] = {}
    for token in expanded:
        if token in BENCHMARK_TASKS:
            task = from_bmi(BENCHMARK_TASKS[token])
        elif ":" in token:
            task = from_spec(parse_spec(token))
        else:
            raise TaskError(
                f"unknown task {token!r}: not type:dim:strength nor a bmi.benchmark.BENCHMARK_TASKS id"
            )
        tasks.setdefault(task.task_id, task)
    if not tasks:
        raise TaskError("no tasks to run")
    return list(tasks.values())
