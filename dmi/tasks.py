"""Benchmark tasks with known MI, built by name from ``benchmark-mi`` (``import bmi``)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dmi.checks import positive_int_problem, positive_number_problem, require
from dmi.errors import ConfigError

TASK_TYPES = ("multinormal", "half_cube", "spiral")


@dataclass(frozen=True)
class TaskSpec:
    """Name, dimension and strength of a sparse-multinormal-based task of the original grid."""

    task_type: str
    dim: int
    strength: float

    def __post_init__(self) -> None:
        """A task that cannot be built is a ``ConfigError`` naming the problem."""
        if self.task_type not in TASK_TYPES:
            raise ConfigError(f"unknown task type {self.task_type!r}; choose from {', '.join(TASK_TYPES)}")
        require("dim", self.dim, positive_int_problem)
        if self.task_type == "spiral" and self.dim < 3:
            raise ConfigError(f"spiral needs dim >= 3, got {self.dim}")
        require("strength", self.strength, positive_number_problem)

    @property
    def name(self) -> str:
        """The original's task name, e.g. ``spiral_multinormal_sparse_200_dim_10``."""
        prefix = "" if self.task_type == "multinormal" else f"{self.task_type}_"
        strength = int(self.strength) if float(self.strength).is_integer() else self.strength
        return f"{prefix}multinormal_sparse_{strength}_dim_{self.dim}"


def make_task(spec: TaskSpec):
    """The ``bmi.Task`` for ``spec`` (imported lazily: bmi pulls in JAX)."""
    from bmi.benchmark import tasks as bt

    base = bt.task_multinormal_sparse(dim_x=spec.dim, dim_y=spec.dim, strength=spec.strength)
    if spec.task_type == "half_cube":
        return bt.transform_half_cube_task(base)
    if spec.task_type == "spiral":
        return bt.transform_spiral_task(base)
    return base


def true_mi(spec: TaskSpec) -> float:
    return float(make_task(spec).mutual_information)


def gaussian_covariance(spec: TaskSpec) -> np.ndarray:
    """Joint covariance of the multinormal task (the base of every task type)."""
    from bmi.benchmark import tasks as bt

    base = bt.task_multinormal_sparse(dim_x=spec.dim, dim_y=spec.dim, strength=spec.strength)
    # bmi keeps the covariance on its SplitMultinormal sampler without a public accessor.
    return np.asarray(base.sampler._covariance, dtype=np.float64)


def sample_task(spec: TaskSpec, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` joint draws as float32 numpy arrays, reproducible by ``seed``."""
    x, y = make_task(spec).sample(n, seed=seed)
    return np.asarray(x, dtype=np.float32), np.asarray(y, dtype=np.float32)
