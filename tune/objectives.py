"""Label-free sweep objectives: scores of a trial's reports that should rank trials by true error.

Each scores the latest report from those so far (ASHA, Optuna and the checkpoint ranking read the same
number); lower is better, and ``benchmarks/selection.py`` measures how well each ranks. The default, the
held-out NLL of x given y, scores the model that carries the information: as the estimate is
I + KL_x − KL_x|y, ``val_loss`` also rewards a better unconditional model.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

Report = Mapping[str, Any]
MODE = "min"  # every objective here is minimised
STABILITY_WINDOW = 3
OBJECTIVE_INPUTS = (  # the held-out NLL bounds, and both MI forms with their standard errors
    *("val_loss", "val_nll_x", "val_nll_x_given_y"),
    *("mi", "mi_orthogonal", "mi_stderr", "mi_orthogonal_stderr"),
)


def _get(report: Report, key: str) -> float:
    try:
        return float(report.get(key))
    except (TypeError, ValueError):
        return math.nan


def disagreement(report: Report) -> float:
    """|direct − orthogonal| in nats: zero when the conditional denoiser is the true conditional mean."""
    return abs(_get(report, "mi") - _get(report, "mi_orthogonal"))


def disagreement_se(report: Report) -> float:
    se = math.hypot(_get(report, "mi_stderr"), _get(report, "mi_orthogonal_stderr"))
    return disagreement(report) / se if se > 0 else math.nan


def stability(history: Sequence[Report]) -> float:
    """Range of the direct MI over the last ``STABILITY_WINDOW`` reports (NaN before there are that many)."""
    if len(history) < STABILITY_WINDOW:
        return math.nan
    window = [_get(r, "mi") for r in history[-STABILITY_WINDOW:]]
    return max(window) - min(window)


CANDIDATES: dict[str, Callable[[Sequence[Report]], float]] = {
    "val_loss": lambda h: _get(h[-1], "val_loss"),
    "val_nll_x_given_y": lambda h: _get(h[-1], "val_nll_x_given_y"),
    "disagreement": lambda h: disagreement(h[-1]),
    "disagreement_se": lambda h: disagreement_se(h[-1]),
    "stability": stability,
    "val_loss_plus_disagreement": lambda h: _get(h[-1], "val_loss") + disagreement(h[-1]),
    "cond_nll_plus_disagreement": lambda h: _get(h[-1], "val_nll_x_given_y") + disagreement(h[-1]),
    "val_loss_plus_stability": lambda h: _get(h[-1], "val_loss") + stability(h),
    "val_loss_plus_disagreement_plus_stability": lambda h: _get(h[-1], "val_loss") + disagreement(h[-1]) + stability(h),
}
DEFAULT_OBJECTIVE = "val_nll_x_given_y"


def score(history: Sequence[Report], name: str) -> float:
    """The objective ``name`` of the latest report in ``history`` (NaN when not yet defined)."""
    return float(CANDIDATES[name](history)) if history else math.nan


def trial_scores(reports: Sequence[Report], name: str) -> tuple[float, Report] | None:
    """A trial's best report by ``name`` (lowest finite score) and that score; None if none scores."""
    best: tuple[float, Report] | None = None
    for i in range(len(reports)):
        value = score(reports[: i + 1], name)
        if math.isfinite(value) and (best is None or value < best[0]):
            best = (value, reports[i])
    return best
