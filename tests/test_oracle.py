"""The whole estimator (sampling, weights, both forms) with exact denoisers returns the truth."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dmi.cli import main
from dmi.config import EstimatorConfig
from dmi.denoisers import GaussianDenoiser
from dmi.diffusion import LogSNRProposal
from dmi.estimation import estimate_mi
from dmi.tasks import TaskSpec, gaussian_covariance, true_mi
from tests.conftest import gaussian_sample

DEFAULT = EstimatorConfig()
DEFAULT_PROPOSAL = LogSNRProposal(DEFAULT.logsnr_loc, DEFAULT.logsnr_scale, DEFAULT.logsnr_clip)


@pytest.mark.parametrize("dim", [3, 50])
@pytest.mark.parametrize("strength", [2, 200, 1100, 2000])
def test_oracle_recovers_true_mi(dim: int, strength: float) -> None:
    spec = TaskSpec("multinormal", dim, strength)
    cov = gaussian_covariance(spec)
    x, y = gaussian_sample(cov, dim, 4000 if dim == 3 else 2000, seed=strength)
    est = estimate_mi(GaussianDenoiser(cov, dim), x, y, DEFAULT_PROPOSAL, DEFAULT.n_logsnr, seed=1)
    truth = true_mi(spec)
    assert abs(est.mi - truth) <= max(0.05, 3 * est.mi_stderr), (est, truth)
    assert abs(est.mi_orthogonal - truth) <= max(0.05, 3 * est.mi_orthogonal_stderr), (est, truth)
    assert 0 < est.mi_stderr < 0.1 and 0 < est.mi_orthogonal_stderr < 0.1


def _exact_truncated_mi(cov: np.ndarray, d: int, low: float, high: float) -> float:
    """½∫ (mmse_ε − mmse_ε|y) dα over [low, high] by fine quadrature of the closed form."""
    sxx, sxy, syy = cov[:d, :d], cov[:d, d:], cov[d:, d:]
    scond = sxx - sxy @ np.linalg.solve(syy, sxy.T)
    lx, lc = np.linalg.eigvalsh(sxx), np.linalg.eigvalsh(scond)
    alpha = np.linspace(low, high, 40001)[:, None]
    a2 = 1 / (1 + np.exp(-alpha))
    b2 = 1 - a2
    gap = (b2 / (a2 * lc + b2)).sum(1) - (b2 / (a2 * lx + b2)).sum(1)
    return 0.5 * np.trapz(gap, alpha[:, 0])


def test_default_range_truncation_bias_is_negligible_where_original_loses_a_nat() -> None:
    spec = TaskSpec("multinormal", 3, 2000)
    cov, truth = gaussian_covariance(spec), true_mi(spec)
    default_loss = truth - _exact_truncated_mi(cov, 3, DEFAULT_PROPOSAL.low, DEFAULT_PROPOSAL.high)
    original = LogSNRProposal(2.0, 3.0, 4.0)
    original_loss = truth - _exact_truncated_mi(cov, 3, original.low, original.high)
    assert default_loss < 0.02
    assert 0.9 < original_loss < 1.05


def test_estimator_reproduces_the_original_ranges_loss() -> None:
    """With the original's range the oracle estimate lands on the truncated integral."""
    spec = TaskSpec("multinormal", 3, 2000)
    cov = gaussian_covariance(spec)
    x, y = gaussian_sample(cov, 3, 4000, seed=7)
    original = LogSNRProposal(2.0, 3.0, 4.0)
    est = estimate_mi(GaussianDenoiser(cov, 3), x, y, original, 64, seed=3)
    expected = _exact_truncated_mi(cov, 3, original.low, original.high)
    assert abs(est.mi - expected) <= max(0.05, 3 * est.mi_stderr)


def test_oracle_command_json(capsys) -> None:
    code = main(["oracle", "--dim", "3", "--strength", "200", "--test_num", "2000", "--json"])
    assert code == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for key in ("gt_mi", "mi_estimate", "mi_estimate_orthogonal", "mi_stderr", "mi_orthogonal_stderr"):
        assert key in out
    assert abs(out["mi_estimate_cross"] - out["gt_mi"]) < max(0.05, 3 * out["mi_cross_stderr"])
    assert abs(out["mi_estimate"] - out["gt_mi"]) < max(0.05, 3 * out["mi_stderr"])


def test_oracle_command_shows_the_original_ranges_bias(capsys) -> None:
    args = ["oracle", "--strength", "2000", "--test_num", "2000", "--json"]
    assert main(args + ["--logsnr_loc", "2", "--logsnr_scale", "3", "--clip", "4"]) == 0
    out = json.loads(capsys.readouterr().out.strip())
    assert out["gt_mi"] - out["mi_estimate"] > 0.7


def test_oracle_command_refuses_non_gaussian_task(capsys) -> None:
    assert main(["oracle", "--task_type", "spiral"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "multinormal" in err
