"""Mixture of experts: a low-SNR expert everywhere, refined above the threshold by a high-SNR one."""

from __future__ import annotations

import pytest
import torch

from dmi.config import ConfigError, EstimatorConfig
from dmi.diffusion import LogSNRProposal
from dmi.estimation import denoising_loss, estimate_mi
from dmi.module import build_denoiser


def _record_logsnr(net: torch.nn.Module, store: list) -> None:
    """The log-SNR values of the rows a network is called on."""
    net.register_forward_hook(lambda mod, args, out: store.append(args[1].detach().reshape(-1).clone()))


def test_low_expert_sees_every_row_high_expert_only_its_side_and_both_learn() -> None:
    cfg = EstimatorConfig(architecture="moe", snr_threshold=4.0, model_dim=16, gaussian_base=False)
    denoiser = build_denoiser(cfg, 3, 2)
    seen_low, seen_high = [], []
    _record_logsnr(denoiser.inner.low, seen_low)
    _record_logsnr(denoiser.inner.high, seen_high)
    proposal = LogSNRProposal(cfg.logsnr_loc, cfg.logsnr_scale, cfg.logsnr_clip)
    x, y = torch.randn(64, 3), torch.randn(64, 2)
    loss = denoising_loss(denoiser, x, y, proposal, 0.5)
    loss.backward()
    assert seen_low[0].shape == (64,) and seen_high[0].shape == (32,)  # static, equal strata
    assert (seen_high[0] >= 4.0).all() and (seen_low[0] < 4.0).sum() == 32
    for expert in (denoiser.inner.low, denoiser.inner.high):  # the zero-initialised outputs learn first
        assert expert.out.weight.grad.abs().sum() > 0

    seen_pair = []
    high_pair = denoiser.inner.high.pair
    denoiser.inner.high.pair = lambda z, logsnr, *rest: seen_pair.append(logsnr.clone()) or high_pair(z, logsnr, *rest)
    with torch.no_grad():
        estimate_mi(denoiser, x, y, proposal, n_logsnr=8, seed=0)
    assert seen_pair and all(a.numel() > 0 and (a >= 4.0).all() for a in seen_pair)


def test_mixture_starts_as_its_low_expert() -> None:
    """The high expert's output starts at zero: at initialisation the mixture is a unified network."""
    moe = build_denoiser(EstimatorConfig(architecture="moe", snr_threshold=0.0, model_dim=8), 2, 2).inner
    z, y, alpha = torch.randn(6, 2), torch.randn(6, 2), torch.linspace(-3, 3, 6)
    present = torch.ones(6)
    assert torch.equal(moe(z, alpha, y, present), moe.low(z, alpha, y, present))


@pytest.mark.parametrize("segments", [None, (3, 3), (4, 2), (0, 6), (6, 0)])
def test_routing_adds_the_high_expert_above_the_threshold(segments) -> None:
    cfg = EstimatorConfig(architecture="moe", snr_threshold=0.0, model_dim=8, gaussian_base=False)
    moe = build_denoiser(cfg, 2, 2).inner
    with torch.no_grad():
        for p in moe.parameters():
            p.normal_()
    z, y = torch.randn(6, 2), torch.randn(6, 2)
    present = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0, 1.0])
    if segments is None:
        alpha = torch.tensor([-3.0, -1.0, 2.0, -5.0, 4.0, 0.0])
    else:  # rows laid out low stratum first, as the loss and the estimator lay them out
        alpha = torch.cat([-torch.rand(segments[0]) - 0.1, torch.rand(segments[1]) + 0.1])
    above = (alpha >= 0).reshape(-1, 1)
    low, high = moe.low(z, alpha, y, present), moe.high(z, alpha, y, present)
    expected = low + torch.where(above, high, torch.zeros_like(high))
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
        denoising_loss(denoiser, torch.randn(8, 2), torch.randn(8, 2), LogSNRProposal(6, 6, 3), 0.5)


def test_mixture_keeps_the_information_above_its_threshold() -> None:
    """The original routing lost every nat above the threshold on spiral (its high expert ignored y)."""
    from dmi.tasks import TaskSpec, sample_task
    from dmi.training import fit

    x, y = sample_task(TaskSpec("spiral", 3, 200), 12_000, seed=0)
    cfg = EstimatorConfig(architecture="moe", snr_threshold=5.0, max_steps=1200, val_fraction=0.0, seed=0)
    module, _ = fit(cfg, x[:10_000], y[:10_000])
    spectrum = module.spectrum(x[10_000:], y[10_000:])
    above = [(a, g) for a, g in zip(spectrum.logsnr, spectrum.gap, strict=True) if a > 5.0]
    upper = sum(0.5 * (g0 + g1) * (a1 - a0) for (a0, g0), (a1, g1) in zip(above[:-1], above[1:], strict=True))
    assert upper > 1.0, spectrum.gap
    assert spectrum.thresholds == [5.0]
