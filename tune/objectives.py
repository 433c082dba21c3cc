"""Label-free sweep objectives: scores of a trial's reports that should rank trials by true error.

Each objective scores the latest report of a trial from the reports so far (so a trial can
report it as it trains, and ASHA, Optuna and the checkpoint ranking all read the same
number). Lower is better. ``benchmarks/selection.py`` measures how well each one ranks trials
by |error| on a panel of tasks with known MI.

The default, ``val_nll_x_given_y``, is the held-out NLL bound of x given y alone. The direct
estimate is I + KL_x − KL_x|y: ``val_loss`` (the sum of both bounds) also rewards a better
*unconditional* model, which lowers KL_x and so pulls the estimate down whenever the
conditional one lags; the conditional bound scores the model that carries the information.
On the panel it had the lowest mean regret; adding |direct − orthogonal| did not help.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

Report = Mapping[str, Any]
STABILITY_WINDOW = 3
OBJECTIVE_INPUTS = (
    "val_loss",
    "val_nll_x",
    "val_nll_x_given_y",
    "mi",
    "mi_orthogonal",
    "mi_stderr",
    "mi_orthogonal_stderr",
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


Objective = Callable[[Sequence[Report]], float]

CANDIDATES: dict[str, Objective] = {
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
    if not history:
        return math.nan
    return float(CANDIDATES[name](history))


def trial_scores(reports: Sequence[Report], name: str) -> tuple[float, Report] | None:
    """A trial's best report by ``name`` (lowest finite score) and that score; None if none scores."""
    best: tuple[float, Report] | None = None
    for i in range(len(reports)):
        value = score(reports[: i + 1], name)
        if math.isfinite(value) and (best is None or value < best[0]):
            best = (value, reports[i])
    return best
