"""Shared fixtures: small task samples and float64 draws from exact Gaussian covariances."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

os.environ.setdefault("PYTHONWARNINGS", "ignore::DeprecationWarning")
# One thread: tests run beside other processes on 2 cores, where OpenMP spinning thrashes.
torch.set_num_threads(1)


def pytest_configure(config: pytest.Config) -> None:
    """Point absl's log handler at the real stderr before any test imports bmi (bmi → JAX → absl).

    absl's handler keeps the ``sys.stderr`` of its import, which under pytest is pytest's capture
    file, and closes that stream when logging shuts its handlers down (a library's ``dictConfig``)
    unless it is the ``sys.stderr`` of that moment. Inside a ``capsys`` test it is not: pytest's
    own capture file was closed under it, and a later test died with "I/O operation on closed file".
    """
    import sys

    try:
        from absl import logging as absl_logging
    except ImportError:  # no absl in this environment: nothing holds pytest's capture file
        return
    absl_logging.get_absl_handler().python_handler.setStream(sys.__stderr__)


def gaussian_sample(cov: np.ndarray, dim_x: int, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact float64 draws (bmi's float32 sampler perturbs nearly singular tasks)."""
    xy = np.random.default_rng(seed).multivariate_normal(np.zeros(len(cov)), cov, size=n)
    return torch.as_tensor(xy[:, :dim_x]).float(), torch.as_tensor(xy[:, dim_x:]).float()


@pytest.fixture(scope="session")
def weak_task_sample():
    """Multinormal dim 3, strength 2 (true MI 1.022 nats): 12k train, 2k test."""
    from dmi.tasks import TaskSpec, sample_task, true_mi

    spec = TaskSpec("multinormal", 3, 2.0)
    x, y = sample_task(spec, 14000, seed=0)
    return {
        "x_train": x[:12000],
        "y_train": y[:12000],
        "x_test": x[12000:],
        "y_test": y[12000:],
        "mi": true_mi(spec),
    }
