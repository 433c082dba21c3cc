"""Tuned estimator configs for the accuracy benchmark (``--configs FILE``), each checked on load.

Accepted shapes (JSON or YAML):

- what ``dmi-tune best NAME --json`` prints for one sweep: ``{"kind": "experiment", "name": ...,
  "best_estimator_config": {...}}`` (or only ``best_config``);
- the same for a multi-task sweep: ``{"kind": "multi_task", "experiments": [{"name", "best_config"}, ...]}``;
- a mapping of names to mappings of ``EstimatorConfig`` fields;
- one plain mapping of ``EstimatorConfig`` fields, named after the file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from dmi.config import ConfigError, EstimatorConfig


class ConfigFileError(ValueError):
    """A configs file that cannot be read or holds a config that cannot work."""


def _from_summary(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    if doc.get("kind") == "multi_task":
        entries = doc.get("experiments") or []
        return {e["name"]: e["best_config"] for e in entries if isinstance(e, dict) and e.get("best_config")}
    config = doc.get("best_estimator_config") or doc.get("best_config")
    return {str(doc.get("name", "best")): config} if config else {}


def parse_configs(doc: Any, default_name: str) -> dict[str, dict[str, Any]]:
    """Name → mapping of ``EstimatorConfig`` fields, from any of the accepted shapes."""
    if not isinstance(doc, dict) or not doc:
        raise ConfigFileError(
            "expected a mapping (a sweep summary, named configs, or EstimatorConfig fields)"
        )
    if doc.get("kind") in ("experiment", "multi_task"):
        found = _from_summary(doc)
        if not found:
            raise ConfigFileError("the sweep summary holds no best config (is the sweep finished?)")
        return found
    if all(isinstance(v, dict) for v in doc.values()):
        return {str(k): v for k, v in doc.items()}
    return {default_name: doc}


def load_configs(path: str | Path) -> dict[str, EstimatorConfig]:
    """Read and validate every config of ``path``; any problem is a ``ConfigFileError`` naming it."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigFileError(f"{path}: cannot read ({exc.strerror or exc})") from None
    try:
        doc = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        kind = "JSON" if path.suffix == ".json" else "YAML"
        raise ConfigFileError(f"{path}: not valid {kind} ({' '.join(str(exc).split())})") from None
    try:
        named = parse_configs(doc, path.stem)
    except ConfigFileError as exc:
        raise ConfigFileError(f"{path}: {exc}") from None
    configs = {}
    for name, values in named.items():
        if not isinstance(values, dict):
            raise ConfigFileError(f"{path}: config {name!r} is not a mapping")
        try:
            configs[name] = EstimatorConfig.from_dict(values)
        except (ConfigError, TypeError) as exc:
            raise ConfigFileError(f"{path}: config {name!r}: {exc}") from None
    return configs
