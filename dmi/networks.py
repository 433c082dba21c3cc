"""The inner networks: a residual MLP with a log-SNR embedding, and a mixture of experts.

Both are called as ``net(z, logsnr, y, y_present, segments)`` and predict ε, and both
offer ``pair(z, logsnr, y, segments) -> (ε̂ without y, ε̂ with y)``, which the estimator
uses to compute the noise-level path once for the two predictions.

Layers hold their weights with a leading expert axis and run on activations laid out
``(expert, rows, features)``; the networks here use one expert each (the mixture is two
such networks, see ``MixtureOfExperts``), and the layout keeps their checkpoints loadable.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F


class ExpertLinear(nn.Module):
    """``n_experts`` independent linear maps, applied to ``(n_experts, rows, in)``.

    Initialised per expert as ``nn.Linear`` is (uniform in ±1/sqrt(in)), or at zero.
    """

    def __init__(self, n_experts: int, in_features: int, out_features: int, zero: bool = False) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_experts, in_features, out_features))
        self.bias = nn.Parameter(torch.empty(n_experts, 1, out_features))
        bound = 0.0 if zero else 1.0 / math.sqrt(in_features)
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, h: Tensor) -> Tensor:
        if self.weight.shape[0] == 1:
            # squeeze, not [0]: the same values, but the backward of a view is a reshape, where
            # that of an index fills a zero tensor per parameter per step.
            return torch.addmm(self.bias.squeeze(0), h.squeeze(0), self.weight.squeeze(0)).unsqueeze(0)
        return torch.baddbmm(self.bias, h, self.weight)

    def accumulate_(self, out: Tensor, h: Tensor) -> Tensor:
        """``out += self(h)`` in place (inference only): no bias copy, no separate add."""
        out.add_(self.bias)
        if self.weight.shape[0] == 1:
            out[0].addmm_(h[0], self.weight[0])
        else:
            out.baddbmm_(h, self.weight)
        return out


class ExpertLayerNorm(nn.Module):
    """Layer norm over features with a per-expert gain and bias."""

    def __init__(self, n_experts: int, width: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n_experts, 1, width))
        self.bias = nn.Parameter(torch.zeros(n_experts, 1, width))

    def forward(self, h: Tensor) -> Tensor:
        width = h.shape[-1]
        if self.weight.shape[0] == 1:
            return F.layer_norm(h, (width,), self.weight.view(width), self.bias.view(width))
        return torch.addcmul(self.bias, F.layer_norm(h, (width,)), self.weight)


def logsnr_features(logsnr: Tensor, freqs: Tensor) -> Tensor:
    """Fourier features of α (..., 1) → (..., 2·len(freqs) + 1)."""
    angles = logsnr * freqs
    return torch.cat([angles.sin(), angles.cos(), logsnr / 10.0], dim=-1)


class ResidualBlock(nn.Module):
    """Pre-norm residual MLP block, modulated by the noise level (FiLM: gain and bias).

    FiLM lets a block change its gain with α, which near-deterministic conditionals need
    at high SNR (measured in ``benchmarks/results/defaults-rationale.md``).
    """

    def __init__(self, n_experts: int, width: int) -> None:
        super().__init__()
        self.norm = ExpertLayerNorm(n_experts, width)
        self.fc1 = ExpertLinear(n_experts, width, width)
        self.fc2 = ExpertLinear(n_experts, width, width)

    def forward(self, h: Tensor, gain: Tensor, bias: Tensor) -> Tensor:
        if torch.is_grad_enabled():
            u = torch.addcmul(bias, self.fc1(F.silu(self.norm(h))), gain)
            return h + self.fc2(F.silu(u))
        # Inference (the estimator's hot loop): the same function, updating h in place.
        u = torch.addcmul(bias, self.fc1(F.silu(self.norm(h), inplace=True)), gain)
        return self.fc2.accumulate_(h, F.silu(u, inplace=True))


class ResidualMLP(nn.Module):
    """ε-predictor for (z, α, y?) with hidden width ``model_dim``, honoured as given.

    y enters together with an explicit presence indicator, so "no y" is never confused
    with y = 0 (the most common value of a standardised y). It enters twice: concatenated
    to z at the input, and, with the Fourier features of α, into a small conditioning MLP
    that gives the additive embedding and every block's FiLM gain and bias. The FiLM path
    lets y *multiply* features of z, which near-deterministic nonlinear dependence needs
    (spiral rotates x by an angle set by ‖x‖²); on spiral it reads markedly more of the
    MI than y at the input only (``benchmarks/results/defaults-rationale.md``). With
    ``y_squares`` the conditioning MLP also sees y²: dependence through a scale that x and y
    share (heavy tails) is a function of y², which the MLP would otherwise build from y.
    Inputs to ``forward`` and ``pair`` are flat rows (one expert) or laid out
    ``(n_experts, rows, ·)`` by the mixture.
    """

    thresholds: tuple[float, ...] = ()

    def __init__(
        self,
        dim_x: int,
        dim_y: int,
        model_dim: int,
        n_blocks: int = 3,
        n_experts: int = 1,
        y_squares: bool = False,
    ) -> None:
        super().__init__()
        if model_dim < 1 or n_blocks < 1 or n_experts < 1:
            raise ValueError(
                f"model_dim, n_blocks and n_experts must be >= 1, got {model_dim}, {n_blocks}, {n_experts}"
            )
        self.dim_x, self.dim_y, self.width, self.n_experts = dim_x, dim_y, model_dim, n_experts
        self.y_squares = y_squares
        # Periods from ~1.5 to ~100 log-SNR units: wider than any log-SNR range in use (the
        # default is [-12, 24]), so the features tell every α of the range apart.
        freqs = torch.exp(torch.linspace(math.log(1 / 16), math.log(4.0), 16))
        self.register_buffer("freqs", freqs, persistent=False)
        n_features = 2 * len(freqs) + 1
        # Conditioning MLP on [features of α, y·present, (y·present)² with y_squares, present].
        self.embed_in = ExpertLinear(n_experts, n_features + dim_y * (2 if y_squares else 1) + 1, model_dim)
        self.embed_out = ExpertLinear(n_experts, model_dim, model_dim)
        self.film = ExpertLinear(n_experts, model_dim, 2 * model_dim * n_blocks, zero=True)
        self.in_proj = ExpertLinear(n_experts, dim_x + dim_y + 1, model_dim)
        self.blocks = nn.ModuleList(ResidualBlock(n_experts, model_dim) for _ in range(n_blocks))
        self.out_norm = ExpertLayerNorm(n_experts, model_dim)
        # Zero output: at initialisation the prediction is the base denoiser's (or 0).
        self.out = ExpertLinear(n_experts, model_dim, dim_x, zero=True)

    @property
    def members(self) -> int:
        """Independent networks packed on the leading axis (``dmi.denoisers.Denoiser`` averages them)."""
        return self.n_experts

    def _y_features(self, y: Tensor) -> Tensor:
        """What the conditioning MLP sees of y: y, and y² beside it with ``y_squares``."""
        return torch.cat([y, y * y], dim=-1) if self.y_squares else y

    def _conditioning(self, hidden: Tensor) -> tuple[Tensor, list[tuple[Tensor, Tensor]]]:
        """From the conditioning MLP's first pre-activation: the embedding and each block's (gain, bias)."""
        emb = self.embed_out(F.silu(hidden))
        films = self.film(F.silu(emb)).chunk(2 * len(self.blocks), dim=-1)
        return emb, [(1 + films[2 * i], films[2 * i + 1] + emb) for i in range(len(self.blocks))]

    def _trunk(self, h: Tensor, films: list[tuple[Tensor, Tensor]]) -> Tensor:
        for block, (gain, bias) in zip(self.blocks, films, strict=True):
            h = block(h, gain, bias)
        return self.out(F.silu(self.out_norm(h)))

    def forward(
        self,
        z: Tensor,
        logsnr: Tensor,
        y: Tensor,
        y_present: Tensor,
        segments: tuple[int, ...] | None = None,
    ) -> Tensor:
        flat = z.ndim == 2
        if flat:
            z, logsnr, y, y_present = z.unsqueeze(0), logsnr.reshape(1, -1), y.unsqueeze(0), y_present.reshape(1, -1)
        present = y_present.unsqueeze(-1).to(z.dtype)
        y = y * present
        feats = logsnr_features(logsnr.unsqueeze(-1), self.freqs)
        emb, films = self._conditioning(self.embed_in(torch.cat([feats, self._y_features(y), present], dim=-1)))
        out = self._trunk(self.in_proj(torch.cat([z, y, present], dim=-1)) + emb, films)
        return out[0] if flat else out

    def pair(
        self, z: Tensor, logsnr: Tensor, y: Tensor, segments: tuple[int, ...] | None = None
    ) -> tuple[Tensor, Tensor]:
        """Predictions without and with y; the α and z parts of both first layers are shared."""
        flat = z.ndim == 2
        if flat:
            z, logsnr, y = z.unsqueeze(0), logsnr.reshape(1, -1), y.unsqueeze(0)
        feats = logsnr_features(logsnr.unsqueeze(-1), self.freqs)
        n_feats = feats.shape[-1]
        w_emb, w_in = self.embed_in.weight, self.in_proj.weight
        hidden_u = torch.baddbmm(self.embed_in.bias, feats, w_emb[:, :n_feats])
        hidden_c = torch.baddbmm(hidden_u + w_emb[:, -1:], self._y_features(y), w_emb[:, n_feats:-1])
        emb_u, films_u = self._conditioning(hidden_u)
        emb_c, films_c = self._conditioning(hidden_c)
        dx = self.dim_x
        h_z = torch.baddbmm(self.in_proj.bias, z, w_in[:, :dx])
        h_c = torch.baddbmm(h_z + w_in[:, -1:] + emb_c, y, w_in[:, dx:-1])
        h_u = h_z + emb_u
        return self._unflatten(flat, self._trunk(h_u, films_u), self._trunk(h_c, films_c))

    @staticmethod
    def _unflatten(flat: bool, out_u: Tensor, out_c: Tensor) -> tuple[Tensor, Tensor]:
        return (out_u[0], out_c[0]) if flat else (out_u, out_c)


class MixtureOfExperts(nn.Module):
    """A low-SNR expert on every row, refined above ``threshold`` (log-SNR) by a high-SNR expert.

    ε̂(z, α, y) = low(z, α, y) + [α ≥ threshold]·high(z, α, y), the high expert's output
    starting at zero, so the mixture starts as the unified network and the split only adds
    capacity where the high expert acts. The original's routing gave each expert its side
    alone; on spiral the high expert then never learned E[x | y] (the denoising error above
    the threshold barely depends on it) and the mixture lost the gap above the threshold.
    Here the low expert learns from every noise level, as the unified network does, and
    the high expert learns only what the low one misses at high SNR.

    With ``segments`` (rows below, rows above the threshold, in that order, as the loss and
    the estimator lay them out) the high expert runs on the contiguous upper rows; without
    it, on the rows at or above the threshold. With ``members`` > 1 both experts hold that
    many packed networks and take inputs laid out ``(members, rows, ·)``; the members share
    the row layout (the loss gives each member the same stratum counts, the estimator the
    same log-SNR), so one set of rows is routed for all of them.
    """

    def __init__(
        self,
        dim_x: int,
        dim_y: int,
        model_dim: int,
        n_blocks: int,
        threshold: float,
        y_squares: bool = False,
        members: int = 1,
    ) -> None:
        super().__init__()
        if not math.isfinite(threshold):
            raise ValueError(f"snr_threshold must be finite, got {threshold}")
        self.threshold = float(threshold)
        self.thresholds = (self.threshold,)
        self.low = ResidualMLP(dim_x, dim_y, model_dim, n_blocks, n_experts=members, y_squares=y_squares)
        self.high = ResidualMLP(dim_x, dim_y, model_dim, n_blocks, n_experts=members, y_squares=y_squares)

    @property
    def members(self) -> int:
        return self.low.n_experts

    def _high_rows(self, logsnr: Tensor, segments: tuple[int, ...] | None) -> slice | Tensor:
        alpha = logsnr[0] if logsnr.ndim == 2 else logsnr.reshape(-1)  # (members, rows): the first member's
        if segments is None:
            return (alpha >= self.threshold).nonzero().reshape(-1)
        if len(segments) != 2 or sum(segments) != alpha.shape[0]:
            raise ValueError(f"segments must give the rows below and above the threshold, got {segments}")
        return slice(segments[0], None)

    @staticmethod
    def _refine(out: Tensor, rows: slice | Tensor, correction: Tensor) -> Tensor:
        axis = out.ndim - 2  # the row axis, behind the member axis when there is one
        if isinstance(rows, slice):
            upper = out.narrow(axis, rows.start, out.shape[axis] - rows.start)
            return torch.cat([out.narrow(axis, 0, rows.start), upper + correction], dim=axis)
        return out.index_add(axis, rows, correction)

    def forward(
        self,
        z: Tensor,
        logsnr: Tensor,
        y: Tensor,
        y_present: Tensor,
        segments: tuple[int, ...] | None = None,
    ) -> Tensor:
        stacked = z.ndim == 3
        out = self.low(z, logsnr, y, y_present)
        rows = self._high_rows(logsnr, segments)
        a = logsnr if stacked else logsnr.reshape(-1)
        at = (slice(None), rows) if stacked else rows  # the routed rows, of every member
        return self._refine(out, rows, self.high(z[at], a[at], y[at], y_present.reshape(a.shape)[at]))

    def pair(
        self, z: Tensor, logsnr: Tensor, y: Tensor, segments: tuple[int, ...] | None = None
    ) -> tuple[Tensor, Tensor]:
        stacked = z.ndim == 3
        out_u, out_c = self.low.pair(z, logsnr, y)
        rows = self._high_rows(logsnr, segments)
        a = logsnr if stacked else logsnr.reshape(-1)
        at = (slice(None), rows) if stacked else rows
        high_u, high_c = self.high.pair(z[at], a[at], y[at])
        return self._refine(out_u, rows, high_u), self._refine(out_c, rows, high_c)
