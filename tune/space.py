"""The search space, sampled by an Optuna define-by-run function: a conditional key only where it means something.

The sampler is pickled with every experiment checkpoint, hence a module-level function bound with ``functools.partial``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from dmi.config import EstimatorConfig
from tune.config import CONDITIONS, ParamSpec


def define_search_space(trial: Any, params: dict[str, ParamSpec], fixed: dict[str, Any]) -> None:
    """Optuna define-by-run: the unconditional keys, then each conditional one where its parent allows it."""
    values: dict[str, Any] = {}
    for name in [n for n in params if n not in CONDITIONS] + [n for n in CONDITIONS if n in params]:
        parent, wanted = CONDITIONS.get(name, (None, None))
        if parent is not None and values.get(parent, fixed[parent]) != wanted:
            continue
        p = params[name]
        if p.kind == "choice":
            values[name] = trial.suggest_categorical(name, list(p.choices))
        else:
            suggest = trial.suggest_int if p.kind == "int" else trial.suggest_float
            values[name] = suggest(name, p.low, p.high, log=p.log)


def make_space(params: dict[str, ParamSpec], base: EstimatorConfig) -> Callable[[Any], None]:
    """``define_search_space`` bound to the bounds and to the fixed parents of conditional keys (picklable)."""
    fixed = {parent: getattr(base, parent) for parent, _ in CONDITIONS.values()}
    return functools.partial(define_search_space, params=dict(params), fixed=fixed)
