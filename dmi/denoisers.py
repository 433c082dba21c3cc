"""Denoisers the estimator wraps: the exact Gaussian (oracle / base) and the learned one.

Every denoiser is a module called as ``d(z, logsnr, y, y_present, segments=None) -> ε̂``
with a ``thresholds`` attribute (log-SNR boundaries where it wants strata split), and
``d.pair(z, logsnr, y, segments=None) -> (ε̂ without y, ε̂ with y)`` for the estimator,
which needs both on the same noise. Nothing else is asked, so oracle, unified and mixture
share one code path.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor, nn

# Shares of the off-diagonal covariance removed, and canonical ranks kept, tried by
# ``GaussianDenoiser.from_sample_selected`` (the full rank is always tried too).
SHRINKAGE_GRID = (0.0, 1e-3, 0.01, 0.03, 0.1, 0.3)
RANK_GRID = (0, 1, 2, 3, 4, 6, 8, 12, 16, 24, 32)


def _inverse_sqrt_and_sqrt(cov: Tensor) -> tuple[Tensor, Tensor]:
    values, vectors = torch.linalg.eigh(0.5 * (cov + cov.T))
    values = values.clamp_min(1e-300)
    return (vectors * values.rsqrt()) @ vectors.T, (vectors * values.sqrt()) @ vectors.T


def reduced_rank_cross(sxx: Tensor, sxy: Tensor, syy: Tensor, rank: int) -> Tensor:
    """Σxy keeping only its ``rank`` largest canonical correlations (the joint stays PSD)."""
    wx, rx = _inverse_sqrt_and_sqrt(sxx)
    wy, ry = _inverse_sqrt_and_sqrt(syy)
    u, rho, vt = torch.linalg.svd(wx @ sxy @ wy)
    kept = (u[:, :rank] * rho[:rank]) @ vt[:rank]
    return rx @ kept @ ry


def sample_moments(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """Mean and (unbiased) covariance of the joint sample [x, y], in float64."""
    xy = torch.cat([x, y], dim=1).double().cpu()
    mean = xy.mean(0)
    centred = xy - mean
    return mean, centred.T @ centred / max(len(xy) - 1, 1)


class GaussianDenoiser(nn.Module):
    """Exact MMSE ε-denoisers of a jointly Gaussian (X, Y), unconditional and conditional.

    ε̂(z)    = b·(a²Σxx + b²I)⁻¹ (z − a·μx)
    ε̂(z, y) = b·(a²Σx|y + b²I)⁻¹ (z − a·μ(y)),   μ(y) = μx + ΣxyΣyy⁻¹(y − μy)
    Inverses go through eigendecompositions computed once, so a batch with per-row
    log-SNR costs two d×d matmuls per form.
    """

    thresholds: tuple[float, ...] = ()

    def __init__(
        self, covariance: np.ndarray | Tensor, dim_x: int, mean: np.ndarray | Tensor | None = None
    ) -> None:
        super().__init__()
        cov = torch.as_tensor(np.asarray(covariance), dtype=torch.float64)
        n = cov.shape[0]
        if cov.shape != (n, n) or not 0 < dim_x < n:
            raise ValueError(f"covariance must be square with dim_x < its size, got {tuple(cov.shape)}")
        mean_t = (
            torch.zeros(n, dtype=torch.float64)
            if mean is None
            else torch.as_tensor(np.asarray(mean), dtype=torch.float64)
        )
        cov = 0.5 * (cov + cov.T)
        sxx, sxy, syy = cov[:dim_x, :dim_x], cov[:dim_x, dim_x:], cov[dim_x:, dim_x:]
        coef = torch.linalg.solve(syy, sxy.T).T  # Σxy Σyy⁻¹
        s_cond = sxx - coef @ sxy.T
        lx, ux = torch.linalg.eigh(sxx)
        lc, uc = torch.linalg.eigh(0.5 * (s_cond + s_cond.T))
        self.dim_x, self.dim_y = dim_x, n - dim_x
        # Gaussian MI of the moments: ½ log det Σxx − ½ log det Σx|y.
        f32 = dict(dtype=torch.float32)
        gaussian_mi = 0.5 * (torch.log(lx).sum() - torch.log(lc.clamp_min(1e-300)).sum())
        self.register_buffer("gaussian_mi", gaussian_mi.to(torch.float64))
        self.register_buffer("shrinkage", torch.zeros((), dtype=torch.float64))
        self.register_buffer("rank", torch.tensor(min(dim_x, n - dim_x)))
        self.register_buffer("mean_x", mean_t[:dim_x].to(**f32))
        self.register_buffer("mean_y", mean_t[dim_x:].to(**f32))
        self.register_buffer("coef", coef.to(**f32))
        self.register_buffer("eigvec_x", ux.to(**f32))
        self.register_buffer("eigval_x", lx.clamp_min(0).to(**f32))
        self.register_buffer("eigvec_c", uc.to(**f32))
        self.register_buffer("eigval_c", lc.clamp_min(0).to(**f32))

    @classmethod
    def from_sample(
        cls, x: Tensor, y: Tensor, ridge: float = 1e-10, shrinkage: float = 0.0, rank: int | None = None
    ) -> GaussianDenoiser:
        """Moments of a training sample, in float64, regularised by ``shrinkage`` and ``rank``.

        ``shrinkage`` removes that share of every off-diagonal covariance; ``rank`` keeps only
        the strongest canonical correlations between x and y (a reduced-rank regression of x
        on y). The ridge must stay far below the smallest conditional variance: at 14.5 nats
        that is ~5e-7 of the marginal, so even 1e-4 would cap the Gaussian MI near 9 nats.
        """
        mean, cov = sample_moments(x, y)
        cov = (1.0 - shrinkage) * cov + shrinkage * torch.diag(torch.diag(cov))
        dx = x.shape[1]
        if rank is not None and rank < min(dx, y.shape[1]):
            cov[:dx, dx:] = reduced_rank_cross(cov[:dx, :dx], cov[:dx, dx:], cov[dx:, dx:], rank)
            cov[dx:, :dx] = cov[:dx, dx:].T
        cov = cov + ridge * torch.diag(cov).mean() * torch.eye(cov.shape[0], dtype=cov.dtype)
        base = cls(cov.numpy(), dx, mean.numpy())
        base.shrinkage.fill_(shrinkage)
        base.rank.fill_(min(dx, y.shape[1]) if rank is None else rank)
        return base

    @classmethod
    def from_sample_selected(cls, x: Tensor, y: Tensor, x_val: Tensor, y_val: Tensor) -> GaussianDenoiser:
        """The base (shrinkage × rank) with the lowest held-out Gaussian NLL, nll(x) + nll(x | y).

        The same label-free criterion that selects the network's weights. On a few thousand
        rows in tens of dimensions the raw sample covariance overfits the regression of x on
        y (d_x·d_y coefficients), which biases the held-out MI low; a low rank or some
        shrinkage removes most of that, and on a large sample the criterion keeps the raw one.
        """
        full = min(x.shape[1], y.shape[1])
        ranks = sorted({r for r in RANK_GRID if r < full} | {full})
        best, best_score = None, math.inf
        for lam in SHRINKAGE_GRID:
            for rank in ranks:
                candidate = cls.from_sample(x, y, shrinkage=lam, rank=rank)
                score = sum(candidate.gaussian_nll(x_val, y_val))
                if score < best_score:
                    best, best_score = candidate, score
        return best

    def gaussian_nll(self, x: Tensor, y: Tensor) -> tuple[float, float]:
        """Mean NLL (nats) of held-out rows under this Gaussian: of x, and of x given y."""
        x, y = x.double().cpu(), y.double().cpu()
        mx, my = self.mean_x.double(), self.mean_y.double()
        terms = []
        for centred, eigvec, eigval in (
            (x - mx, self.eigvec_x, self.eigval_x),
            (x - mx - (y - my) @ self.coef.double().T, self.eigvec_c, self.eigval_c),
        ):
            lam = eigval.double().clamp_min(1e-300)
            proj = centred @ eigvec.double()
            quad = (proj * proj / lam).sum(1)
            nll = 0.5 * (quad + torch.log(lam).sum() + x.shape[1] * math.log(2 * math.pi))
            terms.append(float(nll.mean()))
        return terms[0], terms[1]

    @staticmethod
    def _solve(r: Tensor, eigvec: Tensor, eigval: Tensor, a: Tensor, b: Tensor) -> Tensor:
        coords = (r @ eigvec) * (b / (a * a * eigval + b * b))
        return coords @ eigvec.T

    def pair(
        self, z: Tensor, logsnr: Tensor, y: Tensor, segments: tuple[int, ...] | None = None
    ) -> tuple[Tensor, Tensor]:
        alpha = logsnr.reshape(-1, 1)
        a, b = torch.sigmoid(alpha).sqrt(), torch.sigmoid(-alpha).sqrt()
        eps_u = self._solve(z - a * self.mean_x, self.eigvec_x, self.eigval_x, a, b)
        mu_y = self.mean_x + (y - self.mean_y) @ self.coef.T
        eps_c = self._solve(z - a * mu_y, self.eigvec_c, self.eigval_c, a, b)
        return eps_u, eps_c

    def forward(
        self,
        z: Tensor,
        logsnr: Tensor,
        y: Tensor,
        y_present: Tensor,
        segments: tuple[int, ...] | None = None,
    ) -> Tensor:
        eps_u, eps_c = self.pair(z, logsnr, y)
        return torch.lerp(eps_u, eps_c, y_present.reshape(-1, 1).to(z.dtype))


class Denoiser(nn.Module):
    """A learned ε-denoiser: an inner network, optionally on top of a Gaussian base.

    With a base, ε̂ = ε̂_Gauss + net(...), the net's output starting at zero: at
    initialisation the estimator returns the Gaussian MI of the data and training learns
    only what is non-Gaussian. The residual is not damped by sqrt(σ(−α)), a factor that
    vanishes at high SNR: that damping leaves the net unable to correct ε̂ at high SNR,
    where near-deterministic nonlinear dependence (spiral) lives; without it spiral reads
    more and near-Gaussian rows are unchanged (``benchmarks/results/defaults-rationale.md``).

    An inner network of several ``members`` (independently initialised networks packed on a
    leading axis) predicts their mean for flat rows: that is every prediction the estimator
    makes. Inputs laid out ``(members, rows, ·)``, which only the training loss passes (each
    member on its own noise), give each member's prediction.
    """

    def __init__(self, inner: nn.Module, base: GaussianDenoiser | None = None) -> None:
        super().__init__()
        self.inner = inner
        self.base = base

    @property
    def thresholds(self) -> tuple[float, ...]:
        return tuple(getattr(self.inner, "thresholds", ()))

    @property
    def members(self) -> int:
        return int(getattr(self.inner, "members", 1))

    def _stacked(self, *rows: Tensor) -> list[Tensor]:
        """Flat row tensors (rows, ·) or (rows,) as the same rows for every member: (members, rows, ·)."""
        return [t.unsqueeze(0).expand(self.members, *t.shape) for t in rows]

    def forward(
        self,
        z: Tensor,
        logsnr: Tensor,
        y: Tensor,
        y_present: Tensor,
        segments: tuple[int, ...] | None = None,
    ) -> Tensor:
        if self.members > 1 and z.ndim == 2:
            stacked = self._stacked(z, logsnr.reshape(-1), y, y_present.reshape(-1))
            out = self.inner(*stacked, segments).mean(0)
        else:
            out = self.inner(z, logsnr, y, y_present, segments)
        if self.base is None:
            return out
        if out.ndim == 3:  # one prediction per member; the base is the same for all of them
            z_rows, y_rows = z.reshape(-1, z.shape[-1]), y.reshape(-1, y.shape[-1])
            base = self.base(z_rows, logsnr.reshape(-1), y_rows, y_present.reshape(-1))
            return base.reshape(out.shape) + out
        return self.base(z, logsnr, y, y_present) + out

    def pair(
        self, z: Tensor, logsnr: Tensor, y: Tensor, segments: tuple[int, ...] | None = None
    ) -> tuple[Tensor, Tensor]:
        if self.members > 1:
            out_u, out_c = self.inner.pair(*self._stacked(z, logsnr.reshape(-1), y), segments)
            out_u, out_c = out_u.mean(0), out_c.mean(0)
        else:
            out_u, out_c = self.inner.pair(z, logsnr, y, segments)
        if self.base is None:
            return out_u, out_c
        base_u, base_c = self.base.pair(z, logsnr, y)
        return base_u + out_u, base_c + out_c
