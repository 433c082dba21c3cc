"""Log-SNR proposal, stratified draws and their importance weights."""

from __future__ import annotations

import math

import pytest
import torch

from dmi.diffusion import LogSNRProposal, quantile_strata, split_counts


def test_weights_integrate_the_range_exactly() -> None:
    p = LogSNRProposal(6.0, 6.0, 3.0)
    alpha, w = p.stratified([64], [(0.0, 1.0)], generator=torch.Generator().manual_seed(0))
    assert alpha.min() >= p.low and alpha.max() <= p.high
    # ∫ 1 dα is not exact for a finite grid, but its mean over shifts is; check tightly.
    totals = [
        p.stratified([64], [(0.0, 1.0)], generator=torch.Generator().manual_seed(s))[1].sum()
        for s in range(50)
    ]
    assert abs(float(torch.stack(totals).mean()) - (p.high - p.low)) < 0.05


def test_stratified_estimate_of_a_smooth_integral_is_unbiased() -> None:
    p = LogSNRProposal(2.0, 3.0, 4.0)
    f = torch.sigmoid  # ∫ σ(α) dα = log(1 + e^α)
    exact = math.log1p(math.exp(p.high)) - math.log1p(math.exp(p.low))
    alpha, w = p.stratified(
        [8, 8], quantile_strata(p, [1.0]), n_columns=4000, generator=torch.Generator().manual_seed(1)
    )
    per_column = (w.double() * f(alpha.double())).sum(0)
    se = per_column.std() / math.sqrt(per_column.numel())
    assert abs(per_column.mean().item() - exact) < 4 * se.item() + 1e-6


def test_strata_split_at_threshold() -> None:
    p = LogSNRProposal(6.0, 6.0, 3.0)
    strata = quantile_strata(p, [5.0])
    alpha, _ = p.stratified([10, 10], strata, generator=torch.Generator().manual_seed(0))
    assert (alpha[:10] < 5.0).all() and (alpha[10:] >= 5.0).all()
    assert split_counts(7, 2) == [4, 3]


@pytest.mark.parametrize(
    "kwargs",
    [dict(loc=0, scale=0, clip=3), dict(loc=0, scale=1, clip=-1), dict(loc=float("nan"), scale=1, clip=1)],
)
def test_bad_proposal_is_refused(kwargs) -> None:
    with pytest.raises(ValueError):
        LogSNRProposal(**kwargs)
