"""Mixture of experts: static routing by log-SNR stratum, gradients to both experts."""

from __future__ import annotations

import pytest
import torch

from dmi.config import ConfigError, EstimatorConfig
from dmi.diffusion import LogSNRProposal
from dmi.estimation import denoising_loss, estimate_mi
from dmi.module import build_denoiser


def _record_logsnr(expert: torch.nn.Module, store: list) -> None:
    expert.register_forward_hook(lambda mod, args, out: store.append(args[1].detach().clone()))


def test_each_expert_sees_only_its_side_and_both_learn() -> None:
    cfg = EstimatorConfig(architecture="moe", snr_threshold=4.0, model_dim=16, gaussian_base=False)
    denoiser = build_denoiser(cfg, 3, 2)
    low_seen, high_seen = [], []
    _record_logsnr(denoiser.inner.low, low_seen)
    _record_logsnr(denoiser.inner.high, high_seen)
    proposal = LogSNRProposal(cfg.logsnr_loc, cfg.logsnr_scale, cfg.logsnr_clip)
    x, y = torch.randn(64, 3), torch.randn(64, 2)
    loss = denoising_loss(denoiser, x, y, proposal)
    loss.backward()
    assert len(low_seen) == 1 and len(high_seen) == 1
    assert low_seen[0].numel() == 32 and high_seen[0].numel() == 32  # static, equal shares
    assert (low_seen[0] < 4.0).all() and (high_seen[0] >= 4.0).all()
    for expert in (denoiser.inner.low, denoiser.inner.high):
        grads = [p.grad for p in expert.parameters() if p.grad is not None]
        assert grads and any(g.abs().sum() > 0 for g in grads)

    low_seen.clear()
    high_seen.clear()
    with torch.no_grad():
        estimate_mi(denoiser, x, y, proposal, n_logsnr=8, seed=0)
    assert torch.cat(low_seen).max() < 4.0 and torch.cat(high_seen).min() >= 4.0


def test_unsegmented_call_routes_per_row() -> None:
    cfg = EstimatorConfig(architecture="moe", snr_threshold=0.0, model_dim=8, gaussian_base=False)
    moe = build_denoiser(cfg, 2, 2).inner
    for p in moe.low.parameters():
        torch.nn.init.constant_(p, 0.1)
    z, y, present = torch.randn(6, 2), torch.randn(6, 2), torch.ones(6)
    alpha = torch.tensor([-3.0, -1.0, 2.0, -5.0, 4.0, 1.0])
    out = moe(z, alpha, y, present)
    low = moe.low(z, alpha, y, present)
    high = moe.high(z, alpha, y, present)
    expected = torch.where((alpha < 0).reshape(-1, 1), low, high)
    assert torch.allclose(out, expected)


@pytest.mark.parametrize("threshold", [-30.0, 40.0])
def test_threshold_outside_range_is_a_clear_error(threshold: float) -> None:
    with pytest.raises(ConfigError, match="snr_threshold"):
        EstimatorConfig(architecture="moe", snr_threshold=threshold)
    # The estimator itself refuses too, whatever built the denoiser.
    cfg = EstimatorConfig(architecture="moe", snr_threshold=5.0, model_dim=8)
    denoiser = build_denoiser(cfg, 2, 2)
    denoiser.inner.thresholds = (threshold,)
    with pytest.raises(ValueError, match="outside the sampled log-SNR range"):
        denoising_loss(denoiser, torch.randn(8, 2), torch.randn(8, 2), LogSNRProposal(6, 6, 3))
