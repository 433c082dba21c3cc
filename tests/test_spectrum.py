"""The information spectrum: the I-MMSE integrand over log-SNR, against the Gaussian oracle."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from dmi.api import DiffusionMI
from dmi.denoisers import GaussianDenoiser
from dmi.diagnostics import EstimateWarning
from dmi.diffusion import LogSNRProposal
from dmi.spectrum import gaussian_spectrum, information_spectrum

RHO = 0.9


def _gaussian(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two correlated pairs (ρ = 0.9) in 3 + 3 dimensions."""
    cov = np.eye(6)
    for i in range(2):
        cov[i, 3 + i] = cov[3 + i, i] = RHO
    xy = np.random.default_rng(seed).standard_normal((n, 6)) @ np.linalg.cholesky(cov).T
    return xy[:, :3], xy[:, 3:], cov


TRUE_MI = -2 * 0.5 * math.log(1 - RHO**2)


def test_closed_form_integrates_to_the_gaussian_mi() -> None:
    _, _, cov = _gaussian(1)
    oracle = GaussianDenoiser(cov, 3)
    wide = gaussian_spectrum(oracle.eigval_x, oracle.eigval_c, torch.linspace(-20, 30, 400))
    assert wide.integral() == pytest.approx(TRUE_MI, abs=1e-3)
    assert wide.gap == pytest.approx(wide.gap_orthogonal) and wide.covers_window()


def test_exact_denoiser_matches_the_closed_form_within_its_standard_error() -> None:
    x, y, cov = _gaussian(3000)
    oracle = GaussianDenoiser(cov, 3)
    proposal = LogSNRProposal(6.0, 6.0, 3.0)
    sampled = information_spectrum(oracle, torch.tensor(x).float(), torch.tensor(y).float(), proposal)
    exact = gaussian_spectrum(oracle.eigval_x, oracle.eigval_c, sampled.logsnr)
    z = [(a - b) / s for a, b, s in zip(sampled.gap, exact.gap, sampled.gap_stderr, strict=True) if s > 0]
    assert len(z) > 30 and max(abs(v) for v in z) < 4.0
    assert sampled.integral() == pytest.approx(exact.integral(), abs=0.1)
    assert sampled.window == (proposal.low, proposal.high)


def test_trained_estimator_spectrum_matches_the_oracle() -> None:
    x, y, cov = _gaussian(4000, seed=1)
    estimator = DiffusionMI(max_steps=400, model_dim=16, seed=0)
    result = estimator.estimate_with_info(x, y)
    info = result.additional_information
    spectrum = info["spectrum"]
    oracle = GaussianDenoiser(cov, 3)
    # The estimator works on standardised x; the oracle of the standardised pair has the same spectrum
    # up to the sample's scale, which is within a few percent here.
    exact = gaussian_spectrum(oracle.eigval_x, oracle.eigval_c, spectrum["logsnr"])
    z = [(a - b) / s for a, b, s in zip(spectrum["gap"], exact.gap, spectrum["gap_stderr"], strict=True) if s > 0]
    within = sum(abs(v) <= 3 for v in z) / len(z)
    assert within >= 0.9, z
    assert spectrum["integral"] == pytest.approx(info["mi"], abs=4 * info["mi_stderr"] + 0.02)
    assert spectrum["covers_window"] and info["window_covers_information"]
    assert 0.0 < spectrum["peak_logsnr"] < 4.0  # where the oracle's ρ = 0.9 pairs put it


def test_a_window_that_misses_the_information_warns() -> None:
    x, y, _ = _gaussian(3000)
    estimator = DiffusionMI(max_steps=20, model_dim=8, logsnr_loc=-4.0, logsnr_scale=1.0, logsnr_clip=2.0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        info = estimator.estimate_with_info(x, y).additional_information
    assert info["window_covers_information"] is False and info["window_tail_nats"] > 0.05
    messages = [str(w.message) for w in caught if issubclass(w.category, EstimateWarning)]
    assert any("log-SNR window [-6, -2]" in m for m in messages), messages
