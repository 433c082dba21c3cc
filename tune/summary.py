"""What a finished sweep reports: its file names, label-free ranking quality, JSON-clean values."""

from __future__ import annotations

import math
from typing import Any

SUMMARY_FILE = "dmi_summary.json"
CONFIG_FILE = "dmi_config.json"  # the validated config, written when the experiment starts


def abs_error_key(field: str) -> str:
    """The summary's |error| key of an estimate field (``dmi.forms.FORM_FIELDS``), as mi → abs_error."""
    return "abs_error" + field.removeprefix("mi")


def diverged(result: dict[str, Any] | None) -> bool:
    """Whether a trial's last report says that its training diverged (``tune.trainable``)."""
    return bool(result and result.get("diverged"))


def clean(value: Any) -> Any:
    """NaN and inf become null (strict JSON readers refuse them)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: clean(v) for k, v in value.items()}
    return [clean(v) for v in value] if isinstance(value, (list, tuple)) else value


def ranking_quality(rows: list[tuple[float, float]]) -> dict[str, Any]:
    """Spearman's rho of (objective, abs_error) over trials, and the regret of the objective's pick over the best."""
    rows = [(v, e) for v, e in rows if math.isfinite(v) and math.isfinite(e)]
    result: dict[str, Any] = {"n_trials": len(rows), "spearman": None}
    if not rows:
        return result
    pick, oracle = min(rows, key=lambda r: r[0])[1], min(e for _, e in rows)
    result.update(pick_abs_error=pick, best_abs_error=oracle, regret=pick - oracle)
    if len(rows) >= 3 and len({v for v, _ in rows}) > 1 and len({e for _, e in rows}) > 1:
        from scipy.stats import spearmanr

        rho = spearmanr([v for v, _ in rows], [e for _, e in rows]).statistic
        result["spearman"] = float(rho) if math.isfinite(rho) else None
    return result
