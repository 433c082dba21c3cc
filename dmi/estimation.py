"""The training loss and the MI estimate, for any denoiser (oracle, unified, mixture).

Both draw log-SNR stratified over the denoiser's strata (one stratum for a unified
network, one per side of the threshold for a mixture of experts), so every expert gets a
fixed share of rows and the weights stay right.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from dmi.checks import check_snr_threshold, positive_int_problem, require
from dmi.diffusion import (
    LogSNRProposal,
    MIEstimate,
    add_noise,
    gaussian_entropy,
    mean_and_stderr,
    quantile_strata,
    split_counts,
)
from dmi.errors import DataError


def check_thresholds(denoiser: nn.Module, proposal: LogSNRProposal) -> list[tuple[float, float]]:
    """Quantile strata of the denoiser; a threshold outside the sampled range is a ``ConfigError``."""
    thresholds = list(getattr(denoiser, "thresholds", ()))
    for t in thresholds:
        check_snr_threshold(t, *proposal.range)
    return quantile_strata(proposal, thresholds)


def denoising_loss(
    denoiser: nn.Module,
    x: Tensor,
    y: Tensor,
    proposal: LogSNRProposal,
    y_drop_prob: float,
) -> Tensor:
    """ε-prediction MSE under the proposal, y dropped per sample with ``y_drop_prob``.

    ``y_drop_prob`` has no default here: ``EstimatorConfig.y_drop_prob`` is its one source.

    Rows are laid out stratum by stratum (equal counts), and each row is weighted by its
    stratum's mass over its count, so the loss is unbiased for E_q[‖ε − ε̂‖²]. A denoiser of
    several ``members`` deals the batch out among them: each member trains on its own share
    of the rows (the remainder of an uneven split is left out of this step) with its own
    log-SNR grid shift, noise and dropped y, and the loss is the members' mean. Members that
    differ in their rows and draws as well as their initialisation average away more fitting
    noise, and a step costs what one network on the whole batch does.
    """
    members = int(getattr(denoiser, "members", 1))
    if x.shape[0] < members:
        raise ValueError(f"a batch of {x.shape[0]} rows cannot be dealt out among {members} members")
    n = x.shape[0] // members
    strata = check_thresholds(denoiser, proposal)
    counts = split_counts(n, len(strata))
    row_weight = torch.cat(
        [torch.full((c,), (hi - lo) / c, device=x.device) for c, (lo, hi) in zip(counts, strata, strict=True) if c]
    )
    rows: tuple[int, ...] = (n,)
    alpha, _ = proposal.stratified(counts, strata, None if members == 1 else members, device=x.device)
    if members > 1:  # (members, rows, ·): each member its share, every member's rows in the same strata
        rows = (members, n)
        x, y = (t[: n * members].reshape(*rows, t.shape[-1]) for t in (x, y))
        alpha = alpha.T.contiguous()
    eps = torch.randn_like(x)
    y_present = (torch.rand(rows, device=x.device) >= y_drop_prob).to(x.dtype)
    z = add_noise(x, alpha, eps)
    eps_hat = denoiser(z, alpha, y, y_present, tuple(counts))
    per_row = (eps - eps_hat).pow(2).sum(dim=-1)
    return (row_weight * per_row).sum(dim=-1).mean()


def pair_errors(
    denoiser: nn.Module,
    x_rows: Tensor,
    y_rows: Tensor,
    logsnr_rows: Tensor,
    segments: tuple[int, ...] | None,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Per row: ‖ε − ε̂(z)‖², ‖ε − ε̂(z, y)‖² and ‖ε̂(z) − ε̂(z, y)‖² (float64), on one noise draw.

    The one place the I-MMSE integrands are computed: ``estimate_mi`` integrates them over
    log-SNR, ``dmi.spectrum`` averages them at fixed nodes. The unconditional and
    conditional predictions share the noise (common random numbers), so their gap is clean.
    """
    eps = torch.randn(x_rows.shape, device=x_rows.device, dtype=x_rows.dtype, generator=generator)
    z = add_noise(x_rows, logsnr_rows, eps)
    eps_u, eps_c = denoiser.pair(z, logsnr_rows, y_rows, segments)
    mse_u = (eps - eps_u).pow(2).sum(1).double()
    mse_c = (eps - eps_c).pow(2).sum(1).double()
    return mse_u, mse_c, (eps_u - eps_c).pow(2).sum(1).double()


@torch.inference_mode()
def estimate_mi(
    denoiser: nn.Module,
    x: Tensor,
    y: Tensor,
    proposal: LogSNRProposal,
    n_logsnr: int = 64,
    rows_per_pass: int | None = None,
    seed: int | None = None,
) -> MIEstimate:
    """Direct, orthogonal and cross MI with standard errors, every point at every grid node.

    The cross form ½∫E⟨ε − ε̂(z), ε̂(z, y) − ε̂(z)⟩dα is, point by point, the mean of the
    other two. With exact denoisers all three are the MI. It is linear in the conditional
    prediction, where the direct form loses and the orthogonal form gains the squared size
    of the conditional model's fitting noise: zero-mean noise cancels in it, a shrunken
    conditional shift does not (measured in ``benchmarks/results/bmi-benchmark-attempts.md``).

    A randomly shifted stratified grid of ``n_logsnr`` log-SNR nodes is shared by all
    points; each point gets its own noise, the *same* for the unconditional and the
    conditional prediction. The per-point integrals are i.i.d., so their standard error
    over points is honest. ``seed`` fixes grid shifts and noise (common random numbers
    make successive validations comparable); None draws from the global generator.
    ``rows_per_pass`` defaults to 4096 rows on CPU, where activations then stay in cache
    (the elementwise ops are memory-bound, so larger passes were slower; measured in
    ``benchmarks/results/defaults-rationale.md``), and to 2**18 on a GPU.
    """
    if x.ndim != 2 or y.ndim != 2 or x.shape[0] != y.shape[0]:
        raise DataError(f"x and y must be 2-D with equal rows, got {tuple(x.shape)} and {tuple(y.shape)}")
    require("n_logsnr", n_logsnr, positive_int_problem)
    strata = check_thresholds(denoiser, proposal)
    device = x.device
    grid_gen = noise_gen = None
    if seed is not None:
        grid_gen = torch.Generator().manual_seed(seed)
        noise_gen = torch.Generator(device=device).manual_seed(seed)
    counts = [max(c, 1) for c in split_counts(n_logsnr, len(strata))]
    k = sum(counts)
    n, d = x.shape
    if rows_per_pass is None:
        rows_per_pass = 4096 if device.type == "cpu" else 2**18
    chunk = max(1, rows_per_pass // k)
    direct, orth, nll_u, nll_c = [], [], [], []
    for start in range(0, n, chunk):
        xb, yb = x[start : start + chunk], y[start : start + chunk]
        m = xb.shape[0]
        # (k, m): every point at every node, with its own grid shift.
        alpha, weight = proposal.stratified(counts, strata, m, generator=grid_gen, device=device)
        # Rows ordered node-major, so the rows of one stratum are contiguous.
        a_rows = alpha.reshape(-1)
        x_rows, y_rows = xb.repeat(k, 1), yb.repeat(k, 1)
        segments = tuple(c * m for c in counts)
        mse_u, mse_c, gap_orth = pair_errors(denoiser, x_rows, y_rows, a_rows, segments, noise_gen)
        mse_u, mse_c, gap_orth = (t.reshape(k, m) for t in (mse_u, mse_c, gap_orth))
        w = weight.double()
        ref = d * torch.sigmoid(alpha.double())
        direct.append(0.5 * (w * (mse_u - mse_c)).sum(0))
        orth.append(0.5 * (w * gap_orth).sum(0))
        nll_u.append(0.5 * (w * (mse_u - ref)).sum(0))
        nll_c.append(0.5 * (w * (mse_c - ref)).sum(0))
    direct_points, orth_points = torch.cat(direct), torch.cat(orth)
    mi, mi_se = mean_and_stderr(direct_points)
    mo, mo_se = mean_and_stderr(orth_points)
    mc, mc_se = mean_and_stderr(0.5 * (direct_points + orth_points))
    h = gaussian_entropy(d)
    nll_u_points, nll_c_points = torch.cat(nll_u), torch.cat(nll_c)
    return MIEstimate(
        mi=mi,
        mi_orthogonal=mo,
        mi_stderr=mi_se,
        mi_orthogonal_stderr=mo_se,
        nll_x=h + nll_u_points.mean().item(),
        nll_x_given_y=h + nll_c_points.mean().item(),
        n_points=n,
        n_logsnr=k,
        mi_cross=mc,
        mi_cross_stderr=mc_se,
        nll_points=(nll_u_points + nll_c_points).cpu() + 2 * h,
        mi_points=direct_points.cpu(),
    )


def nats_to_bits(value: float) -> float:
    return value / math.log(2)


@torch.no_grad()
def estimate_mi_independent(
    denoiser: nn.Module,
    x: Tensor,
    y: Tensor,
    proposal: LogSNRProposal,
    n_draws: int = 1,
    seed: int | None = None,
) -> MIEstimate:
    """The original's estimator, kept for comparison: the two NLL terms on independent draws.

    Each point gets ``n_draws`` random log-SNR values and noises for nll(x) and, separately,
    others for nll(x|y); MI is their difference. Unbiased but noisy: the two terms share no
    noise, so their difference carries the spread of both, several times that of
    ``estimate_mi``'s common random numbers. Use ``estimate_mi`` for real estimates.
    """
    strata = check_thresholds(denoiser, proposal)
    gen = torch.Generator().manual_seed(seed) if seed is not None else None
    n, d = x.shape
    counts = [max(c, 1) for c in split_counts(n_draws, len(strata))]
    k = sum(counts)
    segments = tuple(c * n for c in counts)
    x_rows, y_rows = x.repeat(k, 1), y.repeat(k, 1)
    nll = []
    for present in (0.0, 1.0):
        alpha, weight = proposal.stratified(counts, strata, n, generator=gen, device=x.device)
        eps = torch.randn(x_rows.shape, generator=gen).to(x.device)
        z = add_noise(x_rows, alpha.reshape(-1), eps)
        flags = torch.full((k * n,), present, device=x.device)
        mse = (eps - denoiser(z, alpha.reshape(-1), y_rows, flags, segments)).pow(2).sum(1).reshape(k, n)
        ref = d * torch.sigmoid(alpha.double())
        nll.append(0.5 * (weight.double() * (mse.double() - ref)).sum(0))
    mi, mi_se = mean_and_stderr(nll[0] - nll[1])
    h = gaussian_entropy(d)
    return MIEstimate(mi, float("nan"), mi_se, float("nan"), h + nll[0].mean().item(), h + nll[1].mean().item(), n, k)
