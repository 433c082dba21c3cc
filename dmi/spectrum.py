"""The information spectrum: where along the noise levels the MI lives.

At each log-SNR node α the unconditional and conditional denoising errors (ε-space, the
integrand of each NLL bound in dα) and half their gap, the I-MMSE integrand whose integral
over α is the direct MI. It shows whether the integration window covers the information
(the integrand near zero at both ends), where a mixture's threshold belongs, and, beside
the Gaussian oracle's closed form, which noise levels a trained denoiser gets wrong.

Outside the window the integrand decays like e^{−|α − edge|} for any finite-variance
prior (low SNR: ∝ e^α·tr(Cov x − E Cov x|y); high SNR: ∝ e^{−α}), so the MI missing
beyond each edge is about the integrand's value there: ``tail_nats`` sums the two.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

from dmi.diffusion import LogSNRProposal
from dmi.errors import ConfigError
from dmi.estimation import pair_errors

N_NODES = 48
# The window is short of the information when the estimated tails exceed both of these.
TAIL_NATS = 0.02
TAIL_SHARE = 0.02


@dataclass(frozen=True)
class InformationSpectrum:
    """Per-node means over points; ``gap`` is the direct integrand ½(mmse_x − mmse_x_given_y)."""

    logsnr: list[float]
    mmse_x: list[float]
    mmse_x_given_y: list[float]
    gap: list[float]
    gap_stderr: list[float]
    gap_orthogonal: list[float]
    thresholds: list[float]
    n_points: int

    @property
    def window(self) -> tuple[float, float]:
        return self.logsnr[0], self.logsnr[-1]

    def integral(self) -> float:
        """Trapezoid integral of ``gap`` over the nodes: the direct MI on this grid (nats)."""
        return trapezoid(self.logsnr, self.gap)

    @property
    def tail_nats(self) -> float:
        """MI estimated to lie outside the window: the integrand at each edge (exponential tails).

        A floor, not a measure, when the window cuts into the peak, where the decay is slower.
        """
        return max(self.gap[0], 0.0) + max(self.gap[-1], 0.0)

    @property
    def peak_logsnr(self) -> float:
        return self.logsnr[max(range(len(self.gap)), key=self.gap.__getitem__)]

    def covers_window(self) -> bool:
        """The integrand is near zero at both ends: at most ``TAIL_NATS`` or ``TAIL_SHARE`` of the MI outside."""
        edges_se = math.hypot(self.gap_stderr[0], self.gap_stderr[-1])
        missing = self.tail_nats - 2 * edges_se  # an edge within noise of zero is covered
        return missing <= max(TAIL_NATS, TAIL_SHARE * abs(self.integral()))

    def as_dict(self) -> dict:
        out = asdict(self)
        out.update(
            integral=self.integral(),
            tail_nats=self.tail_nats,
            peak_logsnr=self.peak_logsnr,
            covers_window=self.covers_window(),
        )
        return out

    @classmethod
    def from_dict(cls, values: dict) -> InformationSpectrum:
        names = cls.__dataclass_fields__
        return cls(**{k: v for k, v in values.items() if k in names})


def trapezoid(xs: list[float], ys: list[float]) -> float:
    return float(sum(0.5 * (ys[i] + ys[i + 1]) * (xs[i + 1] - xs[i]) for i in range(len(xs) - 1)))


def spectrum_nodes(proposal: LogSNRProposal, n_nodes: int = N_NODES) -> Tensor:
    """Evenly spaced nodes over the window the estimator integrates, ends included."""
    if n_nodes < 2:
        raise ConfigError(f"n_nodes must be >= 2, got {n_nodes}")
    return torch.linspace(proposal.low, proposal.high, n_nodes)


@torch.inference_mode()
def information_spectrum(
    denoiser: nn.Module,
    x: Tensor,
    y: Tensor,
    proposal: LogSNRProposal,
    n_nodes: int = N_NODES,
    seed: int = 0,
    rows_per_pass: int = 4096,
) -> InformationSpectrum:
    """Mean errors and their gap at fixed nodes, every point at every node on its own noise."""
    nodes = spectrum_nodes(proposal, n_nodes).to(x.device)
    thresholds = sorted(getattr(denoiser, "thresholds", ()))
    # Nodes are sorted, so the rows of each expert's side of a threshold are contiguous.
    per_side = None
    if thresholds:
        side = torch.bucketize(nodes, nodes.new_tensor(thresholds), right=True)
        per_side = side.bincount(minlength=len(thresholds) + 1).tolist()
    generator = torch.Generator(device=x.device).manual_seed(seed)
    k, n = len(nodes), x.shape[0]
    chunk = max(1, rows_per_pass // k)
    sums = {name: [] for name in ("u", "c", "o")}
    for start in range(0, n, chunk):
        xb, yb = x[start : start + chunk], y[start : start + chunk]
        m = xb.shape[0]
        rows = nodes.repeat_interleave(m)
        segments = None if per_side is None else tuple(c * m for c in per_side)
        mse_u, mse_c, orth = pair_errors(denoiser, xb.repeat(k, 1), yb.repeat(k, 1), rows, segments, generator)
        sums["u"].append(mse_u.reshape(k, m))
        sums["c"].append(mse_c.reshape(k, m))
        sums["o"].append(orth.reshape(k, m))
    mse_u, mse_c, orth = (torch.cat(sums[name], dim=1) for name in ("u", "c", "o"))
    gap = 0.5 * (mse_u - mse_c)
    stderr = gap.std(dim=1) / math.sqrt(n) if n > 1 else torch.full((k,), float("nan"))
    return InformationSpectrum(
        logsnr=nodes.tolist(),
        mmse_x=mse_u.mean(1).tolist(),
        mmse_x_given_y=mse_c.mean(1).tolist(),
        gap=gap.mean(1).tolist(),
        gap_stderr=stderr.tolist(),
        gap_orthogonal=(0.5 * orth.mean(1)).tolist(),
        thresholds=[float(t) for t in thresholds],
        n_points=n,
    )


def gaussian_spectrum(eigval_x: Tensor, eigval_x_given_y: Tensor, logsnr: Tensor | list[float]) -> InformationSpectrum:
    """The closed form for jointly Gaussian (X, Y): ε-MMSE = Σᵢ sλᵢ/(1 + sλᵢ), s = e^α.

    ``eigval_x`` and ``eigval_x_given_y`` are the eigenvalues of Cov x and of Cov x | y. For the
    exact denoiser the orthogonal integrand equals the direct one, and neither has noise.
    """
    alpha = torch.as_tensor(logsnr, dtype=torch.float64).reshape(-1, 1)
    s = alpha.exp()

    def mmse(values: Tensor) -> Tensor:
        lam = torch.as_tensor(values, dtype=torch.float64).clamp_min(0).reshape(1, -1)
        return (s * lam / (1 + s * lam)).sum(1)

    u, c = mmse(eigval_x), mmse(eigval_x_given_y)
    gap = 0.5 * (u - c)
    return InformationSpectrum(
        logsnr=alpha.reshape(-1).tolist(),
        mmse_x=u.tolist(),
        mmse_x_given_y=c.tolist(),
        gap=gap.tolist(),
        gap_stderr=[0.0] * len(gap),
        gap_orthogonal=gap.tolist(),
        thresholds=[],
        n_points=0,
    )
