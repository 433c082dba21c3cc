"""The end of a sweep on its parent run: best trial, final estimates, counts, files, model.

Written so that it can run again from the start (a replay from the journal, or a rerun of
a finished sweep) without duplicating anything: params are only added, metrics carry the
record's timestamp, artifacts overwrite, the model version is reused per (run, trial).
"""

from __future__ import annotations

import logging
import math
import tempfile
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mlflow import MlflowClient
from mlflow.entities import Metric, RunTag

from tune.tracking.artifacts import (
    fidelity_plot,
    mi_curve_plot,
    optuna_plots,
    spectrum_artifacts,
    study_from_results,
    write_results_table,
    write_yaml,
)
from tune.tracking.registry import log_and_register
from tune.tracking.runs import TAG_TRIAL_ID, TAG_TRIAL_STATUS, child_runs, flatten_params, log_params_tolerant
from tune.tracking.uri import artifacts_via

log = logging.getLogger(__name__)

ESTIMATE_FIELDS = ("mi", "mi_orthogonal", "mi_stderr", "mi_orthogonal_stderr")
RANKING_FIELDS = ("spearman", "regret", "pick_abs_error", "best_abs_error")


def finite_number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def summary_metrics(summary: Mapping[str, Any]) -> dict[str, float]:
    """The numbers of a driver summary under flat metric names.

    Reads flat keys (``final_mi``, ``gt_mi``, ``objective_value``, ...) or the driver's
    nested ones (``final_estimate.mi``, ``true_mi``, ``best_metrics.objective``,
    ``ranking.*``); whatever is missing is left out.
    """
    final = summary.get("final_estimate") or {}
    ranking = summary.get("ranking") or {}
    best_metrics = summary.get("best_metrics") or {}
    found: dict[str, Any] = {f"final_{f}": summary.get(f"final_{f}", final.get(f)) for f in ESTIMATE_FIELDS}
    found["gt_mi"] = summary.get("gt_mi", summary.get("true_mi"))
    found["abs_error"] = summary.get("abs_error")
    found["abs_error_orthogonal"] = summary.get("abs_error_orthogonal")
    found["objective_value"] = summary.get("objective_value", best_metrics.get("objective"))
    # How well the objective (and each candidate reported) ranked the trials by true error.
    found.update({f"fidelity_{key}": ranking.get(key) for key in RANKING_FIELDS})
    for name, quality in (ranking.get("candidates") or {}).items():
        found.update({f"fidelity.{name}.{key}": quality.get(key) for key in ("spearman", "regret")})
    defaults = summary.get("library_defaults") or {}
    for key in ("mi", "mi_orthogonal", "mi_stderr", "abs_error", "trained_steps"):
        found[f"defaults_{key}"] = defaults.get(key)
    found["wall_s"] = summary.get("wall_s")
    diag = summary.get("final_diagnostics") or {}
    for key in ("selected_step", "trained_steps", "stopped_early", "still_improving", "nll_gap", "train_nll",
                "val_nll", "forms_disagreement_se"):
        if key in diag:
            found[f"final_{key}"] = float(diag[key]) if isinstance(diag[key], bool) else diag[key]
    if diag:
        found["final_n_warnings"] = len(diag.get("warnings", []))
    domain = summary.get("final_domain") or {}  # the test rows against the selection's reference
    if domain:
        found["final_domain_score"] = domain.get("domain_score")
        found["final_in_domain"] = None if domain.get("in_domain") is None else float(domain["in_domain"])
    found["budget_spent_s"] = summary.get("budget_spent_s")
    numbers = {key: finite_number(value) for key, value in found.items()}
    return {key: value for key, value in numbers.items() if value is not None}


def objective_name(summary: Mapping[str, Any], result_grid: Any = None) -> str:
    """The metric trials were judged by: the summary's objective if trials reported it, else val_loss."""
    named = (summary.get("metric"), summary.get("objective"), "val_loss")
    candidates = [c for c in named if isinstance(c, str)]
    if result_grid is not None:
        for name in candidates:
            if any(name in (r.metrics or {}) for r in result_grid):
                return name
    return candidates[0]


def best_result(result_grid: Any, best_trial_id: str | None, metric: str, mode: str) -> Any:
    """The driver's best trial (by id), else Tune's best by ``metric``."""
    for result in result_grid:
        if best_trial_id is not None and (result.metrics or {}).get("trial_id") == best_trial_id:
            return result
    try:
        return result_grid.get_best_result(metric=metric, mode=mode, scope="all", filter_nan_and_inf=True)
    except (RuntimeError, KeyError, ValueError):
        return None


def trial_counts(client: MlflowClient, experiment_id: str, parent_run_id: str) -> dict[str, int]:
    """Trials by recorded status (finished / stopped_early / failed / ...), read from the child runs."""
    statuses = []
    for child in child_runs(client, experiment_id, parent_run_id):
        tagged = child.data.tags.get(TAG_TRIAL_STATUS)
        if child.info.status == "RUNNING":
            # Cut short by an interrupted driver: closed here, reopened if the sweep resumes.
            client.set_tag(child.info.run_id, TAG_TRIAL_STATUS, "interrupted")
            client.set_terminated(child.info.run_id, status="KILLED")
            tagged = "interrupted"
        statuses.append(tagged or child.info.status.lower())
    return dict(sorted(Counter(statuses).items()))


def record_finish(client: MlflowClient, record: Mapping[str, Any], result_grid: Any) -> dict[str, Any]:
    """Everything ``SweepTracker.finish`` writes; returns what it registered."""
    run_id = record["parent_run_id"]
    summary = dict(record["summary"])
    mode = summary.get("mode", "min")
    metric = objective_name(summary, result_grid)
    objective = str(summary.get("objective") or metric)
    best_trial_id = summary.get("best_trial_id")
    # An interrupted or failed sweep names no best trial: none is guessed for it.
    named = best_trial_id is not None or record["status"] == "FINISHED"
    best = best_result(result_grid, best_trial_id, metric, mode) if named else None
    best_config = summary.get("best_config") or (best.config if best is not None else {}) or {}
    if best is not None and best_trial_id is None:
        best_trial_id = (best.metrics or {}).get("trial_id")

    best_params = flatten_params(best_config, prefix="best.")
    conflicts = log_params_tolerant(client, run_id, best_params)
    tags = {key: best_params[key] for key in conflicts}  # a later finish chose another best trial
    tags.update({"dmi.best_trial_id": str(best_trial_id), "dmi.objective": objective})
    tags["dmi.sweep_status"] = record["status"]
    if summary.get("state"):
        tags["dmi.sweep_state"] = str(summary["state"])
    final_warnings = (summary.get("final_diagnostics") or {}).get("warnings")
    if final_warnings:
        tags["dmi.final_warnings"] = " | ".join(final_warnings)[:4000]

    metrics = summary_metrics(summary)
    if "gt_mi" not in metrics and finite_number(record.get("true_mi")) is not None:
        metrics["gt_mi"] = float(record["true_mi"])
    counts = trial_counts(client, record["experiment_id"], run_id) or dict(summary.get("trial_counts") or {})
    metrics.update({f"trials_{status}": float(n) for status, n in counts.items()})
    metrics["trials_total"] = float(sum(counts.values()))
    stamp = int(record["time"])
    client.log_batch(
        run_id,
        metrics=[Metric(key, value, stamp, 0) for key, value in metrics.items()],
        tags=[RunTag(key, value) for key, value in tags.items()],
    )

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write_yaml(folder / "best_config.yaml", best_config)
        if summary.get("best_estimator_config"):
            write_yaml(folder / "best_estimator_config.yaml", summary["best_estimator_config"])
        write_results_table(folder / "results.csv", result_grid)
        plots = folder / "plots"
        plots.mkdir()
        optuna_plots(study_from_results(result_grid, metric, mode), plots, target_name=metric)
        fidelity_plot(summary, plots / "objective_vs_abs_error.png")
        spectrum_artifacts(summary, folder, plots / "best_spectrum.png", metrics.get("gt_mi"))
        if best is not None:
            curve = plots / "best_trial_mi.png"
            mi_curve_plot(best.metrics_dataframe, curve, metrics.get("gt_mi"), f"best trial {best_trial_id}")
        with artifacts_via(client.tracking_uri):
            client.log_artifacts(run_id, str(folder))
            log_spectrum_to_best_trial(client, record["experiment_id"], run_id, best_trial_id, folder)

    outcome: dict[str, Any] = {"parent_run_id": run_id, "best_trial_id": best_trial_id}
    outcome["trial_counts"] = counts
    if record.get("best_checkpoint_dir"):
        registered = log_and_register(
            client,
            run_id,
            record["best_checkpoint_dir"],
            record["model_name"],
            objective=objective,
            objective_value=metrics.get("objective_value"),
            best_trial_id=None if best_trial_id is None else str(best_trial_id),
            mode=mode,
        )
        model_tags = {
            "dmi.model_name": registered.name,
            "dmi.model_version": registered.version,
            "dmi.champion_version": str(registered.champion_version),
            "dmi.champion_moved": str(registered.promoted).lower(),
        }
        client.log_batch(run_id, tags=[RunTag(key, value) for key, value in model_tags.items()])
        outcome.update(
            model_name=registered.name,
            model_version=registered.version,
            champion_version=registered.champion_version,
            champion_moved=registered.promoted,
        )
    client.set_terminated(run_id, status=record["status"])
    return outcome


def replay_finish(record: Mapping[str, Any]) -> dict[str, Any]:
    """Apply a journaled ``finish``: the result grid is read back from the experiment folder."""
    from ray.tune import ExperimentAnalysis, ResultGrid

    summary = record["summary"]
    analysis = ExperimentAnalysis(
        record["experiment_path"],
        default_metric=objective_name(summary),
        default_mode=summary.get("mode", "min"),
    )
    return record_finish(MlflowClient(record["tracking_uri"]), record, ResultGrid(analysis))


def log_spectrum_to_best_trial(
    client: MlflowClient, experiment_id: str, parent_run_id: str, best_trial_id: Any, folder: Path
) -> None:
    """The final estimate's spectrum also under the best trial's own run (``spectrum/``)."""
    files = [folder / "best_spectrum.json", folder / "plots" / "best_spectrum.png"]
    if best_trial_id is None or not files[0].exists():
        return
    for child in child_runs(client, experiment_id, parent_run_id):
        if child.data.tags.get(TAG_TRIAL_ID) == str(best_trial_id):
            for path in files:
                if path.exists():
                    client.log_artifact(child.info.run_id, str(path), artifact_path="spectrum")
            return
