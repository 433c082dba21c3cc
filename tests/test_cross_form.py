"""The cross form: the mean of the direct and orthogonal forms, and what fitting noise does to each."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from dmi import ConfigError, DiffusionMI
from dmi.config import EstimatorConfig
from dmi.denoisers import GaussianDenoiser
from dmi.diffusion import LogSNRProposal
from dmi.estimation import estimate_mi
from dmi.tasks import TaskSpec, gaussian_covariance, true_mi
from tests.conftest import gaussian_sample

DEFAULT = EstimatorConfig()
PROPOSAL = LogSNRProposal(DEFAULT.logsnr_loc, DEFAULT.logsnr_scale, DEFAULT.logsnr_clip)
SPEC = TaskSpec("multinormal", 3, 2)


class NoisyConditional(nn.Module):
    """The exact denoiser whose conditional prediction carries zero-mean noise of size ``sigma``:
    a conditional model's fitting noise, uncorrelated with everything it should predict."""

    def __init__(self, exact: GaussianDenoiser, sigma: float, seed: int = 0) -> None:
        super().__init__()
        self.exact, self.sigma = exact, sigma
        self.generator = torch.Generator().manual_seed(seed)

    def pair(self, z: Tensor, logsnr: Tensor, y: Tensor, segments=None) -> tuple[Tensor, Tensor]:
        eps_u, eps_c = self.exact.pair(z, logsnr, y, segments)
        noise = torch.randn(eps_c.shape, generator=self.generator, dtype=eps_c.dtype)
        return eps_u, eps_c + self.sigma * noise


def _sample_and_exact() -> tuple[Tensor, Tensor, GaussianDenoiser, float]:
    cov = gaussian_covariance(SPEC)
    x, y = gaussian_sample(cov, SPEC.dim, 4000, seed=3)
    return x, y, GaussianDenoiser(cov, SPEC.dim), true_mi(SPEC)


def test_cross_form_is_the_mean_of_the_two_and_exact_with_exact_denoisers() -> None:
    x, y, exact, truth = _sample_and_exact()
    est = estimate_mi(exact, x, y, PROPOSAL, DEFAULT.n_logsnr, seed=1)
    assert est.mi_cross == pytest.approx(0.5 * (est.mi + est.mi_orthogonal), abs=1e-9)
    assert abs(est.mi_cross - truth) <= max(0.05, 3 * est.mi_cross_stderr), (est, truth)
    assert 0 < est.mi_cross_stderr < 0.1
    assert {"mi_cross", "mi_cross_stderr"} <= set(est.as_dict())


def test_fitting_noise_lowers_the_direct_form_raises_the_orthogonal_and_cancels_in_the_cross_form() -> None:
    """Noise of variance σ² per coordinate costs the direct form ½σ²·d per unit of log-SNR, adds as much to the
    orthogonal form, and leaves the cross form, which is linear in the conditional prediction, unbiased."""
    x, y, exact, truth = _sample_and_exact()
    sigma = 0.05
    shift = 0.5 * sigma**2 * SPEC.dim * (PROPOSAL.high - PROPOSAL.low)  # 0.135 nats on the default window
    est = estimate_mi(NoisyConditional(exact, sigma), x, y, PROPOSAL, DEFAULT.n_logsnr, seed=1)
    assert est.mi == pytest.approx(truth - shift, abs=max(0.04, 3 * est.mi_stderr)), (est, truth)
    assert est.mi_orthogonal == pytest.approx(truth + shift, abs=max(0.04, 3 * est.mi_orthogonal_stderr)), (est, truth)
    assert abs(est.mi_cross - truth) <= max(0.03, 3 * est.mi_cross_stderr), (est, truth)


def test_the_library_estimates_in_the_form_asked_for() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 2))
    y = x + rng.normal(size=(600, 2))
    result = DiffusionMI(form="cross", max_steps=50, model_dim=8).estimate_with_info(x, y)
    info = result.additional_information
    assert result.mi_estimate == info["mi_cross"] == pytest.approx(0.5 * (info["mi"] + info["mi_orthogonal"]))
    assert info["form"] == "cross" and np.isfinite(info["mi_cross_stderr"])
    with pytest.raises(ConfigError, match="form must be one of direct, orthogonal, cross"):
        DiffusionMI(form="midpoint")
