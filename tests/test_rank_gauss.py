"""The rank-to-Gaussian preprocessing: strictly increasing per coordinate, fitted on training rows only."""

from __future__ import annotations

import numpy as np
import torch

from dmi.config import EstimatorConfig
from dmi.data import rank_gauss, rank_gauss_knots
from dmi.training import build_module


def test_maps_heavy_tails_to_standard_normal_marginals() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_t(df=1, size=(20000, 2))  # Cauchy: no mean, no variance
    knots = torch.as_tensor(rank_gauss_knots(x))
    z = rank_gauss(torch.as_tensor(x), knots).numpy()
    assert np.all(np.isfinite(z))
    assert np.allclose(z.mean(0), 0, atol=0.02) and np.allclose(z.std(0), 1, atol=0.02)
    # Quantiles of a standard normal, not of a Cauchy.
    assert np.allclose(np.quantile(z, [0.025, 0.975], axis=0).T, [-1.96, 1.96], atol=0.05)


def test_strictly_increasing_and_extended_beyond_the_training_range() -> None:
    rng = np.random.default_rng(1)
    train = rng.exponential(size=(500, 1))
    knots = torch.as_tensor(rank_gauss_knots(train))
    grid = torch.linspace(-5.0, 50.0, 20001, dtype=torch.float64).reshape(-1, 1)
    out = rank_gauss(grid, knots).reshape(-1)
    assert torch.all(torch.diff(out) > 0)  # invertible, so I(X;Y) is unchanged
    assert torch.isfinite(out).all()


def test_ties_still_give_a_strictly_increasing_map() -> None:
    x = np.repeat(np.arange(5.0), 100).reshape(-1, 1)  # a discrete column
    knots = rank_gauss_knots(x)
    assert np.all(np.diff(knots[:, 0]) > 0)


def test_module_applies_the_training_fit_to_new_data() -> None:
    rng = np.random.default_rng(2)
    x, y = rng.lognormal(size=(3000, 2)), rng.lognormal(size=(3000, 3))
    module = build_module(EstimatorConfig(preprocess="rank_gauss"), x, y)
    assert module.x_knots.shape == (1024, 2) and module.y_knots.shape == (1024, 3)
    px, py = module.preprocess(torch.as_tensor(x), torch.as_tensor(y))
    assert abs(float(px.mean())) < 0.02 and abs(float(py.std()) - 1) < 0.02
    # Order within each column is kept for held-out points (a strictly increasing map).
    new = rng.lognormal(size=(200, 2))
    pn, _ = module.preprocess(torch.as_tensor(new), torch.as_tensor(rng.lognormal(size=(200, 3))))
    for j in range(2):
        assert np.array_equal(np.argsort(new[:, j]), np.argsort(pn[:, j].numpy()))


def test_other_preprocessings_carry_no_knots() -> None:
    x = np.random.default_rng(3).normal(size=(100, 2))
    module = build_module(EstimatorConfig(preprocess="rescale"), x, x + 1)
    assert module.x_knots.numel() == 0
