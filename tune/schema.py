"""Typed reading of one YAML mapping: every key checked, unknown keys refused, errors name the field."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

MISSING = object()


class SweepConfigError(ValueError):
    """A sweep configuration that cannot run; the message starts with the dotted field name."""


def fail(field: str, why: str) -> SweepConfigError:
    return SweepConfigError(f"{field}: {why}")


def describe(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    names = {
        bool: "true/false",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "a mapping",
    }
    return " or ".join(names.get(k, k.__name__) for k in kinds if k is not type(None)) or "null"


def is_kind(value: Any, kind: type | tuple[type, ...]) -> bool:
    """isinstance with YAML's habits: a bool is not a number, an int is a float."""
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool):
        return bool in kinds
    if isinstance(value, int) and float in kinds:
        return True
    if value is None:
        return type(None) in kinds
    return isinstance(value, tuple(k for k in kinds if k is not bool))


class Section:
    """A mapping read key by key: ``take`` each known key, then ``finish`` refuses the rest."""

    def __init__(self, values: Any, path: str) -> None:
        if values is None:
            values = {}
        if not isinstance(values, dict):
            raise fail(path or "config", f"must be a mapping, got {type(values).__name__}")
        self.values, self.path, self.taken = values, path, set()

    def field(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def has(self, key: str) -> bool:
        return key in self.values

    def take(
        self,
        key: str,
        kind: type | tuple[type, ...],
        default: Any = MISSING,
        check: Callable[[Any], str | None] | None = None,
    ) -> Any:
        """The value of ``key`` (``default`` if absent); ``check`` returns a reason to refuse or None."""
        self.taken.add(key)
        if key not in self.values or (self.values[key] is None and default is not MISSING):
            if default is MISSING:
                raise fail(self.field(key), "is required")
            return default
        value = self.values[key]
        if not is_kind(value, kind):
            raise fail(self.field(key), f"must be {describe(kind)}, got {value!r}")
        if isinstance(value, float) and not math.isfinite(value):
            raise fail(self.field(key), f"must be finite, got {value!r}")
        if isinstance(value, int) and not isinstance(value, bool) and float in _tuple(kind) and int not in _tuple(kind):
            value = float(value)
        if check is not None and value is not None:
            why = check(value)
            if why:
                raise fail(self.field(key), f"{why}, got {value!r}")
        return value

    def section(self, key: str) -> Section:
        self.taken.add(key)
        return Section(self.values.get(key), self.field(key))

    def finish(self) -> None:
        unknown = sorted(str(k) for k in self.values if k not in self.taken)
        if unknown:
            raise fail(self.field(unknown[0]), f"unknown key (known: {', '.join(sorted(self.taken))})")


def _tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def positive(value: Any) -> str | None:
    return None if value > 0 else "must be > 0"


def at_least(low: float) -> Callable[[Any], str | None]:
    return lambda value: None if value >= low else f"must be >= {low:g}"


def one_of(*choices: Any) -> Callable[[Any], str | None]:
    return lambda value: None if value in choices else f"must be one of {', '.join(map(str, choices))}"


def fraction(value: Any) -> str | None:
    return None if 0 < value < 1 else "must be in (0, 1)"
