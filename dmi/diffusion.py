"""I-MMSE diffusion math, written once for every denoiser.

Gaussian channel z = sqrt(σ(α))·x + sqrt(σ(−α))·ε with α the log-SNR. With mse_ε(α) a
denoiser's expected squared ε-error, −log p(x) = ½ d log(2πe) + ½ ∫ (mse_ε(α) − d·σ(α)) dα,
and I(X;Y) = ½ ∫ (mmse_ε(α) − mmse_ε(α | y)) dα (the direct form) = ½ ∫ E‖ε̂(z) − ε̂(z, y)‖² dα
(the orthogonal form). The integral over α is done by importance sampling from a truncated
logistic(loc, scale) on [loc − clip·scale, loc + clip·scale] (``dmi.checks.logsnr_bounds``),
drawn *stratified* in quantile space (a randomly shifted grid is the K-stratum case), which
is unbiased for the truncated integral and far less noisy than independent draws: one
random log-SNR per point multiplies each point's noise by the width of the range.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor

from dmi.checks import finite_number_problem, logsnr_bounds, positive_number_problem, require
from dmi.forms import FORM_FIELDS


@dataclass(frozen=True)
class LogSNRProposal:
    """Truncated logistic(loc, scale) on [loc − clip·scale, loc + clip·scale]."""

    loc: float
    scale: float
    clip: float

    def __post_init__(self) -> None:
        require("logsnr_loc", self.loc, finite_number_problem)
        require("logsnr_scale", self.scale, positive_number_problem)
        require("logsnr_clip", self.clip, positive_number_problem)

    @property
    def range(self) -> tuple[float, float]:
        """(low, high): ``dmi.checks.logsnr_bounds``, the one formula of the range."""
        return logsnr_bounds(self.loc, self.scale, self.clip)

    @property
    def low(self) -> float:
        return self.range[0]

    @property
    def high(self) -> float:
        return self.range[1]

    def _cdf_untruncated(self, alpha: float) -> float:
        return 1.0 / (1.0 + math.exp(-(alpha - self.loc) / self.scale))

    @property
    def _mass(self) -> tuple[float, float]:
        """(F(low), F(high)) of the untruncated logistic."""
        return self._cdf_untruncated(self.low), self._cdf_untruncated(self.high)

    def cdf(self, alpha: float) -> float:
        """CDF of the truncated proposal (a host float: used for routing strata)."""
        f_lo, f_hi = self._mass
        alpha = min(max(alpha, self.low), self.high)
        return (self._cdf_untruncated(alpha) - f_lo) / (f_hi - f_lo)

    def icdf(self, u: Tensor) -> Tensor:
        """Quantile function of the truncated proposal, u in [0, 1]."""
        f_lo, f_hi = self._mass
        p = f_lo + u * (f_hi - f_lo)
        return self.loc + self.scale * torch.logit(p)

    def density(self, alpha: Tensor) -> Tensor:
        """q(α) of the truncated proposal."""
        f_lo, f_hi = self._mass
        t = (alpha - self.loc) / self.scale
        logistic = torch.sigmoid(t) * torch.sigmoid(-t) / self.scale
        return logistic / (f_hi - f_lo)

    def stratified(
        self,
        counts: list[int],
        bounds: list[tuple[float, float]],
        n_columns: int | None = None,
        generator: torch.Generator | None = None,
        device: torch.device | str = "cpu",
    ) -> tuple[Tensor, Tensor]:
        """Stratified draws: ``counts[s]`` points in quantile stratum ``bounds[s]``.

        Within a stratum the draws form a randomly shifted grid. With ``n_columns`` each
        column (one per data point) gets its own shifts, so per-point integrals are i.i.d.
        and their standard error includes the quadrature noise. Returns (α, weight), shaped
        (K,) or (K, n_columns), where Σ_k weight·f(α) is unbiased for ∫ f(α) dα over the range.
        """
        cols = 1 if n_columns is None else n_columns
        alphas, weights = [], []
        for count, (u_lo, u_hi) in zip(counts, bounds, strict=True):
            if count <= 0:
                continue
            shift = torch.rand(1, cols, generator=generator, dtype=torch.float64)
            width = (u_hi - u_lo) / count
            u = u_lo + width * (torch.arange(count, dtype=torch.float64).reshape(-1, 1) + shift)
            alpha = self.icdf(u.clamp(1e-12, 1 - 1e-12))
            alphas.append(alpha)
            # The stratum's mass is shared by its draws, each divided by the density.
            weights.append(width / self.density(alpha))
        alpha = torch.cat(alphas).to(device=device, dtype=torch.float32)
        weight = torch.cat(weights).to(device=device, dtype=torch.float32)
        if n_columns is None:
            alpha, weight = alpha.reshape(-1), weight.reshape(-1)
        return alpha, weight


def quantile_strata(proposal: LogSNRProposal, thresholds: list[float]) -> list[tuple[float, float]]:
    """Split the proposal's quantile range [0, 1] at the given log-SNR thresholds."""
    cuts = [0.0] + [proposal.cdf(t) for t in sorted(thresholds)] + [1.0]
    return list(zip(cuts[:-1], cuts[1:], strict=True))


def split_counts(total: int, n_strata: int) -> list[int]:
    """Equal shares of ``total`` over ``n_strata`` (static shapes for every stratum)."""
    base, extra = divmod(total, n_strata)
    return [base + (1 if s < extra else 0) for s in range(n_strata)]


def add_noise(x: Tensor, alpha: Tensor, eps: Tensor) -> Tensor:
    """The Gaussian channel z = sqrt(σ(α))·x + sqrt(σ(−α))·ε (α per row of ε; x broadcast to ε's rows)."""
    alpha = alpha.reshape(*eps.shape[:-1], 1)
    return torch.sigmoid(alpha).sqrt() * x + torch.sigmoid(-alpha).sqrt() * eps


def gaussian_entropy(dim: int) -> float:
    """h_G = ½ d log(2πe), the constant of the NLL bound."""
    return 0.5 * dim * math.log(2 * math.pi * math.e)


@dataclass(frozen=True)
class MIEstimate:
    """MI estimates (nats) with standard errors over i.i.d. per-point integrals."""

    mi: float
    mi_orthogonal: float
    mi_stderr: float
    mi_orthogonal_stderr: float
    nll_x: float
    nll_x_given_y: float
    n_points: int
    n_logsnr: int
    # The cross form, ½∫E⟨ε − ε̂(z), ε̂(z, y) − ε̂(z)⟩dα, the mean of the direct and orthogonal forms
    # (NaN where not computed): see ``dmi.estimation.estimate_mi``.
    mi_cross: float = math.nan
    mi_cross_stderr: float = math.nan
    # Per-point nll(x) + nll(x|y) (float64), for paired comparisons between models; not reported.
    nll_points: Tensor | None = field(default=None, repr=False, compare=False)
    # Per-point direct integrand (pointwise MI, float64), for the domain check (dmi.domain).
    mi_points: Tensor | None = field(default=None, repr=False, compare=False)

    def form(self, name: str) -> float:
        """The estimate in form ``name`` (a key of ``FORM_FIELDS``)."""
        return getattr(self, FORM_FIELDS[name])

    def as_dict(self) -> dict[str, float | int]:
        return {
            "mi": self.mi,
            "mi_orthogonal": self.mi_orthogonal,
            "mi_stderr": self.mi_stderr,
            "mi_orthogonal_stderr": self.mi_orthogonal_stderr,
            "mi_cross": self.mi_cross,
            "mi_cross_stderr": self.mi_cross_stderr,
            "nll_x": self.nll_x,
            "nll_x_given_y": self.nll_x_given_y,
            "n_points": self.n_points,
            "n_logsnr": self.n_logsnr,
        }


def mean_and_stderr(values: Tensor) -> tuple[float, float]:
    """Mean and standard error of i.i.d. per-point values (float64)."""
    values = values.double()
    n = values.numel()
    mean = values.mean().item()
    stderr = (values.std(unbiased=True).item() / math.sqrt(n)) if n > 1 else float("nan")
    return mean, stderr
