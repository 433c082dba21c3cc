"""The best estimator as a registered MLflow pyfunc model (``mlflow.pytorch`` would export ``forward`` only).

``load_model("models:/<name>@champion").predict(df)``: raw columns ``x0.., y0..`` in, MI estimates and domain out.
"""

from __future__ import annotations

import importlib.metadata
import logging
import math
import os
import tempfile
import warnings
from collections.abc import Iterable
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
OUTPUT_COLUMNS = ("mi", "mi_orthogonal", "mi_stderr", "mi_orthogonal_stderr", "mi_cross", "mi_cross_stderr")
TAG_OBJECTIVE = "dmi.objective"
TAG_OBJECTIVE_VALUE = "dmi.objective_value"
TAG_TRIAL = "dmi.best_trial_id"
REQUIREMENTS = ("mlflow", "torch", "lightning", "numpy", "pandas", "pyyaml")
PREPROCESSING = ("x_shift", "x_scale", "y_shift", "y_scale")  # statistics the module applies to raw data itself
DOMAIN_COLUMNS = [ColSpec("boolean", "in_domain"), ColSpec("double", "domain_score")]
PREDICT_PARAMS = (("seed", "long", 0), ("n_logsnr", "long", 0), ("strict", "boolean", False), ("threads", "long", 0))


def feature_columns(dim_x: int, dim_y: int) -> list[str]:
    return [f"x{i}" for i in range(dim_x)] + [f"y{i}" for i in range(dim_y)]


class DiffusionMIModel(mlflow.pyfunc.PythonModel):
    """A trained diffusion MI estimator: a sample in, its MI estimates out."""

    def load_context(self, context: Any) -> None:
        from dmi.training import load_module

        self.module = load_module(context.artifacts["checkpoint"])

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        """``params``: ``seed``, ``n_logsnr`` (0: the model's own), ``strict`` (refuse data out of domain) and
        ``threads`` (torch's CPU threads; 0: ``dmi.threads.DEFAULT_THREADS``, which
        estimates at one thread: nothing trains here to show that more would pay).
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
        seed = int(params.get("seed", 0))
        with torch_threads(int(params["threads"]) if params.get("threads") else DEFAULT_THREADS):
            domain = self.module.check_domain(x, y, seed=seed)
            if domain.in_domain is not True:
                if params.get("strict") and domain.in_domain is False:
                    raise ValueError(f"refused (strict): {domain.message()}")
                warnings.warn(f"dmi: {domain.message()}", EstimateWarning, stacklevel=2)
            estimate = self.module.estimate(x, y, n_logsnr=params.get("n_logsnr") or None, seed=seed)
        row: dict[str, Any] = {key: getattr(estimate, key) for key in OUTPUT_COLUMNS}
        row.update(in_domain=domain.in_domain, domain_score=domain.domain_score)
        return pd.DataFrame([row])


def package_versions(names: Iterable[str]) -> dict[str, str]:
    """The installed versions of ``names`` (those not installed left out)."""
    versions = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return versions


@dataclass
class RegisteredModel:
    name: str
    version: str
    champion_version: str | None
    promoted: bool


def log_and_register(
    client: MlflowClient,
    parent_run_id: str,
    checkpoint: str | os.PathLike,
    name: str,
    objective: str | None,
    objective_value: float | None,
    best_trial_id: str | None,
) -> RegisteredModel:
    """Log the checkpoint as a pyfunc on the parent run and register it (once per parent run and best trial)."""
    from dmi.training import load_module

    ckpt = Path(checkpoint)  # the Lightning checkpoint, or the Tune checkpoint folder holding it
    if not ckpt.is_file():
        candidates = sorted(ckpt.glob("*.ckpt")) or [p for p in sorted(ckpt.iterdir()) if p.is_file()]
        if len(candidates) != 1:
            raise FileNotFoundError(f"expected one checkpoint file in {ckpt}, found {len(candidates)}")
        ckpt = candidates[0]
    query = f"name = '{name}' and run_id = '{parent_run_id}'"
    existing = [v for v in client.search_model_versions(query) if v.tags.get(TAG_TRIAL) == str(best_trial_id)]
    if existing:
        version = str(existing[0].version)
    else:
        module = load_module(ckpt)
        signature = ModelSignature(
            inputs=Schema([ColSpec("double", column) for column in feature_columns(module.dim_x, module.dim_y)]),
            outputs=Schema([ColSpec("double", column) for column in OUTPUT_COLUMNS] + DOMAIN_COLUMNS),
            params=ParamSchema([ParamSpec(*spec) for spec in PREDICT_PARAMS]),
        )
        metadata = {"dim_x": module.dim_x, "dim_y": module.dim_y, "estimator_config": module.cfg.as_dict()}
        metadata["preprocessing"] = {key: getattr(module, key).tolist() for key in PREPROCESSING}
        metadata.update(objective=objective, objective_value=objective_value, best_trial_id=best_trial_id)
        versions = package_versions(REQUIREMENTS)
        with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
            # The signature is explicit; an input example would only re-run the estimator.
            warnings.filterwarnings("ignore", message=".*input example was not provided.*")
            local = Path(tmp) / MODEL_ARTIFACT
            mlflow.pyfunc.save_model(
                path=str(local),
                python_model=DiffusionMIModel(),
                artifacts={"checkpoint": str(ckpt)},
                signature=signature,
                pip_requirements=[f"{n}=={versions[n]}" if n in versions else n for n in REQUIREMENTS],
                metadata=metadata,
            )
            # Client calls only: the fluent log_model would set the process-wide tracking URI.
            with artifacts_via(client.tracking_uri):
                client.log_artifacts(parent_run_id, str(local), artifact_path=MODEL_ARTIFACT)
        try:
            client.create_registered_model(name, description="Diffusion MI estimators from dmi sweeps")
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        tags = {"dmi.parent_run_id": parent_run_id, TAG_TRIAL: str(best_trial_id), TAG_OBJECTIVE: str(objective)}
        if objective_value is not None:
            tags[TAG_OBJECTIVE_VALUE] = repr(float(objective_value))
        source = f"{client.get_run(parent_run_id).info.artifact_uri}/{MODEL_ARTIFACT}"
        version = str(client.create_model_version(name, source, run_id=parent_run_id, tags=tags).version)
    champion, promoted = promote_if_better(client, name, version, objective, objective_value)
    return RegisteredModel(name=name, version=version, champion_version=champion, promoted=promoted)


def promote_if_better(
    client: MlflowClient, name: str, version: str, objective: str | None, objective_value: float | None
) -> tuple[str | None, bool]:
    """Move ``champion`` to ``version`` if its objective is lower (and of the same name); (champion, moved)."""
    try:
        current = client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        current = None
    current_value = math.nan  # no champion (or no value): any finite objective beats it
    if current is not None:
        if str(current.version) == str(version):
            return str(version), False
        if current.tags.get(TAG_OBJECTIVE) != str(objective):
            chosen_by = current.tags.get(TAG_OBJECTIVE)
            log.warning("champion of %s was chosen by %s, this model by %s: champion kept", name, chosen_by, objective)
            return str(current.version), False
        current_value = float(current.tags.get(TAG_OBJECTIVE_VALUE, "nan"))
    if objective_value is None or not math.isfinite(objective_value) or current_value <= objective_value:
        return (None if current is None else str(current.version)), False
    client.set_registered_model_alias(name, CHAMPION, str(version))
    return str(version), True
