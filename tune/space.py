"""The search space: bounds from the config, sampled by an Optuna define-by-run function.

``snr_threshold`` is sampled only for MoE trials and ``ema_decay`` only when EMA is on, so a
trial's config holds exactly the keys that mean something for it. The function is
module-level (bound to its bounds with ``functools.partial``) because the searcher, and the
function with it, is pickled at every experiment checkpoint and unpickled on resume.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dmi.config import ARCHITECTURES, ConfigError, EstimatorConfig
from tune.schema import Section, fail, is_kind

# Searching these would change the budget or the yardstick rather than the estimator.
NOT_SEARCHABLE = ("max_steps", "seed", "n_logsnr", "val_n_logsnr")
CONDITIONS = {"snr_threshold": ("architecture", "moe"), "ema_decay": ("use_ema", True)}


@dataclass(frozen=True)
class ParamSpec:
    """One searched hyperparameter: ``choices``, or a ``low``..``high`` range (``log`` scale optional)."""

    name: str
    kind: str  # "int", "float" or "choice"
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple[Any, ...] = ()

    def contains(self, value: Any) -> bool:
        if self.kind == "choice":
            return any(value == c and isinstance(value, bool) == isinstance(c, bool) for c in self.choices)
        if not is_kind(value, int if self.kind == "int" else float):
            return False
        return self.low <= value <= self.high

    def describe(self) -> str:
        if self.kind == "choice":
            return f"one of {list(self.choices)}"
        return f"{self.kind} in [{self.low:g}, {self.high:g}]" + (" (log)" if self.log else "")


def parse_params(sec: Section, fixed: dict[str, Any], base: EstimatorConfig) -> dict[str, ParamSpec]:
    """Read ``search.params``: each key an ``EstimatorConfig`` field not fixed in ``estimator``."""
    defaults = base.as_dict()
    params: dict[str, ParamSpec] = {}
    for name in list(sec.values):
        field = sec.field(str(name))
        if name not in defaults:
            raise fail(field, f"unknown hyperparameter (fields: {', '.join(defaults)})")
        if name in NOT_SEARCHABLE:
            raise fail(field, f"cannot be searched (fixed in estimator: {', '.join(NOT_SEARCHABLE)})")
        if name in fixed:
            raise fail(field, f"is also fixed in estimator.{name}; keep one")
        params[name] = _param(sec.section(name), name, type(defaults[name]))
    sec.finish()
    for name, spec in params.items():
        _check_values(spec, fixed, sec.field(name))
    _check_conditions(params, base, sec.path)
    _check_snr_range(params, base, sec.path)
    return params


def _param(sec: Section, name: str, kind: type) -> ParamSpec:
    if sec.has("choices"):
        choices = sec.take("choices", list, check=lambda v: None if v else "must not be empty")
        for value in choices:
            if not is_kind(value, float if kind is float else kind):
                raise fail(sec.field("choices"), f"must hold values of type {kind.__name__}, got {value!r}")
        sec.finish()
        return ParamSpec(name, "choice", choices=tuple(float(c) if kind is float else c for c in choices))
    if kind not in (int, float):
        raise fail(sec.path, f"a {kind.__name__} hyperparameter needs choices: [...]")
    number = int if kind is int else float
    low, high = sec.take("low", number), sec.take("high", number)
    log = sec.take("log", bool, name in ("model_dim", "learning_rate"))
    sec.finish()
    if low > high:
        raise fail(sec.path, f"low ({low:g}) is above high ({high:g})")
    if log and low <= 0:
        raise fail(sec.field("low"), f"must be > 0 on a log scale, got {low:g}")
    return ParamSpec(name, "int" if kind is int else "float", low, high, log)


def _candidates(spec: ParamSpec) -> list[Any]:
    return list(spec.choices) if spec.kind == "choice" else [spec.low, spec.high]


def _check_values(spec: ParamSpec, fixed: dict[str, Any], field: str) -> None:
    """Every extreme of the range must make a valid estimator (log-SNR interplay checked apart)."""
    if spec.name == "architecture":
        bad = [c for c in spec.choices if c not in ARCHITECTURES]
        if bad:
            raise fail(field, f"unknown architecture {bad[0]!r} (choose from {', '.join(ARCHITECTURES)})")
        return
    for value in _candidates(spec):
        try:
            EstimatorConfig.from_dict({**fixed, "architecture": "unified", spec.name: value})
        except ConfigError as exc:
            raise fail(field, str(exc)) from None


def _possible(params: dict[str, ParamSpec], base: EstimatorConfig, name: str) -> list[Any]:
    return _candidates(params[name]) if name in params else [getattr(base, name)]


def _check_conditions(params: dict[str, ParamSpec], base: EstimatorConfig, path: str) -> None:
    for name, (parent, value) in CONDITIONS.items():
        if name in params and value not in _possible(params, base, parent):
            raise fail(f"{path}.{name}", f"is only used when {parent} is {value!r}, which no trial can have")


def _check_snr_range(params: dict[str, ParamSpec], base: EstimatorConfig, path: str) -> None:
    """The MoE threshold must lie inside the log-SNR range of every trial that can use it."""
    if "moe" not in _possible(params, base, "architecture"):
        return
    loc, scale, clip = (_possible(params, base, n) for n in ("logsnr_loc", "logsnr_scale", "logsnr_clip"))
    inner_low = max(loc) - min(clip) * min(scale)
    inner_high = min(loc) + min(clip) * min(scale)
    threshold = _possible(params, base, "snr_threshold")
    if min(threshold) <= inner_low or max(threshold) >= inner_high:
        field = f"{path}.snr_threshold" if "snr_threshold" in params else "estimator.snr_threshold"
        raise fail(
            field,
            f"[{min(threshold):g}, {max(threshold):g}] must lie inside the log-SNR range every trial has "
            f"({inner_low:g}, {inner_high:g})",
        )


def check_points(points: list, params: dict[str, ParamSpec], base: EstimatorConfig, field: str) -> None:
    """Seed points (e.g. the original's defaults) must be inside the space and consistent."""
    for i, point in enumerate(points):
        where = f"{field}[{i}]"
        if not isinstance(point, dict):
            raise fail(where, "must be a mapping of searched hyperparameters")
        for name, value in point.items():
            if name not in params:
                raise fail(f"{where}.{name}", "is not a searched hyperparameter (search.params)")
            if not params[name].contains(value):
                raise fail(f"{where}.{name}", f"must be {params[name].describe()}, got {value!r}")
        for name, (parent, wanted) in CONDITIONS.items():
            if name in point and point.get(parent, getattr(base, parent)) != wanted:
                raise fail(f"{where}.{name}", f"needs {parent}: {wanted!r} in the same point")


def define_search_space(trial: Any, spec: dict[str, Any]) -> None:
    """Optuna define-by-run: sample the searched keys, conditional ones only where they apply."""
    params = spec["params"]

    def suggest(name: str) -> Any:
        p = params[name]
        if p["kind"] == "choice":
            return trial.suggest_categorical(name, p["choices"])
        if p["kind"] == "int":
            return trial.suggest_int(name, p["low"], p["high"], log=p["log"])
        return trial.suggest_float(name, p["low"], p["high"], log=p["log"])

    values = {}
    for name in params:
        if name in CONDITIONS:
            continue
        values[name] = suggest(name)
    for name, (parent, wanted) in CONDITIONS.items():
        if name in params and values.get(parent, spec["fixed"][parent]) == wanted:
            suggest(name)


def make_space(params: dict[str, ParamSpec], base: EstimatorConfig) -> Callable[[Any], None]:
    """``define_search_space`` bound to plain-data bounds (picklable, importable)."""
    spec = {
        "params": {
            name: {"kind": p.kind, "low": p.low, "high": p.high, "log": p.log, "choices": list(p.choices)}
            for name, p in params.items()
        },
        "fixed": {parent: getattr(base, parent) for parent, _ in CONDITIONS.values()},
    }
    return functools.partial(define_search_space, spec=spec)
