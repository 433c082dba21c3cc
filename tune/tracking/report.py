"""The morning-after summary of a sweep, read back from MLflow alone."""

from __future__ import annotations

import shlex
from collections import Counter
from typing import Any

from mlflow import MlflowClient
from mlflow.entities import ViewType

from dmi.errors import SweepNotFound
from dmi.forms import FORM_FIELDS
from tune.summary import abs_error_key
from tune.tracking.runs import TAG_ROLE, TAG_SWEEP, child_runs, quoted, trial_status
from tune.tracking.uri import is_http, resolve_tracking_uri

ESTIMATES = (
    *("final_mi", "final_mi_stderr", "final_mi_orthogonal", "final_mi_orthogonal_stderr"),
    *("final_mi_cross", "final_mi_cross_stderr", "gt_mi"),
)
ERRORS = ("abs_error", "abs_error_orthogonal", "abs_error_cross", "objective_value")
FIDELITY = ("fidelity_spearman", "fidelity_regret", "defaults_abs_error")
ESTIMATE_KEYS = ESTIMATES + ERRORS + FIDELITY  # the parent run's metrics a summary shows


def sweep_summaries(tracking_uri: str, name: str) -> list[dict[str, Any]]:
    """Best trial, final estimates, trial counts and model of sweep ``name`` (of each task's, for several)."""
    client = MlflowClient(tracking_uri)
    experiments = client.search_experiments(view_type=ViewType.ACTIVE_ONLY)
    ids, named = [e.experiment_id for e in experiments], [e.experiment_id for e in experiments if e.name == name]
    parents = f"tags.`{TAG_ROLE}` = 'sweep'"
    query = f"tags.`{TAG_SWEEP}` = {quoted(name)} and {parents}"
    runs = client.search_runs(ids, query, order_by=["attributes.start_time DESC"], max_results=1) if ids else []
    if not runs and named:  # a multi-task sweep: every parent run of its experiment
        runs = client.search_runs(named, parents, order_by=["tags.`dmi.sweep_name` ASC"])
    if not runs:
        raise SweepNotFound(f"no sweep named {name!r} in {client.tracking_uri}")
    if is_http(tracking_uri):
        ui = f"open {tracking_uri} in a browser (an MLflow server already serves the UI)"
    else:  # bound to the local host only
        ui = f"mlflow ui --backend-store-uri {shlex.quote(tracking_uri)} --host 127.0.0.1 --port 5000"
    summaries = []
    for parent in runs:
        tags, metrics, info = parent.data.tags, parent.data.metrics, parent.info
        experiment = client.get_experiment(info.experiment_id)
        children = child_runs(client, info.experiment_id, info.run_id)
        recorded = {**parent.data.params, **tags}  # a later finish that chose another best trial: tags
        summary = {
            "sweep_name": tags.get(TAG_SWEEP),
            "tracking_uri": client.tracking_uri,
            "experiment": experiment.name,
            "experiment_id": experiment.experiment_id,
            "parent_run_id": info.run_id,
            "status": info.status,
            "task": tags.get("dmi.task"),
            "objective": tags.get("dmi.objective"),
            "best_trial_id": tags.get("dmi.best_trial_id"),
            "best_config": {k.removeprefix("best."): v for k, v in recorded.items() if k.startswith("best.")},
            "estimates": {key: metrics[key] for key in ESTIMATE_KEYS if key in metrics},
            "trial_counts": dict(sorted(Counter(trial_status(run) for run in children).items())),
            "model": {
                "name": tags.get("dmi.model_name"),
                "version": tags.get("dmi.model_version"),
                "champion_version": tags.get("dmi.champion_version"),
            },
            "ui_command": ui,
        }
        summaries.append(summary)
    return summaries


def format_summary(summary: dict[str, Any]) -> str:
    est = summary["estimates"]
    where = f"experiment {summary['experiment']}, run {summary['parent_run_id']}, {summary['status']}"
    lines = [f"sweep {summary['sweep_name']}  ({where})"]
    if summary["task"]:
        truth = f", true MI {est['gt_mi']:.4f} nats" if "gt_mi" in est else ""
        lines.append(f"task      {summary['task']}{truth}")
    counts = ", ".join(f"{n} {status}" for status, n in summary["trial_counts"].items()) or "none recorded"
    lines.append(f"trials    {counts}")
    if summary["best_trial_id"] and summary["best_trial_id"] != "None":
        value = est.get("objective_value")
        objective = f"  {summary['objective']} = {value:.4g}" if value is not None else ""
        lines.append(f"best      trial {summary['best_trial_id']}{objective}")
        lines.extend(f"            {key} = {value}" for key, value in sorted(summary["best_config"].items()))
    for label, field in FORM_FIELDS.items():
        key = f"final_{field}"
        if key in est:
            stderr = est.get(f"{key}_stderr")
            spread = f" ± {stderr:.4f}" if stderr is not None else ""
            error_key = abs_error_key(field)
            error = f"  (|error| {est[error_key]:.4f})" if error_key in est else ""
            lines.append(f"MI        {label:<10} {est[key]:.4f}{spread} nats{error}")
    if "fidelity_spearman" in est:
        regret = f", regret of the pick {est['fidelity_regret']:.4f} nats" if "fidelity_regret" in est else ""
        lines.append(f"spearman({summary['objective']}, |error|) over trials: {est['fidelity_spearman']:.3f}{regret}")
    if "defaults_abs_error" in est:
        lines.append(f"library defaults |error| on the same data: {est['defaults_abs_error']:.4f}")
    model = summary["model"]
    if model["name"]:
        champion = f"champion: version {model['champion_version']}"
        lines.append(f"model     models:/{model['name']}/{model['version']}  ({champion})")
    lines.append(f"MLflow UI {summary['ui_command']}")
    return "\n".join(lines)


def sweep_tracking_uri(name: str, storage: str | None, explicit: str | None) -> str:
    """The store a sweep was recorded in, resolved as the driver did (with the config it saved)."""
    from tune.storage import join, read_json, resolve_storage
    from tune.summary import CONFIG_FILE

    root = resolve_storage(storage)
    saved = read_json(join(root, name, CONFIG_FILE)) or {}
    return resolve_tracking_uri(explicit, saved, root)
