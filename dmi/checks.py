"""The value checks and the log-SNR range formula that ``dmi`` shares, each written once.

``EstimatorConfig`` (``dmi.config``) validates its fields with them, and ``LogSNRProposal``,
``TaskSpec``, the thread count, the batch sampler, the estimator and the command line reuse
them. A ``*_problem`` function returns why a value is refused (a phrase such as ``"must be a
positive integer"``), or None; ``require`` turns one into a ``ConfigError``. Pure Python,
importing nothing of ``dmi`` but ``dmi.errors``, so the config and the torch modules can both
import it without an import cycle.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from dmi.errors import ConfigError


def positive_int_problem(value: Any) -> str | None:
    """``"must be a positive integer"`` unless ``value`` is an ``int`` >= 1 (a bool is refused)."""
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= 1
    return None if ok else "must be a positive integer"


def positive_number_problem(value: Any) -> str | None:
    """``"must be a finite number > 0"`` unless ``value`` is a finite int or float above zero."""
    ok = isinstance(value, (int, float)) and math.isfinite(value) and value > 0
    return None if ok else "must be a finite number > 0"


def finite_number_problem(value: Any) -> str | None:
    """``"must be a finite number"`` unless ``value`` is a finite int or float."""
    ok = isinstance(value, (int, float)) and math.isfinite(value)
    return None if ok else "must be a finite number"


def require(name: str, value: Any, problem: Callable[[Any], str | None]) -> Any:
    """``value`` if ``problem`` finds nothing wrong with it, else ``ConfigError("NAME <why>, got VALUE")``."""
    why = problem(value)
    if why:
        raise ConfigError(f"{name} {why}, got {value!r}")
    return value


def logsnr_bounds(loc: float, scale: float, clip: float) -> tuple[float, float]:
    """The log-SNR range ``(loc − clip·scale, loc + clip·scale)``: where training samples and estimation integrates."""
    half = clip * scale
    return loc - half, loc + half


def check_snr_threshold(threshold: float, low: float, high: float) -> None:
    """A mixture's threshold must lie strictly inside the log-SNR range, or one expert is never used."""
    if not low < threshold < high:
        raise ConfigError(
            f"snr_threshold {threshold!r} lies outside the sampled log-SNR range ({low:g}, {high:g}): "
            "one expert would never be used"
        )
