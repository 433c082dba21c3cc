"""Small helpers shared by the CLI tests (imported by name: tests/cli is on sys.path)."""

from __future__ import annotations

import json
from pathlib import Path

# A benchmark configuration that trains in well under a second on one CPU core.
TINY = [
    "--train_sample_num",
    "600",
    "--test_num",
    "200",
    "--model_dim",
    "8",
    "--mi_estimation_interval",
    "10",
]

# Every field the original main.py wrote, plus the ones this implementation adds.
ORIGINAL_FIELDS = (
    "task",
    "gt_mi",
    "mi_estimate",
    "mi_estimate_orthogonal",
    "estimator",
    "use_moe",
    "snr_threshold",
    "seed",
    "learning_rate",
    "batch_size",
    "train_sample_num",
    "test_sample_num",
    "max_epochs",
    "model_dim",
    "task_dim",
    "task_strength",
    "preprocessing",
    "use_ema",
)
ADDED_FIELDS = (
    *("ema_decay", "mi_stderr", "mi_orthogonal_stderr", "mi_estimate_cross", "mi_cross_stderr"),
    *("train_seconds", "checkpoint"),
)


def read_lines(path: Path) -> list[dict]:
    """Every line of a results file as JSON; the file must end with a complete line."""
    text = path.read_text()
    assert text.endswith("\n"), "the results file must end with a complete line"
    return [json.loads(line) for line in text.splitlines()]


def files_under(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}
