"""The morning-after summary of a sweep, read back from MLflow alone."""

from __future__ import annotations

import shlex
from collections import Counter
from typing import Any

from mlflow import MlflowClient
from mlflow.entities import ViewType

from tune.tracking.runs import TAG_ROLE, TAG_SWEEP, TAG_TRIAL_STATUS, child_runs, quoted
from tune.tracking.uri import is_http

ESTIMATE_KEYS = (
    "final_mi",
    "final_mi_stderr",
    "final_mi_orthogonal",
    "final_mi_orthogonal_stderr",
    "gt_mi",
    "abs_error",
    "abs_error_orthogonal",
    "objective_value",
    "fidelity_spearman",
    "fidelity_regret",
    "defaults_abs_error",
)


class SweepNotFound(LookupError):
    """No parent run carries this sweep name in the store."""


def find_sweep_runs(client: MlflowClient, name: str) -> list:
    """Parent runs of sweep ``name``; for a multi-task sweep, every parent run of its experiment."""
    experiments = client.search_experiments(view_type=ViewType.ACTIVE_ONLY)
    ids = [e.experiment_id for e in experiments]
    sweep_filter = f"tags.`{TAG_ROLE}` = 'sweep'"
    runs = []
    if ids:
        runs = client.search_runs(
            ids,
            filter_string=f"tags.`{TAG_SWEEP}` = {quoted(name)} and {sweep_filter}",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
    named = [e.experiment_id for e in experiments if e.name == name]
    if not runs and named:
        runs = client.search_runs(named, filter_string=sweep_filter, order_by=["tags.`dmi.sweep_name` ASC"])
    if not runs:
        raise SweepNotFound(f"no sweep named {name!r} in {client.tracking_uri}")
    return runs


def trial_status(run) -> str:
    """finished / stopped_early / failed as recorded, else what MLflow's run status says."""
    tagged = run.data.tags.get(TAG_TRIAL_STATUS)
    if tagged:
        return tagged
    by_status = {"RUNNING": "running", "FAILED": "failed", "KILLED": "interrupted"}
    return by_status.get(run.info.status, "finished")


def sweep_summaries(tracking_uri: str, name: str) -> list[dict[str, Any]]:
    client = MlflowClient(tracking_uri)
    return [sweep_summary(client, parent) for parent in find_sweep_runs(client, name)]


def sweep_summary(client: MlflowClient, parent) -> dict[str, Any]:
    """Best trial, final estimates, trial counts and model of one sweep, as plain values."""
    tracking_uri = client.tracking_uri
    sweep_name = parent.data.tags.get(TAG_SWEEP)
    experiment = client.get_experiment(parent.info.experiment_id)
    children = child_runs(client, parent.info.experiment_id, parent.info.run_id)
    tags, metrics, params = parent.data.tags, parent.data.metrics, parent.data.params
    best_config = {key[len("best.") :]: value for key, value in params.items() if key.startswith("best.")}
    best_config.update({key[len("best.") :]: value for key, value in tags.items() if key.startswith("best.")})
    return {
        "sweep_name": sweep_name,
        "tracking_uri": tracking_uri,
        "experiment": experiment.name,
        "experiment_id": experiment.experiment_id,
        "parent_run_id": parent.info.run_id,
        "status": parent.info.status,
        "task": tags.get("dmi.task"),
        "objective": tags.get("dmi.objective"),
        "best_trial_id": tags.get("dmi.best_trial_id"),
        "best_config": best_config,
        "estimates": {key: metrics[key] for key in ESTIMATE_KEYS if key in metrics},
        "trial_counts": dict(sorted(Counter(trial_status(run) for run in children).items())),
        "model": {
            "name": tags.get("dmi.model_name"),
            "version": tags.get("dmi.model_version"),
            "champion_version": tags.get("dmi.champion_version"),
        },
        "ui_command": ui_command(tracking_uri),
    }


def ui_command(tracking_uri: str) -> str:
    """How to look at the store in a browser, bound to the local host only."""
    if is_http(tracking_uri):
        return f"open {tracking_uri} in a browser (an MLflow server already serves the UI)"
    return f"mlflow ui --backend-store-uri {shlex.quote(tracking_uri)} --host 127.0.0.1 --port 5000"


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
        for key, value in sorted(summary["best_config"].items()):
            lines.append(f"            {key} = {value}")
    for label, key in (("direct", "final_mi"), ("orthogonal", "final_mi_orthogonal")):
        if key in est:
            stderr = est.get(f"{key}_stderr")
            spread = f" ± {stderr:.4f}" if stderr is not None else ""
            error_key = "abs_error" if key == "final_mi" else "abs_error_orthogonal"
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
    """The store a sweep was recorded in, resolved as the driver resolved it.

    ``--tracking-uri`` > the ``tracking_uri`` of the config the driver saved with the
    experiment > ``$MLFLOW_TRACKING_URI`` > ``mlflow.db`` in the storage folder.
    """
    from tune.storage import join, read_json, resolve_storage
    from tune.summary import CONFIG_FILE
    from tune.tracking.uri import resolve_tracking_uri

    root = resolve_storage(storage)
    saved = read_json(join(root, name, CONFIG_FILE)) or {}
    return resolve_tracking_uri(explicit, saved, root)
