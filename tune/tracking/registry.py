"""The best estimator as an MLflow pyfunc model, registered, with a ``champion`` alias.

``mlflow.pyfunc.load_model("models:/<name>@champion").predict(df)`` takes a sample as
columns ``x0..x{dx-1}, y0..y{dy-1}`` and returns one row of MI estimates (nats), with
``in_domain`` and ``domain_score``: whether the sample is like the data the estimator was
selected on (``dmi.domain``). A sample far outside gets a warning, and with
``params={"strict": True}`` a refusal (ValueError) instead of an estimate. The
checkpoint travels as a model artifact. It holds the weights, the preprocessing
statistics (buffers), which the module applies itself so that callers pass raw data, and
the domain reference. ``mlflow.pytorch.log_model`` would export ``forward`` only: a pyfunc
is the estimator.
"""

from __future__ import annotations

import importlib.metadata
import logging
import math
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

from tune.tracking.uri import artifacts_via

log = logging.getLogger(__name__)

CHAMPION = "champion"
MODEL_ARTIFACT = "estimator"
OUTPUT_COLUMNS = ("mi", "mi_orthogonal", "mi_stderr", "mi_orthogonal_stderr")
DOMAIN_COLUMNS = ("in_domain", "domain_score")
TAG_OBJECTIVE = "dmi.objective"
TAG_OBJECTIVE_VALUE = "dmi.objective_value"
TAG_PARENT = "dmi.parent_run_id"
TAG_TRIAL = "dmi.best_trial_id"
REQUIREMENTS = ("mlflow", "torch", "lightning", "numpy", "pandas", "pyyaml")


def feature_columns(dim_x: int, dim_y: int) -> list[str]:
    return [f"x{i}" for i in range(dim_x)] + [f"y{i}" for i in range(dim_y)]


class DiffusionMIModel(mlflow.pyfunc.PythonModel):
    """A trained diffusion MI estimator: a sample in, its MI estimates out."""

    def load_context(self, context: Any) -> None:
        from dmi.training import load_module

        self.module = load_module(context.artifacts["checkpoint"])

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        """One row: ``mi``, ``mi_orthogonal``, their standard errors, ``in_domain`` and ``domain_score``.

        ``params``: ``seed``, ``n_logsnr`` (0: the model's own), ``strict`` (refuse data out of
        domain) and ``threads`` (torch's CPU threads; 0: ``dmi.threads.DEFAULT_THREADS``).
        """
        from dmi.diagnostics import EstimateWarning
        from dmi.threads import DEFAULT_THREADS, torch_threads

        columns = feature_columns(self.module.dim_x, self.module.dim_y)
        frame = pd.DataFrame(model_input)
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise ValueError(f"input lacks columns {', '.join(missing)}")
        x = frame[columns[: self.module.dim_x]].to_numpy(dtype="float64")
        y = frame[columns[self.module.dim_x :]].to_numpy(dtype="float64")
        params = params or {}
        n_logsnr = params.get("n_logsnr") or None
        seed = int(params.get("seed", 0))
        with torch_threads(int(params.get("threads") or DEFAULT_THREADS)):
            domain = self.module.check_domain(x, y, seed=seed)
            if domain.in_domain is not True:
                if params.get("strict") and domain.in_domain is False:
                    raise ValueError(f"refused (strict): {domain.message()}")
                warnings.warn(f"dmi: {domain.message()}", EstimateWarning, stacklevel=2)
            estimate = self.module.estimate(x, y, n_logsnr=n_logsnr, seed=seed)
        row: dict[str, Any] = {key: getattr(estimate, key) for key in OUTPUT_COLUMNS}
        row.update(in_domain=domain.in_domain, domain_score=domain.domain_score)
        return pd.DataFrame([row])


def model_signature(dim_x: int, dim_y: int) -> ModelSignature:
    inputs = Schema([ColSpec("double", name) for name in feature_columns(dim_x, dim_y)])
    outputs = Schema(
        [ColSpec("double", name) for name in OUTPUT_COLUMNS]
        + [ColSpec("boolean", "in_domain"), ColSpec("double", "domain_score")]
    )
    params = ParamSchema(
        [
            ParamSpec("seed", "long", 0),
            ParamSpec("n_logsnr", "long", 0),
            ParamSpec("strict", "boolean", False),
            ParamSpec("threads", "long", 0),
        ]
    )
    return ModelSignature(inputs=inputs, outputs=outputs, params=params)


def pinned_requirements() -> list[str]:
    pins = []
    for name in REQUIREMENTS:
        try:
            pins.append(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            pins.append(name)
    return pins


def checkpoint_file(best_checkpoint: str | os.PathLike) -> Path:
    """The Lightning checkpoint inside a Tune checkpoint folder (or the file itself)."""
    path = Path(best_checkpoint)
    if path.is_file():
        return path
    candidates = sorted(path.glob("*.ckpt")) or [p for p in sorted(path.iterdir()) if p.is_file()]
    if len(candidates) != 1:
        raise FileNotFoundError(f"expected one checkpoint file in {path}, found {len(candidates)}")
    return candidates[0]


def default_model_name(task_name: str | None, sweep_name: str) -> str:
    return f"dmi-{task_name or sweep_name}"


@dataclass
class RegisteredModel:
    name: str
    version: str
    champion_version: str | None
    promoted: bool


def beats(new: float | None, current: float | None, mode: str = "min") -> bool:
    if new is None or not math.isfinite(new):
        return False
    if current is None or not math.isfinite(current):
        return True
    return new < current if mode == "min" else new > current


def tag_float(tags: dict[str, str], key: str) -> float | None:
    try:
        return float(tags[key])
    except (KeyError, TypeError, ValueError):
        return None


def log_and_register(
    client: MlflowClient,
    parent_run_id: str,
    checkpoint: str | os.PathLike,
    name: str,
    objective: str | None,
    objective_value: float | None,
    best_trial_id: str | None,
    mode: str = "min",
) -> RegisteredModel:
    """Log the checkpoint as a pyfunc on the parent run, register it, maybe move ``champion``.

    Idempotent per (parent run, best trial): a version already registered for them is reused,
    so a replayed ``finish`` does not add a version.
    """
    from dmi.training import load_module

    ckpt = checkpoint_file(checkpoint)
    existing = [
        v
        for v in client.search_model_versions(f"name = '{name}' and run_id = '{parent_run_id}'")
        if v.tags.get(TAG_TRIAL) == str(best_trial_id)
    ]
    if existing:
        version = existing[0].version
    else:
        module = load_module(ckpt)
        metadata = {
            "dim_x": module.dim_x,
            "dim_y": module.dim_y,
            "estimator_config": module.cfg.as_dict(),
            "preprocessing": {
                key: getattr(module, key).tolist() for key in ("x_shift", "x_scale", "y_shift", "y_scale")
            },
            "objective": objective,
            "objective_value": objective_value,
            "best_trial_id": best_trial_id,
        }
        tags = {TAG_PARENT: parent_run_id, TAG_TRIAL: str(best_trial_id), TAG_OBJECTIVE: str(objective)}
        if objective_value is not None:
            tags[TAG_OBJECTIVE_VALUE] = repr(float(objective_value))
        version = register_pyfunc(client, parent_run_id, name, ckpt, module, metadata, tags)
    champion, promoted = promote_if_better(client, name, version, objective, objective_value, mode)
    return RegisteredModel(name=name, version=str(version), champion_version=champion, promoted=promoted)


def register_pyfunc(
    client: MlflowClient,
    run_id: str,
    name: str,
    ckpt: Path,
    module: Any,
    metadata: dict[str, Any],
    tags: dict[str, str],
) -> str:
    """Save the pyfunc, upload it under the run's ``estimator/`` artifacts, register a version.

    Only ``MlflowClient`` calls: the fluent ``log_model`` would set the process-wide tracking
    URI (and ``$MLFLOW_TRACKING_URI``) behind the driver's back.
    """
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        # The signature is explicit; an input example would only re-run the estimator.
        warnings.filterwarnings("ignore", message=".*input example was not provided.*")
        local = Path(tmp) / MODEL_ARTIFACT
        mlflow.pyfunc.save_model(
            path=str(local),
            python_model=DiffusionMIModel(),
            artifacts={"checkpoint": str(ckpt)},
            signature=model_signature(module.dim_x, module.dim_y),
            pip_requirements=pinned_requirements(),
            metadata=metadata,
        )
        with artifacts_via(client.tracking_uri):
            client.log_artifacts(run_id, str(local), artifact_path=MODEL_ARTIFACT)
    try:
        client.create_registered_model(name, description="Diffusion MI estimators from dmi sweeps")
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    source = f"{client.get_run(run_id).info.artifact_uri}/{MODEL_ARTIFACT}"
    return str(client.create_model_version(name, source, run_id=run_id, tags=tags).version)


def promote_if_better(
    client: MlflowClient,
    name: str,
    version: str,
    objective: str | None,
    objective_value: float | None,
    mode: str = "min",
) -> tuple[str | None, bool]:
    """Point ``champion`` at ``version`` only if its objective beats the current champion's.

    Objectives of different names are not comparable: the champion then stays.
    Returns (the champion version afterwards, whether it moved).
    """
    try:
        current = client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        current = None
    if current is not None and str(current.version) == str(version):
        return str(version), False
    if current is not None and current.tags.get(TAG_OBJECTIVE) != str(objective):
        log.warning(
            "champion of %s was chosen by %s, this model by %s: champion kept",
            name,
            current.tags.get(TAG_OBJECTIVE),
            objective,
        )
        return str(current.version), False
    current_value = None if current is None else tag_float(current.tags, TAG_OBJECTIVE_VALUE)
    if beats(objective_value, current_value, mode):
        client.set_registered_model_alias(name, CHAMPION, str(version))
        return str(version), True
    return (None if current is None else str(current.version)), False
