"""Is a new sample like the one a trained estimator was selected on? The domain check of saved estimators.

An estimator applied to data from elsewhere still returns a number, with a standard error
as small as ever, and that number can be absurd (far below zero).
A trained module therefore keeps a reference from its held-out validation rows, made on the
validation grid. It holds two per-row quantities, each as a median and a robust spread:
the NLL bound nll(x) + nll(x|y), with its 99th percentile too, and the pointwise MI (the
direct integrand). It also holds each preprocessed column's median and spread. A new
sample is compared with it:

- ``nll_shift``: |median NLL of the new rows − the reference median| / the reference spread;
- ``dependence_shift``: the same for the pointwise MI. Data with the training marginals but
  another dependence (independent columns, say) moves this one most;
- ``column_shift``: over the columns, the largest of |median shift| / spread and
  |log(spread ratio)|, so a moved or rescaled column is named;
- ``tail_share``: the share of new rows whose NLL lies beyond the reference's 99th percentile
  (about 0.01 in domain).

``domain_score = max(nll_shift, dependence_shift, column_shift)``: near 0 for a fresh sample
of the training distribution (the sampling noise of medians and spreads), and well above
``DOMAIN_LIMIT`` for data with other marginals or another dependence. A sample is in domain
when ``domain_score <= DOMAIN_LIMIT`` and ``tail_share <= TAIL_LIMIT``. Medians and quartiles
rather than means and variances keep heavy-tailed data from false alarms. With fewer than
``MIN_ROWS`` rows the check is too noisy to judge: it reports its numbers, and ``in_domain``
is None.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor

DOMAIN_LIMIT = 0.5
TAIL_LIMIT = 0.1
TAIL_QUANTILE = 0.99
MIN_ROWS = 50
IQR_TO_SIGMA = 1.349  # the interquartile range of a unit normal
MIN_SPREAD = 1e-3  # preprocessed columns have unit scale: a floor for constant ones


def _median_spread(values: Tensor, dim: int = 0) -> tuple[Tensor, Tensor]:
    values = values.double()
    q = torch.quantile(values, torch.tensor([0.25, 0.5, 0.75], dtype=torch.float64), dim=dim)
    return q[1], ((q[2] - q[0]) / IQR_TO_SIGMA).clamp_min(MIN_SPREAD)


@dataclass
class DomainReference:
    """What a module keeps of its validation rows (plain floats: it travels in checkpoints)."""

    nll_median: float
    nll_spread: float
    nll_tail: float
    mi_median: float
    mi_spread: float
    column_median: list[float]
    column_spread: list[float]
    n_logsnr: int
    n_rows: int

    @classmethod
    def from_rows(cls, points: Tensor, mi_points: Tensor, x: Tensor, y: Tensor, n_logsnr: int) -> DomainReference:
        """From the per-row NLL ``points`` and pointwise MI of preprocessed validation rows (x, y)."""
        points = points.detach().double().cpu()
        median, spread = _median_spread(points)
        mi_median, mi_spread = _median_spread(mi_points.detach().cpu())
        columns = torch.cat([x, y], dim=1).detach().cpu()
        col_median, col_spread = _median_spread(columns)
        return cls(
            nll_median=float(median),
            nll_spread=float(spread),
            nll_tail=float(torch.quantile(points, TAIL_QUANTILE)),
            mi_median=float(mi_median),
            mi_spread=float(mi_spread),
            column_median=col_median.tolist(),
            column_spread=col_spread.tolist(),
            n_logsnr=int(n_logsnr),
            n_rows=int(points.numel()),
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> DomainReference:
        return cls(**values)


@dataclass
class DomainCheck:
    """How far a sample lies from a module's reference (see the module docstring)."""

    in_domain: bool | None
    domain_score: float
    nll_shift: float
    dependence_shift: float
    column_shift: float
    worst_column: str | None
    tail_share: float
    n_rows: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def message(self) -> str:
        """One line saying why the sample is out of domain (or why it could not be judged)."""
        if math.isnan(self.domain_score):
            return "no domain reference: this estimator was trained without held-out rows"
        if self.in_domain is None:
            return f"{self.n_rows} rows are too few to judge the domain (at least {MIN_ROWS})"
        parts = [f"domain_score {self.domain_score:.2f} (in domain up to {DOMAIN_LIMIT})"]
        if self.nll_shift > DOMAIN_LIMIT:
            parts.append(f"the typical row's NLL moved {self.nll_shift:.1f} reference spreads")
        if self.dependence_shift > DOMAIN_LIMIT:
            parts.append(f"the typical row's pointwise MI moved {self.dependence_shift:.1f} reference spreads")
        if self.column_shift > DOMAIN_LIMIT:
            parts.append(f"column {self.worst_column} moved or rescaled by {self.column_shift:.1f} spreads")
        if self.tail_share > TAIL_LIMIT:
            parts.append(f"{self.tail_share:.0%} of rows lie beyond the reference's 99th NLL percentile")
        return "data unlike the estimator's training data: " + "; ".join(parts)


def compare(
    reference: DomainReference | None, points: Tensor, mi_points: Tensor, x: Tensor, y: Tensor, names: list[str]
) -> DomainCheck:
    """Compare per-row NLL ``points``, pointwise MI and preprocessed columns (x, y) with ``reference``."""
    n = int(points.numel())
    if reference is None:
        nan = float("nan")
        return DomainCheck(None, nan, nan, nan, nan, None, nan, n)
    points = points.detach().double().cpu()
    median, _ = _median_spread(points)
    nll_shift = abs(float(median) - reference.nll_median) / reference.nll_spread
    mi_median, _ = _median_spread(mi_points.detach().cpu())
    dependence_shift = abs(float(mi_median) - reference.mi_median) / reference.mi_spread
    tail_share = float((points > reference.nll_tail).double().mean())
    col_median, col_spread = _median_spread(torch.cat([x, y], dim=1).detach().cpu())
    ref_median = torch.tensor(reference.column_median, dtype=torch.float64)
    ref_spread = torch.tensor(reference.column_spread, dtype=torch.float64)
    moved = (col_median - ref_median).abs() / ref_spread
    rescaled = torch.log(col_spread / ref_spread).abs()
    per_column = torch.maximum(moved, rescaled)
    worst = int(per_column.argmax())
    column_shift = float(per_column[worst])
    score = max(nll_shift, dependence_shift, column_shift)
    verdict = None if n < MIN_ROWS else bool(score <= DOMAIN_LIMIT and tail_share <= TAIL_LIMIT)
    return DomainCheck(verdict, score, nll_shift, dependence_shift, column_shift, names[worst], tail_share, n)
