"""Estimator hyperparameters: one small dataclass, validated on construction."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

ARCHITECTURES = ("unified", "moe")
PREPROCESSING = ("auto", "rescale", "rank_gauss", "none")
# Share of a sample that DiffusionMI and `dmi estimate` keep for the estimate. Its SE is
# sqrt(Var[pmi] / n_test) however well the denoiser trained, so a small test split is noisy.
TEST_FRACTION = 0.3


class ConfigError(ValueError):
    """A hyperparameter value that cannot work; the message names the field."""


@dataclass
class EstimatorConfig:
    """Everything that defines a diffusion MI estimator and its training.

    The log-SNR range is [loc − clip·scale, loc + clip·scale] = [−12, 24] by default: wide
    enough that a perfect denoiser loses < 0.001 nats at 14.5 nats (the original's
    loc 2 / scale 3 / clip 4 loses 0.98). The same range is used to train and to estimate.

    Batch 1024, learning rate 2e-3, 30k steps: spiral needs many noisy samples, and on a
    CPU a 1024-row step costs about twice a 256-row one. Spiral dim 10 (truth 9.90), 20k
    steps: 7.79 nats at lr 1e-3, 8.64 at 2e-3, 7.46 at 4e-3; batch 256, lr 1e-3 and 50k
    steps read 5.22. Spiral dim 3 at lr 2e-3 still gained 0.1 nats per 2k steps at 20k.
    """

    architecture: str = "unified"
    snr_threshold: float = 5.0
    model_dim: int = 64
    n_blocks: int = 3
    gaussian_base: bool = True
    learning_rate: float = 2e-3
    weight_decay: float = 0.0
    lr_schedule: str = "cosine"
    batch_size: int = 1024
    max_steps: int = 30000
    y_drop_prob: float = 0.25
    logsnr_loc: float = 6.0
    logsnr_scale: float = 6.0
    logsnr_clip: float = 3.0
    use_ema: bool = False
    ema_decay: float = 0.999
    n_logsnr: int = 32
    val_n_logsnr: int = 16
    val_fraction: float = 0.1
    val_interval: int | None = None
    patience: int = 10
    preprocess: str = "auto"
    seed: int = 42

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        def fail(field: str, why: str) -> None:
            raise ConfigError(f"{field}: {why} (got {getattr(self, field)!r})")

        if self.architecture not in ARCHITECTURES:
            fail("architecture", f"must be one of {', '.join(ARCHITECTURES)}")
        if self.preprocess not in PREPROCESSING:
            fail("preprocess", f"must be one of {', '.join(PREPROCESSING)}")
        if self.lr_schedule not in ("cosine", "constant"):
            fail("lr_schedule", "must be 'cosine' or 'constant'")
        for name in (
            "model_dim",
            "n_blocks",
            "batch_size",
            "max_steps",
            "n_logsnr",
            "val_n_logsnr",
            "patience",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                fail(name, "must be a positive integer")
        for name in ("learning_rate", "logsnr_scale", "logsnr_clip"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                fail(name, "must be a finite number > 0")
        for name in ("snr_threshold", "logsnr_loc", "weight_decay"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value)):
                fail(name, "must be a finite number")
        if self.weight_decay < 0:
            fail("weight_decay", "must be >= 0")
        if not 0.0 <= self.y_drop_prob < 1.0:
            fail("y_drop_prob", "must be in [0, 1)")
        if self.val_interval is not None and (
            isinstance(self.val_interval, bool) or not isinstance(self.val_interval, int) or self.val_interval < 1
        ):
            fail("val_interval", "must be a positive integer, or None for the automatic interval")
        if not (isinstance(self.val_fraction, (int, float)) and 0.0 <= self.val_fraction < 0.5):
            fail("val_fraction", "must be in [0, 0.5) (0 turns held-out selection off)")
        if not 0.0 < self.ema_decay < 1.0:
            fail("ema_decay", "must be in (0, 1)")
        if self.architecture == "moe":
            low = self.logsnr_loc - self.logsnr_clip * self.logsnr_scale
            high = self.logsnr_loc + self.logsnr_clip * self.logsnr_scale
            if not low < self.snr_threshold < high:
                fail("snr_threshold", f"must lie inside the log-SNR range ({low:g}, {high:g})")

    def replace(self, **changes: Any) -> EstimatorConfig:
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> EstimatorConfig:
        """Build from a mapping; unknown keys are an error naming them."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown hyperparameter(s): {', '.join(unknown)}")
        return cls(**values)
