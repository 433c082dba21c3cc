"""The end of a sweep on its parent run: best trial, final estimates, counts, files, plots, model.

Rerunnable (a replay, a rerun): params are only added, metrics carry the record's time, files overwrite.
"""

from __future__ import annotations

import json
import logging
import math
import tempfile
import warnings
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from mlflow import MlflowClient

from tune.tracking.registry import log_and_register
from tune.tracking.runs import TAG_TRIAL_STATUS, child_runs, flatten, log_batch, log_params, trial_status
from tune.tracking.uri import artifacts_via

log = logging.getLogger(__name__)

ESTIMATE_FIELDS = ("mi", "mi_orthogonal", "mi_stderr", "mi_orthogonal_stderr", "mi_cross", "mi_cross_stderr")
RANKING_FIELDS = ("spearman", "regret", "pick_abs_error", "best_abs_error")
DEFAULTS_FIELDS = ("mi", "mi_orthogonal", "mi_stderr", "abs_error", "trained_steps")
SELECTION_FIELDS = ("selected_step", "trained_steps", "stopped_early", "still_improving")
FIT_FIELDS = ("nll_gap", "train_nll", "val_nll", "forms_disagreement_se")
SUMMARY_FIELDS = ("abs_error", "abs_error_orthogonal", "abs_error_cross", "wall_s", "budget_spent_s")


def finite(value: Any) -> float | None:
    """A finite number (a bool counts as 0 or 1) as a float; anything else (text, None, NaN, inf) as None."""
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def summary_metrics(summary: Mapping[str, Any]) -> dict[str, float]:
    """The numbers of the driver's summary under flat metric names; what is missing is left out."""
    ranking, diagnostics = summary.get("ranking") or {}, summary.get("final_diagnostics") or {}
    domain = summary.get("final_domain") or {}  # the test rows against the selection's reference
    sections = [
        ("final_", summary.get("final_estimate") or {}, ESTIMATE_FIELDS),
        ("fidelity_", ranking, RANKING_FIELDS),  # how well the objective ranked the trials by true error
        ("defaults_", summary.get("library_defaults") or {}, DEFAULTS_FIELDS),
        ("final_", diagnostics, SELECTION_FIELDS + FIT_FIELDS),
        ("", summary, SUMMARY_FIELDS),
    ]
    found = {f"{prefix}{key}": values.get(key) for prefix, values, keys in sections for key in keys}
    for name, quality in (ranking.get("candidates") or {}).items():  # each candidate objective reported too
        found.update({f"fidelity.{name}.{key}": quality.get(key) for key in ("spearman", "regret")})
    found.update(
        gt_mi=summary.get("true_mi"),
        objective_value=(summary.get("best_metrics") or {}).get("objective"),
        final_domain_score=domain.get("domain_score"),
        final_in_domain=domain.get("in_domain"),
    )
    if diagnostics:
        found["final_n_warnings"] = len(diagnostics.get("warnings", []))
    return {key: number for key, value in found.items() if (number := finite(value)) is not None}


def record_finish(client: MlflowClient, record: Mapping[str, Any], result_grid: Any) -> dict[str, Any]:
    """Everything ``SweepTracker.finish`` writes; returns what it registered."""
    run_id, experiment_id, summary = record["parent_run_id"], record["experiment_id"], dict(record["summary"])
    objective = str(summary.get("objective") or "val_loss")
    reported = [name for name in (objective, "val_loss") if any(name in (r.metrics or {}) for r in result_grid)]
    metric = (reported or [objective])[0]  # what trials were judged by: the objective if they reported it
    best_trial_id = summary.get("best_trial_id")  # none for an interrupted or failed sweep
    best = next((r for r in result_grid if best_trial_id and (r.metrics or {}).get("trial_id") == best_trial_id), None)
    best_config = summary.get("best_config") or {}

    tags = log_params(client, run_id, best_config, prefix="best.")  # as tags: a later finish chose another best
    tags |= {"dmi.best_trial_id": str(best_trial_id), "dmi.objective": objective, "dmi.sweep_status": record["status"]}
    if summary.get("state"):
        tags["dmi.sweep_state"] = str(summary["state"])
    final_warnings = (summary.get("final_diagnostics") or {}).get("warnings")
    if final_warnings:
        tags["dmi.final_warnings"] = " | ".join(final_warnings)[:4000]

    metrics = summary_metrics(summary)
    if finite(record.get("true_mi")) is not None:
        metrics.setdefault("gt_mi", float(record["true_mi"]))
    statuses = []  # of the trials, as their runs record them
    for child in child_runs(client, experiment_id, run_id):
        if child.info.status == "RUNNING":  # cut short by an interrupted driver: closed, reopened on a resume
            client.set_tag(child.info.run_id, TAG_TRIAL_STATUS, "interrupted")
            client.set_terminated(child.info.run_id, status="KILLED")
        statuses.append("interrupted" if child.info.status == "RUNNING" else trial_status(child))
    counts = dict(sorted(Counter(statuses).items())) or dict(summary.get("trial_counts") or {})
    metrics.update({f"trials_{status}": float(n) for status, n in counts.items()})
    metrics["trials_total"] = float(sum(counts.values()))
    log_batch(client, run_id, tags, metrics, record["time"])

    with tempfile.TemporaryDirectory() as tmp:
        folder, plots, true_mi = Path(tmp), Path(tmp) / "plots", metrics.get("gt_mi")
        plots.mkdir()
        write_yaml(folder / "best_config.yaml", best_config)
        if summary.get("best_estimator_config"):
            write_yaml(folder / "best_estimator_config.yaml", summary["best_estimator_config"])
        write_results_table(folder / "results.csv", result_grid)
        optuna_plots(study_from_results(result_grid, metric), plots, target_name=metric)
        fidelity_plot(summary, plots / "objective_vs_abs_error.png")
        spectrum_artifacts(summary, folder, plots / "best_spectrum.png", true_mi)
        if best is not None:
            mi_curve_plot(best.metrics_dataframe, plots / "best_trial_mi.png", true_mi, f"best trial {best_trial_id}")
        with artifacts_via(client.tracking_uri):
            client.log_artifacts(run_id, str(folder))
            if best_trial_id is not None and (folder / "best_spectrum.json").exists():  # also on the best trial's run
                for child in child_runs(client, experiment_id, run_id, str(best_trial_id))[:1]:
                    for path in (folder / "best_spectrum.json", plots / "best_spectrum.png"):
                        if path.exists():
                            client.log_artifact(child.info.run_id, str(path), artifact_path="spectrum")

    outcome: dict[str, Any] = {"parent_run_id": run_id, "best_trial_id": best_trial_id, "trial_counts": counts}
    if record.get("best_checkpoint_dir"):
        checkpoint, value = record["best_checkpoint_dir"], metrics.get("objective_value")
        registered = log_and_register(client, run_id, checkpoint, record["model_name"], objective, value, best_trial_id)
        model = dict(model_name=registered.name, model_version=registered.version)
        model.update(champion_version=registered.champion_version, champion_moved=registered.promoted)
        outcome.update(model)
        tags = {f"dmi.{k}": str(v).lower() if isinstance(v, bool) else str(v) for k, v in model.items()}
        log_batch(client, run_id, tags, {})
    client.set_terminated(run_id, status=record["status"])
    return outcome


def replay_finish(record: Mapping[str, Any]) -> dict[str, Any]:
    """Apply a journaled ``finish``: the result grid is read back from the experiment folder."""
    from ray.tune import ExperimentAnalysis, ResultGrid

    grid = ResultGrid(ExperimentAnalysis(record["experiment_path"]))
    return record_finish(MlflowClient(record["tracking_uri"]), record, grid)


# -- files and plots
def plain(value: Any) -> Any:
    """Numpy scalars and tuples → values ``yaml.safe_dump`` writes."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if hasattr(value, "item") and callable(value.item):
        return value.item()
    return value


def write_yaml(path: Path, values: Mapping[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(plain(values), sort_keys=False), encoding="utf-8")
    return path


def write_results_table(path: Path, result_grid: Any) -> None:
    """Tune's table of last results, plus a row for each trial that failed before reporting."""
    import pandas as pd

    frame = result_grid.get_dataframe()
    silent = []
    for r in result_grid:
        if r.error is None or "training_iteration" in (r.metrics or {}):
            continue
        lines = [line for line in str(r.error).strip().splitlines() if line.strip()]  # maybe a remote traceback
        row = {"trial_id": (r.metrics or {}).get("trial_id"), "logdir": Path(r.path).name}
        row["error"] = (lines[-1] if lines else type(r.error).__name__)[:500]  # the exception line
        silent.append(row | {f"config/{k}": v for k, v in flatten(r.config or {}, "/").items()})
    if silent:
        frame = pd.concat([frame, pd.DataFrame(silent)], ignore_index=True)
    frame.to_csv(path, index=False)


def study_from_results(results: Iterable[Any], metric: str):
    """An Optuna study of the Tune results (a restored sweep has no searcher's study), for Optuna's plots."""
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
    from optuna.trial import TrialState, create_trial

    rows = []
    for result in results:
        curve = {}
        frame = result.metrics_dataframe
        if frame is not None and metric in frame and "training_iteration" in frame:
            reports = zip(frame["training_iteration"], frame[metric], strict=True)
            curve = {int(step): finite(v) for step, v in reports if finite(v) is not None}
        # A trial counts with its best report, as the driver ranks trials (and keeps checkpoints).
        value = min(curve.values()) if curve else (result.metrics or {}).get(metric)
        rows.append((flatten(result.config or {}, "/"), finite(value) if result.error is None else None, curve))

    distributions = {}
    for key in dict.fromkeys(key for config, _, _ in rows for key in config):
        seen = [config[key] for config, _, _ in rows if key in config]
        if len({repr(v) for v in seen}) < 2:
            continue
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in seen):
            low, high = min(seen), max(seen)
            kind = IntDistribution if all(isinstance(v, int) for v in seen) else FloatDistribution
            distributions[key] = kind(low, high, log=low > 0 and high >= 10 * low)
        elif all(isinstance(v, (str, bool, int, float)) or v is None for v in seen):
            distributions[key] = CategoricalDistribution(sorted(set(seen), key=repr))

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="minimize")
    for config, value, curve in rows:
        params = {k: v for k, v in config.items() if k in distributions}
        state = TrialState.COMPLETE if value is not None else TrialState.FAIL
        spaces = {k: distributions[k] for k in params}
        trial = create_trial(state=state, value=value, params=params, distributions=spaces, intermediate_values=curve)
        study.add_trial(trial)
    return study


def pyplot() -> Any:
    """matplotlib's pyplot on the file-only backend (the driver may have no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(drawn: Any, path: Path) -> Path:
    """Save a matplotlib Figure or the figure of an Axes, and free it."""
    from matplotlib.figure import Figure

    figure = drawn if isinstance(drawn, Figure) else drawn.figure
    figure.set_size_inches(9, 6)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    pyplot().close(figure)
    return path


def optuna_plots(study: Any, folder: Path, target_name: str) -> None:
    """History, parallel coordinates and importances, as far as the trials allow."""
    pyplot()
    from optuna.visualization import matplotlib as ovm

    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    varying = any(t.params for t in complete)
    plots = {
        "optimization_history": (ovm.plot_optimization_history, bool(complete)),
        "parallel_coordinates": (ovm.plot_parallel_coordinate, varying),
        "param_importances": (ovm.plot_param_importances, varying and len(complete) >= 2),
    }
    for name, (draw, possible) in plots.items():
        try:
            if possible:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    save_figure(draw(study, target_name=target_name), folder / f"{name}.png")
        except Exception as exc:  # noqa: BLE001 - a missing plot must not lose the record
            log.warning("plot %s skipped: %s", name, exc)


def mi_curve_plot(frame: Any, path: Path, true_mi: float | None, title: str) -> None:
    """The best trial's MI (both forms, ± one standard error) per report, against the truth."""
    if frame is None or "mi" not in frame or "training_iteration" not in frame:
        return
    figure, axes = pyplot().subplots()
    steps = frame["training_iteration"]
    for column, label in (("mi", "direct"), ("mi_orthogonal", "orthogonal")):
        if column not in frame:
            continue
        axes.plot(steps, frame[column], marker="o", label=label)
        stderr = frame.get(f"{column}_stderr")
        if stderr is not None:
            axes.fill_between(steps, frame[column] - stderr, frame[column] + stderr, alpha=0.2)
    if true_mi is not None:
        axes.axhline(true_mi, color="black", linestyle="--", label=f"true MI {true_mi:.3f}")
    axes.set(xlabel="report (training_iteration)", ylabel="MI [nats]", title=title)
    axes.legend()
    save_figure(figure, path)


def fidelity_plot(summary: Mapping[str, Any], path: Path) -> None:
    """One point per trial: its best objective against its true |error|; the defaults as a line."""
    ranking = summary.get("ranking") or {}
    points = ranking.get("points") or []
    if not points:
        return
    figure, axes = pyplot().subplots()
    for arch, marker in (("unified", "o"), ("moe", "^"), (None, "s")):
        mine = [p for p in points if p.get("architecture") == arch]
        if mine:
            axes.scatter(
                [p["objective"] for p in mine], [p["abs_error"] for p in mine], marker=marker, label=arch or "other"
            )
    defaults = (summary.get("library_defaults") or {}).get("abs_error")
    if defaults is not None:
        axes.axhline(defaults, color="black", linestyle="--", label=f"library defaults {defaults:.3f}")
    rho = ranking.get("spearman")
    rho_text = "n/a" if rho is None else f"{rho:+.2f}"
    axes.set_xlabel(f"best {ranking.get('objective', 'objective')} of the trial")
    axes.set_ylabel("|error| at that report [nats]")
    axes.set_title(f"label-free objective against true error (Spearman {rho_text})")
    axes.legend()
    save_figure(figure, path)


def spectrum_artifacts(summary: Mapping[str, Any], folder: Path, plot_path: Path, true_mi: float | None) -> None:
    """The final estimate's information spectrum: ``best_spectrum.json`` and a plot beside the others."""
    values = summary.get("final_spectrum")
    if not values:
        return
    (folder / "best_spectrum.json").write_text(json.dumps(plain(values)), encoding="utf-8")
    try:
        from dmi.spectrum import InformationSpectrum
        from dmi.spectrum_plot import plot_spectrum

        spectrum = InformationSpectrum.from_dict(values)
        plot_spectrum(spectrum, plot_path, title="best trial's estimate, test rows", true_mi=true_mi)
    except Exception as exc:  # noqa: BLE001 - a plot never fails the record
        log.warning("plot best_spectrum skipped: %s", exc)
