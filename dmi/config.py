"""Estimator hyperparameters: one small dataclass, each field documented, validated on construction.

``EstimatorConfig`` is the one source of every hyperparameter: its default, what it does
(``metadata["help"]``, which the ``dmi`` options and the pydantic ``parameters()`` model
repeat) and the rule a value must follow (``metadata["rule"]``, which ``validate`` applies
and the parameters model carries). The checks it shares with the rest of ``dmi`` (a
positive integer, a positive number, a threshold inside the log-SNR range) and the formula
of that range are ``dmi.checks``. Pure Python: importing it loads no torch.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from dmi.checks import (
    check_snr_threshold,
    finite_number_problem,
    logsnr_bounds,
    positive_int_problem,
    positive_number_problem,
)
from dmi.errors import ConfigError

if TYPE_CHECKING:
    from dmi.diffusion import LogSNRProposal

ARCHITECTURES = ("unified", "moe")
PREPROCESSING = ("auto", "rescale", "rank_gauss", "none")
LR_SCHEDULES = ("cosine", "constant")
# Share of a sample that DiffusionMI and `dmi estimate` keep for the estimate. Its SE is
# sqrt(Var[pmi] / n_test) however well the denoiser trained, so a small test split is noisy.
TEST_FRACTION = 0.3
# members=None packs this many half-width networks below this many training rows
# (benchmarks/results/bmi-benchmark-attempts.md: where packing pays and where it stops paying).
PACKED_MEMBERS = 4
PACK_BELOW_ROWS = 8_000


@dataclass(frozen=True)
class Rule:
    """The constraint on one field: why a value breaks it (``problem``), and pydantic's form of it.

    ``bounds`` are ``pydantic.Field`` keywords and values (``gt``, ``ge``, ``lt``, ``le``);
    ``choices`` are the allowed values of a string field; ``optional``: None is allowed too.
    """

    problem: Callable[[Any], str | None]
    bounds: tuple[tuple[str, float], ...] = ()
    choices: tuple[str, ...] = ()
    optional: bool = False

    def why(self, value: Any) -> str | None:
        if value is None and self.optional:
            return None
        return self.problem(value)


def _one_of(choices: tuple[str, ...], why: str | None = None) -> Rule:
    text = why or f"must be one of {', '.join(choices)}"
    return Rule(lambda value: None if value in choices else text, choices=choices)


def _between(low: float, high: float, why: str, *, low_open: bool, high_open: bool) -> Rule:
    def problem(value: Any) -> str | None:
        above = low < value if low_open else low <= value
        below = value < high if high_open else value <= high
        return None if above and below else why

    return Rule(problem, (("gt" if low_open else "ge", low), ("lt" if high_open else "le", high)))


def _non_negative(value: Any) -> str | None:
    return finite_number_problem(value) or (None if value >= 0 else "must be >= 0")


def _fraction_below_half(value: Any) -> str | None:
    ok = isinstance(value, (int, float)) and 0.0 <= value < 0.5
    return None if ok else "must be in [0, 0.5) (0 turns held-out selection off)"


def _optional_interval(value: Any) -> str | None:
    return positive_int_problem(value) and "must be a positive integer, or None for the automatic interval"


def hyperparameter(default: Any, description: str, rule: Rule | None = None) -> Any:
    """A documented field of ``EstimatorConfig``: its default, its help and the rule its value follows."""
    return field(default=default, metadata={"help": description, "rule": rule})


POSITIVE_INT = Rule(positive_int_problem, (("ge", 1),))
POSITIVE = Rule(positive_number_problem, (("gt", 0),))
FINITE = Rule(finite_number_problem)
NON_NEGATIVE = Rule(_non_negative, (("ge", 0),))


@dataclass
class EstimatorConfig:
    """Everything that defines a diffusion MI estimator and its training.

    The defaults favour an unbiased estimate over speed: a log-SNR range wide enough that
    even a perfect denoiser loses almost nothing outside it (the same range trains and
    estimates), and large batches with a long budget, because near-deterministic
    dependence (spiral) needs many noisy samples. The measurements behind them are in
    ``benchmarks/results/defaults-rationale.md``.
    """

    architecture: str = hyperparameter(
        "unified",
        "denoiser network: 'unified' is one residual MLP for every noise level, 'moe' adds a "
        "high-SNR expert above snr_threshold",
        _one_of(ARCHITECTURES),
    )
    snr_threshold: float = hyperparameter(
        5.0,
        "log-SNR above which the mixture of experts adds its high-SNR expert to the low one "
        "(moe only; it must lie inside the log-SNR range)",
        FINITE,
    )
    model_dim: int = hyperparameter(
        64,
        "hidden width of every layer of the denoiser; halved for each of the four networks that members=None "
        "packs on a small sample",
        POSITIVE_INT,
    )
    members: int | None = hyperparameter(
        None,
        "independently initialised networks packed side by side; each step deals the batch out among them, "
        "each with its own noise draws, and every prediction is their mean, which removes part of the fitting "
        "noise that biases the direct form low on a few thousand rows. None (automatic): below "
        f"{PACK_BELOW_ROWS:,} training rows, {PACKED_MEMBERS} networks of half model_dim on twice batch_size "
        "(the step cost of one network); one network of model_dim above, where it learns more than the four",
        Rule(positive_int_problem, (("ge", 1),), optional=True),
    )
    n_blocks: int = hyperparameter(
        3,
        "residual blocks per network: the depth available to nonlinear dependence",
        POSITIVE_INT,
    )
    gaussian_base: bool = hyperparameter(
        True,
        "learn only a residual over the exact denoiser of a Gaussian fitted to the training sample, "
        "so training starts from the data's Gaussian MI",
    )
    y_squares: bool = hyperparameter(
        True,
        "give the conditioning MLP y² (elementwise) beside y: dependence through a shared scale, as in "
        "heavy-tailed data, is a function of y², which the MLP otherwise has to build from y",
    )
    learning_rate: float = hyperparameter(
        2e-3,
        "peak Adam learning rate: fast enough for the step budget, slow enough to stay stable",
        POSITIVE,
    )
    weight_decay: float = hyperparameter(
        0.0,
        "Adam weight decay (an L2 penalty on the weights; 0 turns it off)",
        NON_NEGATIVE,
    )
    lr_schedule: str = hyperparameter(
        "cosine",
        "'cosine' decays the learning rate to zero over the training budget, 'constant' keeps it",
        _one_of(LR_SCHEDULES, "must be 'cosine' or 'constant'"),
    )
    batch_size: int = hyperparameter(
        1024,
        "rows per training step, dealt out among the members (doubled where members=None packs four): each "
        "row is one noisy draw of the loss, so more rows mean less noise",
        POSITIVE_INT,
    )
    max_steps: int = hyperparameter(
        30000,
        "cap on training steps; held-out early stopping usually ends training sooner",
        POSITIVE_INT,
    )
    y_drop_prob: float = hyperparameter(
        0.25,
        "probability that a training row hides y, so one network learns both the unconditional and "
        "the conditional denoiser",
        _between(0.0, 1.0, "must be in [0, 1)", low_open=False, high_open=True),
    )
    logsnr_loc: float = hyperparameter(
        6.0,
        "centre of the logistic log-SNR proposal that training samples and estimation integrates over",
        FINITE,
    )
    logsnr_scale: float = hyperparameter(
        6.0,
        "spread of the log-SNR proposal; the range is logsnr_loc ± logsnr_clip·logsnr_scale",
        POSITIVE,
    )
    logsnr_clip: float = hyperparameter(
        3.0,
        "half-width of the log-SNR range in units of logsnr_scale: information outside the range "
        "is lost, so it must cover where the integrand lives",
        POSITIVE,
    )
    use_ema: bool = hyperparameter(
        False,
        "estimate with an exponential moving average of the weights, smoothing the last steps' noise",
    )
    ema_decay: float = hyperparameter(
        0.999,
        "per-step decay of the weights' moving average (use_ema only)",
        _between(0.0, 1.0, "must be in (0, 1)", low_open=True, high_open=True),
    )
    n_logsnr: int = hyperparameter(
        32,
        "log-SNR grid nodes at which every test point is evaluated for the estimate: more nodes, less quadrature noise",
        POSITIVE_INT,
    )
    val_n_logsnr: int = hyperparameter(
        16,
        "grid nodes of the held-out evaluations during training, fewer as they only rank weights",
        POSITIVE_INT,
    )
    val_fraction: float = hyperparameter(
        0.1,
        "share of the training sample held out to select the weights and stop early (0 turns "
        "selection off and keeps the last weights)",
        Rule(_fraction_below_half, (("ge", 0.0), ("lt", 0.5))),
    )
    val_interval: int | None = hyperparameter(
        None,
        "training steps between evaluations of the held-out NLL, which early stopping and weight "
        "selection use; None picks an interval that keeps evaluation a small share of training",
        Rule(_optional_interval, (("ge", 1),), optional=True),
    )
    patience: int = hyperparameter(
        6,
        "held-out evaluations without a significant improvement before training stops",
        POSITIVE_INT,
    )
    preprocess: str = hyperparameter(
        "auto",
        "map of each coordinate before training: 'rescale' standardises it, 'rank_gauss' sends it "
        "through its training quantiles to a standard normal (MI-preserving, tames heavy tails), 'auto' "
        "picks one of the two on held-out data, 'none' leaves it",
        _one_of(PREPROCESSING),
    )
    seed: int = hyperparameter(
        42,
        "seed of the data split, the held-out split and training, so a run can be repeated",
    )

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        for f in dataclasses.fields(self):
            rule = f.metadata.get("rule")
            why = rule.why(getattr(self, f.name)) if rule is not None else None
            if why:
                raise ConfigError(f"{f.name}: {why} (got {getattr(self, f.name)!r})")
        if self.members is not None and self.batch_size < self.members:
            raise ConfigError(
                f"batch_size: the batch is dealt out among the {self.members} members, so it needs at least "
                f"as many rows (got {self.batch_size})"
            )
        if self.architecture == "moe":
            check_snr_threshold(self.snr_threshold, *self.logsnr_range)

    def for_training_rows(self, n_rows: int) -> EstimatorConfig:
        """This configuration with ``members=None`` made explicit for ``n_rows`` training rows.

        Packing keeps the step cost: four networks of half the width, each dealt half a batch.
        """
        if self.members is not None:
            return self
        if PACKED_MEMBERS <= n_rows < PACK_BELOW_ROWS and self.model_dim >= 2:
            return self.replace(members=PACKED_MEMBERS, model_dim=self.model_dim // 2, batch_size=2 * self.batch_size)
        return self.replace(members=1)

    @property
    def logsnr_range(self) -> tuple[float, float]:
        """(low, high) of the log-SNR range, ``logsnr_loc ± logsnr_clip·logsnr_scale``."""
        return logsnr_bounds(self.logsnr_loc, self.logsnr_scale, self.logsnr_clip)

    def proposal(self) -> LogSNRProposal:
        """The log-SNR proposal of this configuration (``dmi.diffusion.LogSNRProposal``; imports torch)."""
        from dmi.diffusion import LogSNRProposal

        return LogSNRProposal(self.logsnr_loc, self.logsnr_scale, self.logsnr_clip)

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


def field_help(name: str) -> str:
    """The one-line help of an ``EstimatorConfig`` field."""
    return FIELDS[name].metadata["help"]


FIELDS: dict[str, dataclasses.Field] = {f.name: f for f in dataclasses.fields(EstimatorConfig)}
