"""The Lightning module that trains either architecture and estimates MI with it."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from torch import Tensor

from dmi.config import EstimatorConfig
from dmi.data import RANK_KNOTS, rank_gauss, rank_gauss_log_jacobian
from dmi.denoisers import Denoiser, GaussianDenoiser
from dmi.diffusion import MIEstimate
from dmi.domain import DomainCheck, DomainReference, compare
from dmi.estimation import denoising_loss, estimate_mi
from dmi.networks import MixtureOfExperts, ResidualMLP
from dmi.spectrum import N_NODES, InformationSpectrum, gaussian_spectrum, information_spectrum, spectrum_nodes

DOMAIN_KEY = "dmi_domain_reference"
PRE_Y_SQUARES = {"y_squares": False}


def build_denoiser(cfg: EstimatorConfig, dim_x: int, dim_y: int) -> Denoiser:
    """The architecture is only which inner network the one ``Denoiser`` wraps.

    ``members=None`` is sized by the training rows (``EstimatorConfig.for_training_rows``); without them, one.
    """
    members = cfg.members or 1
    if cfg.architecture == "unified":
        inner = ResidualMLP(dim_x, dim_y, cfg.model_dim, cfg.n_blocks, n_experts=members, y_squares=cfg.y_squares)
    else:
        inner = MixtureOfExperts(
            dim_x, dim_y, cfg.model_dim, cfg.n_blocks, cfg.snr_threshold, cfg.y_squares, members=members
        )
    # Placeholder moments (identity) so checkpoints load into the right shapes.
    base = GaussianDenoiser(np.eye(dim_x + dim_y), dim_x) if cfg.gaussian_base else None
    return Denoiser(inner, base)


class DiffusionMIModule(pl.LightningModule):
    """Trains a denoiser on noisy x with and without y; validation logs NLL bounds and MI.

    Hyperparameters are saved as plain values and the preprocessing and Gaussian-base
    moments as buffers, so a checkpoint loads with ``weights_only=True``.
    """

    def __init__(self, dim_x: int, dim_y: int, **hparams: Any) -> None:
        super().__init__()
        # A checkpoint saved before y_squares existed holds a network without y² inputs.
        # One saved before members existed, or built without training rows to size it, is one network.
        hparams = {**PRE_Y_SQUARES, **hparams}
        if hparams.get("members") is None:
            hparams["members"] = 1
        self.save_hyperparameters({"dim_x": dim_x, "dim_y": dim_y, **hparams})
        self.automatic_optimization = False
        self.cfg = EstimatorConfig.from_dict(hparams)
        self.dim_x, self.dim_y = dim_x, dim_y
        self.selection = None  # set by dmi.training.fit: how the weights were selected
        self.last_val_points: Tensor | None = None
        # Of the validation rows the current weights were scored on (dmi.domain); in checkpoints.
        self.domain_reference: DomainReference | None = None
        self.denoiser = build_denoiser(self.cfg, dim_x, dim_y)
        self.proposal = self.cfg.proposal()
        n_knots = RANK_KNOTS if self.cfg.preprocess in ("rank_gauss", "auto") else 0
        # Whether the knots are applied: fixed by rank_gauss, chosen on held-out data by auto.
        self.register_buffer("rank_gauss_on", torch.tensor(self.cfg.preprocess == "rank_gauss"))
        for name, dim in (("x", dim_x), ("y", dim_y)):
            self.register_buffer(f"{name}_shift", torch.zeros(dim, dtype=torch.float64))
            self.register_buffer(f"{name}_scale", torch.ones(dim, dtype=torch.float64))
            self.register_buffer(f"{name}_knots", torch.zeros(n_knots, dim, dtype=torch.float64))

    # -- set-up from the training sample ---------------------------------------------------
    def set_preprocessing(self, x_shift, x_scale, y_shift, y_scale) -> None:
        for name, value in (
            ("x_shift", x_shift),
            ("x_scale", x_scale),
            ("y_shift", y_shift),
            ("y_scale", y_scale),
        ):
            getattr(self, name).copy_(torch.as_tensor(np.asarray(value), dtype=torch.float64))

    def set_rank_knots(self, x_knots, y_knots) -> None:
        for name, value in (("x_knots", x_knots), ("y_knots", y_knots)):
            getattr(self, name).copy_(torch.as_tensor(np.asarray(value), dtype=torch.float64))

    def log_jacobian_x(self, x: Tensor) -> Tensor:
        """log |det ∂preprocess(x)/∂x| per row (float64): a density of preprocessed x times exp(this) is one of x."""
        x = x.to(self.x_shift.device, torch.float64)
        out = -torch.log(self.x_scale).sum().expand(x.shape[0]).clone()
        if bool(self.rank_gauss_on):
            out += rank_gauss_log_jacobian(x, self.x_knots)
        return out

    @property
    def preprocessing(self) -> str:
        """The preprocessing in use (``auto`` resolved)."""
        if self.cfg.preprocess != "auto":
            return self.cfg.preprocess
        return "rank_gauss" if bool(self.rank_gauss_on) else "rescale"

    def preprocess_raw(self, x, y) -> tuple[Tensor, Tensor]:
        """``preprocess`` of raw arrays (numpy, lists, tensors) of a sample."""
        return self.preprocess(
            torch.tensor(np.asarray(x, dtype=np.float64)), torch.tensor(np.asarray(y, dtype=np.float64))
        )

    def preprocess(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        x = x.to(self.x_shift.device, torch.float64)
        y = y.to(self.y_shift.device, torch.float64)
        if bool(self.rank_gauss_on):
            x, y = rank_gauss(x, self.x_knots), rank_gauss(y, self.y_knots)
        x = (x - self.x_shift) / self.x_scale
        y = (y - self.y_shift) / self.y_scale
        return x.float(), y.float()

    # -- training ----------------------------------------------------------------------------
    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        """One optimizer step, written out (Lightning's manual optimization).

        The closure machinery of automatic optimization costs a noticeable share of a small
        step on CPU (measured in ``benchmarks/results/defaults-rationale.md``), and this loop
        needs none of its features (one optimizer, no accumulation, no clipping).
        """
        x, y = batch
        log_now = self.global_step % self._log_every == 0  # read before the step advances it
        opt = self.optimizers()
        loss = denoising_loss(self.denoiser, x, y, self.proposal, self.cfg.y_drop_prob)
        opt.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        opt.step()
        scheduler = self.lr_schedulers()
        if scheduler is not None:
            scheduler.step()
        # Logged on Lightning's own cadence only: a per-step log costs ~5 % of a small step.
        if log_now:
            self.log("train_loss", loss.detach(), on_step=True, on_epoch=False, prog_bar=True)
            # A NaN loss ends the run as failed rather than training on garbage (checked at
            # this cadence, and at every validation, so the GPU is not synchronised each step).
            if not torch.isfinite(loss):
                raise FloatingPointError(f"training loss is {loss.item()}: training diverged")
        return loss.detach()

    @property
    def _log_every(self) -> int:
        return max(1, self.trainer.log_every_n_steps) if self._trainer is not None else 50

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        x, y = batch
        est = estimate_mi(self.denoiser, x, y, self.proposal, self.cfg.val_n_logsnr, seed=0)
        if not all(math.isfinite(v) for v in (est.mi, est.nll_x, est.nll_x_given_y)):
            raise FloatingPointError("validation produced a non-finite MI or NLL: training diverged")
        metrics = {
            "val_nll_x": est.nll_x,
            "val_nll_x_given_y": est.nll_x_given_y,
            "val_loss": est.nll_x + est.nll_x_given_y,
            "mi": est.mi,
            "mi_orthogonal": est.mi_orthogonal,
            "mi_stderr": est.mi_stderr,
            "mi_orthogonal_stderr": est.mi_orthogonal_stderr,
        }
        self.log_dict(metrics, prog_bar=False, batch_size=x.shape[0])
        self.last_val_points = est.nll_points  # read by dmi.selection.HeldOutSelection
        self.domain_reference = DomainReference.from_rows(
            est.nll_points, est.mi_points, x, y, self.cfg.val_n_logsnr
        )

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.domain_reference is not None:
            checkpoint[DOMAIN_KEY] = self.domain_reference.as_dict()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        saved = checkpoint.get(DOMAIN_KEY)
        self.domain_reference = None if saved is None else DomainReference.from_dict(saved)

    def configure_optimizers(self):
        # Fused Adam: one kernel for all parameters instead of ~10 ops each (+15-30 % steps/s
        # on CPU at width 64, measured by benchmarks/throughput.py's bare loop).
        opt = torch.optim.Adam(
            self.parameters(),
            lr=self.cfg.learning_rate,
            weight_decay=self.cfg.weight_decay,
            fused=self.device.type in ("cpu", "cuda"),
        )
        if self.cfg.lr_schedule == "constant":
            return opt
        # Cosine decay to the *trainer's* max_steps, read at every step: resuming with a
        # larger budget stretches the one decay instead of starting a second cycle.
        sched = torch.optim.lr_scheduler.LambdaLR(opt, self._cosine_factor)
        return {"optimizer": opt, "lr_scheduler": sched}  # stepped every step by training_step

    def _cosine_factor(self, step: int) -> float:
        total = self.cfg.max_steps
        if self._trainer is not None and self.trainer.max_steps and self.trainer.max_steps > 0:
            total = self.trainer.max_steps
        return 0.5 * (1.0 + math.cos(math.pi * min(step, total) / max(total, 1)))

    # -- estimation --------------------------------------------------------------------------
    @torch.no_grad()
    def estimate(self, x, y, n_logsnr: int | None = None, seed: int = 0) -> MIEstimate:
        """MI of a raw (unpreprocessed) sample with the current weights."""
        xt, yt = self.preprocess_raw(x, y)
        return self.estimate_preprocessed(xt, yt, n_logsnr, seed)

    @torch.no_grad()
    def check_domain(self, x, y, seed: int = 0) -> DomainCheck:
        """How far a raw sample lies from the validation rows these weights were selected on."""
        names = [f"x{i}" for i in range(self.dim_x)] + [f"y{i}" for i in range(self.dim_y)]
        xt, yt = self.preprocess_raw(x, y)
        reference = self.domain_reference
        if reference is None:
            empty = torch.zeros(xt.shape[0])
            return compare(None, empty, empty, xt, yt, names)
        est = self.estimate_preprocessed(xt, yt, reference.n_logsnr, seed)
        return compare(reference, est.nll_points, est.mi_points, xt, yt, names)

    @torch.no_grad()
    def spectrum(self, x, y, n_nodes: int = N_NODES, seed: int = 0) -> InformationSpectrum:
        """The information spectrum of a raw sample (``dmi.spectrum``), in preprocessed coordinates."""
        xt, yt = (t.to(self.device) for t in self.preprocess_raw(x, y))
        with self._evaluating():
            return information_spectrum(self.denoiser, xt, yt, self.proposal, n_nodes, seed)

    def base_spectrum(self, n_nodes: int = N_NODES) -> InformationSpectrum | None:
        """The Gaussian base's spectrum in closed form at the same nodes (None without a base)."""
        base = self.denoiser.base
        if base is None:
            return None
        return gaussian_spectrum(base.eigval_x.cpu(), base.eigval_c.cpu(), spectrum_nodes(self.proposal, n_nodes))

    @torch.no_grad()
    def estimate_preprocessed(self, x: Tensor, y: Tensor, n_logsnr: int | None = None, seed: int = 0) -> MIEstimate:
        with self._evaluating():
            x, y = x.to(self.device), y.to(self.device)
            return estimate_mi(self.denoiser, x, y, self.proposal, n_logsnr or self.cfg.n_logsnr, seed=seed)

    @contextmanager
    def _evaluating(self) -> Iterator[None]:
        """Eval mode for the block, then the mode the module was in (validation calls this mid-training)."""
        was_training = self.training
        self.eval()
        try:
            yield
        finally:
            self.train(was_training)
