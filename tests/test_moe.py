"""Mixture of experts: static routing by log-SNR stratum, gradients to both experts."""

from __future__ import annotations

import pytest
import torch

from dmi.config import ConfigError, EstimatorConfig
from dmi.diffusion import LogSNRProposal
from dmi.estimation import denoising_loss, estimate_mi
from dmi.module import build_denoiser
from dmi.networks import ResidualMLP


def _record_logsnr(net: torch.nn.Module, store: list) -> None:
    """Per expert, the log-SNR values its rows carried (inputs laid out expert-major)."""
    net.register_forward_hook(lambda mod, args, out: store.append(args[1].detach().clone()))


def test_each_expert_sees_only_its_side_and_both_learn() -> None:
    cfg = EstimatorConfig(architecture="moe", snr_threshold=4.0, model_dim=16, gaussian_base=False)
    denoiser = build_denoiser(cfg, 3, 2)
    seen = []
    _record_logsnr(denoiser.inner.experts, seen)
    proposal = LogSNRProposal(cfg.logsnr_loc, cfg.logsnr_scale, cfg.logsnr_clip)
    x, y = torch.randn(64, 3), torch.randn(64, 2)
    loss = denoising_loss(denoiser, x, y, proposal)
    loss.backward()
    assert len(seen) == 1 and seen[0].shape == (2, 32)  # static, equal shares
    assert (seen[0][0] < 4.0).all() and (seen[0][1] >= 4.0).all()
    grad = denoiser.inner.experts.out.weight.grad  # the zero-initialised output learns first
    assert grad[0].abs().sum() > 0 and grad[1].abs().sum() > 0

    seen.clear()
    with torch.no_grad():
        estimate_mi(denoiser, x, y, proposal, n_logsnr=8, seed=0)
    assert all((a[0] < 4.0).all() and (a[1] >= 4.0).all() for a in seen)


def _expert(moe, e: int, dim_x: int, dim_y: int, width: int) -> ResidualMLP:
    """Expert ``e`` of a stacked mixture, as a standalone one-expert network."""
    single = ResidualMLP(dim_x, dim_y, width, len(moe.experts.blocks))
    single.load_state_dict({k: v[e : e + 1] for k, v in moe.experts.state_dict().items()})
    return single


@pytest.mark.parametrize("segments", [None, (3, 3), (4, 2)])
def test_routing_matches_each_expert_alone(segments) -> None:
    cfg = EstimatorConfig(architecture="moe", snr_threshold=0.0, model_dim=8, gaussian_base=False)
    moe = build_denoiser(cfg, 2, 2).inner
    with torch.no_grad():
        for p in moe.parameters():
            p.normal_()
    z, y = torch.randn(6, 2), torch.randn(6, 2)
    present = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0, 1.0])
    if segments is None:
        alpha = torch.tensor([-3.0, -1.0, 2.0, -5.0, 4.0, 1.0])
    else:  # rows laid out low stratum first, as the loss and the estimator lay them out
        alpha = torch.cat([-torch.rand(segments[0]) - 0.1, torch.rand(segments[1]) + 0.1])
    low, high = _expert(moe, 0, 2, 2, 8), _expert(moe, 1, 2, 2, 8)
    expected = torch.where((alpha < 0).reshape(-1, 1), low(z, alpha, y, present), high(z, alpha, y, present))
    assert torch.allclose(moe(z, alpha, y, present, segments), expected, atol=1e-5)
    out_u, out_c = moe.pair(z, alpha, y, segments)
    assert torch.allclose(out_u, moe(z, alpha, y, torch.zeros(6), segments), atol=1e-5)
    assert torch.allclose(out_c, moe(z, alpha, y, torch.ones(6), segments), atol=1e-5)


def test_pair_equals_two_calls_for_every_denoiser() -> None:
    for arch in ("unified", "moe"):
        denoiser = build_denoiser(EstimatorConfig(architecture=arch, model_dim=8), 3, 2)
        with torch.no_grad():
            for p in denoiser.inner.parameters():
                p.normal_(std=0.3)
        z, y = torch.randn(10, 3), torch.randn(10, 2)
        alpha = torch.linspace(-10, 20, 10)
        out_u, out_c = denoiser.pair(z, alpha, y)
        assert torch.allclose(out_u, denoiser(z, alpha, y, torch.zeros(10)), atol=1e-5)
        assert torch.allclose(out_c, denoiser(z, alpha, y, torch.ones(10)), atol=1e-5)
        with torch.inference_mode():  # the in-place inference path computes the same function
            inf_u, inf_c = denoiser.pair(z, alpha, y)
            assert torch.allclose(inf_u, out_u, atol=1e-5) and torch.allclose(inf_c, out_c, atol=1e-5)
            assert torch.allclose(denoiser(z, alpha, y, torch.ones(10)), out_c, atol=1e-5)


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
