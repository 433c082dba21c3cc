"""Packed members: K networks on one axis predict as K separate networks would, trained each on its own draws."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dmi.config import PACK_BELOW_ROWS, EstimatorConfig
from dmi.denoisers import Denoiser, GaussianDenoiser
from dmi.diffusion import LogSNRProposal
from dmi.errors import ConfigError
from dmi.estimation import denoising_loss, estimate_mi
from dmi.module import build_denoiser
from dmi.networks import MixtureOfExperts, ResidualMLP
from dmi.training import fit, fitted_choices

DX, DY, WIDTH, BLOCKS = 3, 2, 8, 2


def _randomised(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Every weight drawn at random, the zero-initialised output layers included."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.normal_(0.0, 0.3)
    return module


def _member(packed: ResidualMLP, k: int) -> ResidualMLP:
    """Member ``k`` of a packed network as a network of its own."""
    single = ResidualMLP(DX, DY, WIDTH, BLOCKS, y_squares=packed.y_squares)
    single.load_state_dict({name: value[k : k + 1] for name, value in packed.state_dict().items()})
    return single


def _inputs(n: int = 24) -> tuple[torch.Tensor, ...]:
    torch.manual_seed(1)
    return torch.randn(n, DX), torch.linspace(-10.0, 20.0, n), torch.randn(n, DY)


def _base() -> GaussianDenoiser:
    torch.manual_seed(2)
    a = torch.randn(DX + DY, DX + DY)
    return GaussianDenoiser((a @ a.T + torch.eye(DX + DY)).numpy(), DX)


@pytest.mark.parametrize("with_base", [False, True])
def test_the_packed_prediction_is_the_mean_of_its_members(with_base: bool) -> None:
    packed = _randomised(ResidualMLP(DX, DY, WIDTH, BLOCKS, n_experts=3, y_squares=True))
    base = _base() if with_base else None
    denoiser = Denoiser(packed, base)
    singles = [Denoiser(_member(packed, k), base) for k in range(3)]
    z, logsnr, y = _inputs()
    pairs = [single.pair(z, logsnr, y) for single in singles]
    eps_u, eps_c = denoiser.pair(z, logsnr, y)
    torch.testing.assert_close(eps_u, sum(p[0] for p in pairs) / 3)
    torch.testing.assert_close(eps_c, sum(p[1] for p in pairs) / 3)
    present = (torch.arange(z.shape[0]) % 2).float()
    expected = sum(single(z, logsnr, y, present) for single in singles) / 3
    torch.testing.assert_close(denoiser(z, logsnr, y, present), expected)
    with torch.inference_mode():  # the estimator's in-place path
        fast_u, fast_c = denoiser.pair(z, logsnr, y)
    torch.testing.assert_close(fast_u, eps_u)
    torch.testing.assert_close(fast_c, eps_c)


def test_the_mixture_routes_every_member_alike_with_and_without_segments() -> None:
    mixture = _randomised(MixtureOfExperts(DX, DY, WIDTH, BLOCKS, threshold=5.0, y_squares=True, members=2))
    denoiser = Denoiser(mixture)
    z, logsnr, y = _inputs()
    below = int((logsnr < 5.0).sum())
    with_segments = denoiser.pair(z, logsnr, y, (below, z.shape[0] - below))
    without = denoiser.pair(z, logsnr, y)
    torch.testing.assert_close(with_segments[0], without[0])
    torch.testing.assert_close(with_segments[1], without[1])
    # Each member is the mixture of its own low and high networks.
    for k in range(2):
        single = MixtureOfExperts(DX, DY, WIDTH, BLOCKS, threshold=5.0, y_squares=True)
        single.load_state_dict({name: value[k : k + 1] for name, value in mixture.state_dict().items()})
        member_u, _ = single.pair(z, logsnr, y)
        stacked_u, _ = mixture.pair(*(t.unsqueeze(0).expand(2, *t.shape) for t in (z, logsnr, y)))
        torch.testing.assert_close(stacked_u[k], member_u)


@pytest.mark.parametrize("architecture", ["unified", "moe"])
def test_the_loss_trains_every_member_on_its_own_draws(architecture: str) -> None:
    cfg = EstimatorConfig(architecture=architecture, model_dim=WIDTH, members=3)
    denoiser = build_denoiser(cfg, DX, DY)
    torch.manual_seed(3)
    x, y = torch.randn(64, DX), torch.randn(64, DY)
    loss = denoising_loss(denoiser, x, y, cfg.proposal(), cfg.y_drop_prob)
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    out = denoiser.inner.out if architecture == "unified" else denoiser.inner.low.out
    # The output layers start at zero, so their gradient is each member's own error: all differ.
    grads = out.weight.grad
    assert all(grads[k].abs().sum() > 0 for k in range(3))
    assert not torch.allclose(grads[0], grads[1]) and not torch.allclose(grads[1], grads[2])


def test_each_member_trains_on_its_own_share_of_the_batch() -> None:
    """Rows dealt to member 1 move only member 1's gradient; the odd row of an uneven split none."""
    cfg = EstimatorConfig(model_dim=WIDTH, members=3, gaussian_base=False)
    denoiser = _randomised(build_denoiser(cfg, DX, DY))
    torch.manual_seed(3)
    x, y = torch.randn(61, DX), torch.randn(61, DY)  # 20 rows each, one left over

    def grads(x_rows: torch.Tensor) -> torch.Tensor:
        denoiser.zero_grad()
        torch.manual_seed(5)  # the same noise, log-SNR and dropped y for both calls
        denoising_loss(denoiser, x_rows, y, cfg.proposal(), cfg.y_drop_prob).backward()
        return denoiser.inner.out.weight.grad.clone()

    before = grads(x)
    changed = x.clone()
    changed[20:40] += 1.0  # member 1's share
    changed[60] += 1.0  # the row left over
    after = grads(changed)
    torch.testing.assert_close(after[0], before[0])
    torch.testing.assert_close(after[2], before[2])
    assert not torch.allclose(after[1], before[1])


def test_a_batch_smaller_than_the_members_is_refused() -> None:
    with pytest.raises(ConfigError, match="batch_size"):
        EstimatorConfig(members=4, batch_size=3)


def test_automatic_members_pack_four_half_width_networks_on_a_small_sample_only() -> None:
    """members=None keeps one step's cost: four networks of half the width, twice the batch, below the rows cut."""
    auto = EstimatorConfig()
    assert auto.members is None
    small = auto.for_training_rows(PACK_BELOW_ROWS - 1)
    assert (small.members, small.model_dim, small.batch_size) == (4, auto.model_dim // 2, 2 * auto.batch_size)
    large = auto.for_training_rows(PACK_BELOW_ROWS)
    assert (large.members, large.model_dim, large.batch_size) == (1, auto.model_dim, auto.batch_size)
    assert auto.for_training_rows(3).members == 1  # fewer rows than members: one network
    given = EstimatorConfig(members=2)
    assert given.for_training_rows(10) is given  # a given count is honoured as given
    assert build_denoiser(auto, DX, DY).members == 1  # built without rows to size it: one network
    with pytest.raises(ConfigError, match="members"):
        EstimatorConfig(members=0)


def test_fit_packs_by_the_rows_it_trains_on_and_says_so() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, DX))
    y = x[:, :DY] + rng.normal(size=(300, DY))
    cfg = EstimatorConfig(model_dim=8, n_blocks=1, max_steps=4, batch_size=64, val_interval=2)
    module, _ = fit(cfg, x, y)
    choices = fitted_choices(module)
    assert (module.denoiser.members, choices["members"], choices["member_width"], choices["batch_rows"]) == (
        4,
        4,
        4,
        128,
    )
    assert module.hparams["members"] == 4  # what a checkpoint rebuilds


def test_members_at_initialisation_give_the_gaussian_base_estimate() -> None:
    """Zero output layers in every member: the mean is the base, whose estimate the members must not change."""
    base = _base()
    packed = Denoiser(ResidualMLP(DX, DY, WIDTH, BLOCKS, n_experts=4), base)
    torch.manual_seed(4)
    x, y = torch.randn(300, DX), torch.randn(300, DY)
    proposal = LogSNRProposal(6.0, 6.0, 3.0)
    alone = estimate_mi(Denoiser(ResidualMLP(DX, DY, WIDTH, BLOCKS), base), x, y, proposal, 8, seed=0)
    together = estimate_mi(packed, x, y, proposal, 8, seed=0)
    assert together.mi == pytest.approx(alone.mi, abs=1e-5)


@pytest.mark.parametrize("architecture", ["unified", "moe"])
def test_a_trained_ensemble_estimates_and_reloads_from_its_checkpoint(architecture: str, tmp_path) -> None:
    from dmi.tasks import TaskSpec, sample_task
    from dmi.training import fit, load_module, save_checkpoint

    x, y = sample_task(TaskSpec("multinormal", 2, 2), 1200, seed=0)
    cfg = EstimatorConfig(architecture=architecture, members=3, model_dim=8, n_blocks=1, max_steps=60, batch_size=128)
    module, trainer = fit(cfg, x[:900], y[:900], val_every_n_steps=20)
    estimate = module.estimate(x[900:], y[900:], seed=0)
    assert abs(estimate.mi - 1.022) < 0.3, estimate  # the Gaussian base alone is close; training must not ruin it
    loaded = load_module(save_checkpoint(trainer, tmp_path / "members.ckpt", selected=module))
    assert loaded.denoiser.members == 3
    assert loaded.estimate(x[900:], y[900:], seed=0).mi == pytest.approx(estimate.mi, abs=1e-6)
