"""Samples: validation, standardisation, and batches drawn by index from device tensors.

The whole training set lives as one tensor on the training device; a batch is one
gather by a random index, so there is no per-sample ``__getitem__`` or collate per step.
"""

from __future__ import annotations

from collections.abc import Iterator

import lightning.pytorch as pl
import numpy as np
import torch
from torch import Tensor

from dmi.checks import positive_int_problem, require
from dmi.errors import DataError


def as_2d_float(name: str, values) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim == 1:
        array = array.reshape(-1, 1)
    if array.ndim != 2:
        raise DataError(f"{name} must be a 2-D array (samples × features), got shape {array.shape}")
    if array.shape[1] == 0:
        raise DataError(f"{name} has no columns")
    return array


def validate_sample(x, y, min_samples: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Check a joint sample and return it as float64 arrays, or raise ``DataError``."""
    x, y = as_2d_float("x", x), as_2d_float("y", y)
    if x.shape[0] != y.shape[0]:
        raise DataError(f"x and y have different numbers of samples: {x.shape[0]} vs {y.shape[0]}")
    for name, array in (("x", x), ("y", y)):
        bad = ~np.isfinite(array)
        if bad.any():
            row, col = np.argwhere(bad)[0]
            kind = "NaN" if np.isnan(array[row, col]) else "inf"
            raise DataError(f"{name} contains {kind} (first at row {row}, column {col})")
    if x.shape[0] < min_samples:
        raise DataError(f"too few samples: {x.shape[0]} (need at least {min_samples})")
    for name, array in (("x", x), ("y", y)):
        constant = np.flatnonzero(np.ptp(array, axis=0) == 0)
        if constant.size:
            raise DataError(f"{name} column {constant[0]} is constant: it carries no information")
    return x, y


class Standardizer:
    """Per-column affine map fitted on training data only (MI is invariant to it)."""

    def __init__(self, shift: np.ndarray, scale: np.ndarray) -> None:
        self.shift = np.asarray(shift, dtype=np.float64)
        self.scale = np.asarray(scale, dtype=np.float64)

    @classmethod
    def fit(cls, values: np.ndarray, method: str) -> Standardizer:
        if method == "none":
            return cls(np.zeros(values.shape[1]), np.ones(values.shape[1]))
        scale = values.std(axis=0)
        return cls(values.mean(axis=0), np.where(scale > 0, scale, 1.0))

    def __call__(self, values: np.ndarray) -> np.ndarray:
        return (values - self.shift) / self.scale


RANK_KNOTS = 1024


def rank_gauss_knots(values: np.ndarray, n_knots: int = RANK_KNOTS) -> np.ndarray:
    """Per-column quantiles of the training sample at ``n_knots`` levels, strictly increasing.

    Mapping these knots to the standard normal's quantiles (``rank_gauss``) is a strictly
    increasing map of each coordinate, so it preserves I(X;Y) while taming heavy tails that
    standardisation leaves (Student-t with 2 degrees of freedom has infinite variance).
    """
    levels = (np.arange(n_knots) + 0.5) / n_knots
    knots = np.quantile(values, levels, axis=0)
    # Ties (discrete values) would make the map flat: nudge each knot above the previous one.
    spread = np.maximum(knots[-1] - knots[0], 1e-12)
    step = 1e-9 * spread
    for k in range(1, n_knots):
        knots[k] = np.maximum(knots[k], knots[k - 1] + step)
    return knots


def _rank_gauss_segments(values: torch.Tensor, knots: torch.Tensor):
    """Per column: the segment of each value (x0, g0) and its slope, ends extended linearly."""
    n_knots = knots.shape[0]
    levels = (torch.arange(n_knots, dtype=torch.float64, device=knots.device) + 0.5) / n_knots
    targets = torch.special.ndtri(levels)
    for j in range(values.shape[1]):
        xp = knots[:, j].contiguous()
        v = values[:, j].contiguous()
        i = torch.searchsorted(xp, v).clamp(1, n_knots - 1)
        x0, g0 = xp[i - 1], targets[i - 1]
        yield j, v, x0, g0, (targets[i] - g0) / (xp[i] - x0)


def rank_gauss(values: torch.Tensor, knots: torch.Tensor) -> torch.Tensor:
    """Piecewise-linear map through (knot, normal quantile), extended linearly beyond the ends."""
    out = torch.empty_like(values)
    for j, v, x0, g0, slope in _rank_gauss_segments(values, knots):
        out[:, j] = g0 + (v - x0) * slope
    return out


def rank_gauss_log_jacobian(values: torch.Tensor, knots: torch.Tensor) -> torch.Tensor:
    """log |det ∂rank_gauss(x)/∂x| per row: densities in x coordinates need it added."""
    out = torch.zeros(values.shape[0], dtype=torch.float64, device=values.device)
    for _, _, _, _, slope in _rank_gauss_segments(values, knots):
        out += torch.log(slope)
    return out


class TensorBatches:
    """Shuffled batches of (x, y) drawn by index from tensors already on their device.

    Drops the last partial batch so every step has the same shape. Resumable: its state
    (epoch, batches served) goes into Lightning checkpoints, so a run resumed mid-epoch
    continues the same permutation where it stopped.
    """

    def __init__(self, x: Tensor, y: Tensor, batch_size: int, seed: int = 0) -> None:
        require("batch_size", batch_size, positive_int_problem)
        self.x, self.y = x, y
        self.batch_size = min(batch_size, x.shape[0])
        self.seed = seed
        self.epoch = 0
        self.served = 0

    def to(self, device: torch.device) -> TensorBatches:
        self.x, self.y = self.x.to(device), self.y.to(device)
        return self

    def __len__(self) -> int:
        return self.x.shape[0] // self.batch_size

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        generator = torch.Generator(device="cpu").manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(self.x.shape[0], generator=generator).to(self.x.device)
        start, self.served = self.served, 0
        for b in range(start, len(self)):
            self.served = b + 1
            idx = order[b * self.batch_size : (b + 1) * self.batch_size]
            yield self.x[idx], self.y[idx]
        self.epoch += 1
        self.served = 0

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "served": self.served}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.served = int(state["epoch"]), int(state["served"])


class WholeSet:
    """The validation set as one batch: estimation chunks it itself."""

    def __init__(self, x: Tensor, y: Tensor) -> None:
        self.x, self.y = x, y

    def to(self, device: torch.device) -> WholeSet:
        self.x, self.y = self.x.to(device), self.y.to(device)
        return self

    def __len__(self) -> int:
        return 1

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        yield self.x, self.y


class SampleDataModule(pl.LightningDataModule):
    """Preprocessed train / validation tensors, moved once to the trainer's device."""

    def __init__(
        self,
        x_train: np.ndarray,
        y_train: np.ndarray,
        x_val: np.ndarray | None,
        y_val: np.ndarray | None,
        batch_size: int,
        seed: int = 0,
    ) -> None:
        super().__init__()
        f32 = torch.float32
        self.train = TensorBatches(
            torch.as_tensor(x_train, dtype=f32), torch.as_tensor(y_train, dtype=f32), batch_size, seed
        )
        self.val = (
            None
            if x_val is None
            else WholeSet(torch.as_tensor(x_val, dtype=f32), torch.as_tensor(y_val, dtype=f32))
        )

    def setup(self, stage: str) -> None:
        device = self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")
        self.train.to(device)
        if self.val is not None:
            self.val.to(device)

    def train_dataloader(self) -> TensorBatches:
        return self.train

    def val_dataloader(self):
        return self.val if self.val is not None else []
