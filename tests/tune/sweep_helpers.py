"""Tiny sweep configs for the tests of ``tune`` (a module of its own: both test folders have a conftest)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

# Small enough for 2 CPU cores: 3k training samples, widths 8–16, 120 steps, a report every 30.
TINY: dict[str, Any] = {
    "name": "tiny",
    "tracking": False,
    "objective": "val_loss",
    "data": {
        "task_type": "multinormal",
        "dim": 3,
        "strength": 2,
        "n_train": 3000,
        "n_val": 1000,
        "n_test": 1000,
    },
    # patience beyond the budget: every trial makes all its reports (early stopping is tested apart)
    "estimator": {"max_steps": 120, "batch_size": 128, "val_n_logsnr": 8, "patience": 1000},
    "search": {
        "num_samples": 5,
        "seed": 0,
        "params": {
            "architecture": {"choices": ["unified", "moe"]},
            "snr_threshold": {"low": 0.0, "high": 8.0},
            "model_dim": {"low": 8, "high": 16},
            "learning_rate": {"low": 3e-4, "high": 3e-3},
            "use_ema": {"choices": [False, True]},
            "ema_decay": {"low": 0.9, "high": 0.99},
        },
        # One seed point per architecture: the sweep always covers both.
        "points_to_evaluate": [
            {"architecture": "unified", "use_ema": False},
            {"architecture": "moe", "snr_threshold": 5.0, "use_ema": True, "ema_decay": 0.95},
        ],
    },
    "scheduler": {"type": "asha", "grace_period": 2, "reduction_factor": 2},
    "trials": {"val_every_n_steps": 30, "resources": {"cpu": 1, "gpu": 0}, "max_concurrent_trials": 2},
    "ray": {"num_cpus": 2, "object_store_mb": 200},
    "final_n_logsnr": 32,
    "compare_defaults": False,  # the library defaults train for ~20 s: one test turns it on
}


def tiny_config(**changes: Any) -> dict[str, Any]:
    """A deep copy of TINY with top-level sections merged from ``changes``."""
    config = copy.deepcopy(TINY)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            config[key].update(value)
        else:
            config[key] = value
    return config


def write_config(folder: Path, config: dict[str, Any], name: str = "sweep.yaml") -> Path:
    path = folder / name
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path
