"""The residual MLP's conditioning: y reaches the blocks' FiLM gains, "no y" never does."""

from __future__ import annotations

import torch

from dmi.networks import ResidualMLP


def _net_with_y_only_in_film(dim_x: int = 3, dim_y: int = 2) -> ResidualMLP:
    torch.manual_seed(0)
    net = ResidualMLP(dim_x, dim_y, model_dim=16, n_blocks=2)
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0.0, 0.3)
        net.in_proj.weight[:, dim_x:] = 0.0  # cut y (and presence) out of the input layer
    return net


def test_y_modulates_the_blocks_through_film() -> None:
    net = _net_with_y_only_in_film()
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


def test_pair_shares_the_first_layers_and_matches_forward() -> None:
    net = _net_with_y_only_in_film()
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
