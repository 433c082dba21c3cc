"""What a finished sweep reports: trial counts, label-free ranking quality, the JSON file on disk."""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from pathlib import Path
from typing import Any

from dmi.tempfiles import make_temp

SUMMARY_FILE = "dmi_summary.json"
CONFIG_FILE = "dmi_config.json"  # the validated config, written when the experiment starts


def diverged(result: dict[str, Any] | None) -> bool:
    """Whether a trial's last report says that its training diverged (``tune.trainable.report_divergence``)."""
    return bool(result) and bool(result.get("diverged"))


def summary_path(experiment_dir: str | Path) -> Path:
    return Path(experiment_dir) / SUMMARY_FILE


def write_summary(path: str | Path, summary: dict[str, Any]) -> Path:
    """Atomic: a temporary file in the same folder, then a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = make_temp(path)
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(summary, handle, indent=2, sort_keys=False, default=_jsonable)
            handle.write("\n")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def read_summary(path: str | Path) -> dict[str, Any] | None:
    path = Path(path)
    if not path.is_file():
        return None
    return json.loads(path.read_text())


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def clean(value: Any) -> Any:
    """NaN and inf become null (strict JSON readers refuse them)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    return value


def status_counts(statuses: list[str]) -> dict[str, int]:
    return dict(sorted(Counter(statuses).items()))


def ranking_quality(rows: list[tuple[float, float]]) -> dict[str, Any]:
    """Does a label-free objective find accurate estimators?

    ``rows`` holds, per trial, (its lowest objective, ``abs_error`` at that report). Spearman's
    rho over trials says how well the objective orders them by true error; the regret is how
    much worse the objective's pick is than the most accurate trial.
    """
    rows = [(v, e) for v, e in rows if math.isfinite(v) and math.isfinite(e)]
    result: dict[str, Any] = {"n_trials": len(rows), "spearman": None}
    if not rows:
        return result
    pick = min(rows, key=lambda r: r[0])[1]
    oracle = min(e for _, e in rows)
    result.update(pick_abs_error=pick, best_abs_error=oracle, regret=pick - oracle)
    if len(rows) >= 3 and len({v for v, _ in rows}) > 1 and len({e for _, e in rows}) > 1:
        from scipy.stats import spearmanr

        rho = spearmanr([v for v, _ in rows], [e for _, e in rows]).statistic
        result["spearman"] = None if not math.isfinite(rho) else float(rho)
    return result
