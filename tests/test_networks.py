"""The residual MLP's conditioning: y reaches the blocks' FiLM gains, "no y" never does."""

from __future__ import annotations

import pytest
import torch

from dmi.networks import ResidualMLP


def _net_with_y_only_in_film(dim_x: int = 3, dim_y: int = 2, y_squares: bool = False) -> ResidualMLP:
    torch.manual_seed(0)
    net = ResidualMLP(dim_x, dim_y, model_dim=16, n_blocks=2, y_squares=y_squares)
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0.0, 0.3)
        net.in_proj.weight[:, dim_x:] = 0.0  # cut y (and presence) out of the input layer
    return net


@pytest.mark.parametrize("y_squares", [False, True])
def test_y_modulates_the_blocks_through_film(y_squares: bool) -> None:
    net = _net_with_y_only_in_film(y_squares=y_squares)
    z, logsnr = torch.randn(32, 3), torch.linspace(-8.0, 16.0, 32)
    y1, y2 = torch.randn(32, 2), torch.randn(32, 2)
    ones, zeros = torch.ones(32), torch.zeros(32)
    assert not torch.allclose(net(z, logsnr, y1, ones), net(z, logsnr, y2, ones))
    # Without y the prediction ignores whatever sits in the y slot.
    torch.testing.assert_close(net(z, logsnr, y1, zeros), net(z, logsnr, y2, zeros))
    # The gain from y multiplies features of z: the effect of y depends on z.
    d1 = net(z, logsnr, y1, ones) - net(z, logsnr, y2, ones)
    d2 = net(z + 1.0, logsnr, y1, ones) - net(z + 1.0, logsnr, y2, ones)
    assert not torch.allclose(d1, d2)


@pytest.mark.parametrize("y_squares", [False, True])
def test_pair_shares_the_first_layers_and_matches_forward(y_squares: bool) -> None:
    net = _net_with_y_only_in_film(y_squares=y_squares)
    with torch.no_grad():
        net.in_proj.weight.normal_(0.0, 0.3)
    z, logsnr, y = torch.randn(32, 3), torch.linspace(-8.0, 16.0, 32), torch.randn(32, 2)
    eps_u, eps_c = net.pair(z, logsnr, y)
    torch.testing.assert_close(eps_u, net(z, logsnr, y, torch.zeros(32)))
    torch.testing.assert_close(eps_c, net(z, logsnr, y, torch.ones(32)))
    with torch.inference_mode():
        fast_u, fast_c = net.pair(z, logsnr, y)
    torch.testing.assert_close(fast_u, eps_u)
    torch.testing.assert_close(fast_c, eps_c)


def test_y_squares_reach_the_conditioning_only_through_their_own_weights() -> None:
    """With y_squares the conditioning MLP sees y²: y and −y differ only through those columns."""
    net = _net_with_y_only_in_film(y_squares=True)
    n_feats = 2 * len(net.freqs) + 1
    assert net.embed_in.weight.shape[1] == n_feats + 2 * 2 + 1
    z, logsnr, y = torch.randn(32, 3), torch.linspace(-8.0, 16.0, 32), torch.randn(32, 2)
    ones = torch.ones(32)
    with torch.no_grad():
        net.embed_in.weight[:, n_feats : n_feats + 2] = 0.0  # y's linear columns off: only y² is left
    torch.testing.assert_close(net(z, logsnr, y, ones), net(z, logsnr, -y, ones))
    with torch.no_grad():
        net.embed_in.weight[:, n_feats + 2 : n_feats + 4] = 0.0  # and y² off too: y no longer matters
        y_other = torch.randn(32, 2)
    torch.testing.assert_close(net(z, logsnr, y, ones), net(z, logsnr, y_other, ones))
