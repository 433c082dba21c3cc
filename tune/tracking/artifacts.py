"""Files for the parent run: the best config, a results table, and plots read the next morning.

Optuna's own matplotlib visualizations draw the optimization history, parallel coordinates
and parameter importances, on a study rebuilt from the Tune result grid (the searcher's
study lives inside the Tune driver and is not what a restored sweep ends with). Every plot
is optional: a plot that cannot be drawn is skipped with a warning, never fails the record.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

log = logging.getLogger(__name__)


def write_yaml(path: Path, values: Mapping[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(plain(values), sort_keys=False), encoding="utf-8")
    return path


def plain(value: Any) -> Any:
    """Numpy scalars and tuples → values ``yaml.safe_dump`` writes."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if hasattr(value, "item") and callable(value.item):
        return value.item()
    return value


def write_results_table(path: Path, result_grid: Any) -> Path:
    """Tune's table of last results, plus a row for each trial that failed before reporting."""
    import pandas as pd

    frame = result_grid.get_dataframe()
    silent = [
        {
            "trial_id": (r.metrics or {}).get("trial_id"),
            "logdir": Path(r.path).name,
            "error": last_line(r.error),
            **{f"config/{k}": v for k, v in flat_config(r.config or {}).items()},
        }
        for r in result_grid
        if r.error is not None and "training_iteration" not in (r.metrics or {})
    ]
    if silent:
        frame = pd.concat([frame, pd.DataFrame(silent)], ignore_index=True)
    frame.to_csv(path, index=False)
    return path


def last_line(error: BaseException) -> str:
    """The exception line of an error whose text may carry a whole remote traceback."""
    lines = [line for line in str(error).strip().splitlines() if line.strip()]
    return (lines[-1] if lines else type(error).__name__)[:500]


def flat_config(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, Mapping):
            flat.update(flat_config(value, f"{prefix}{key}/"))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def study_from_results(results: Iterable[Any], metric: str, mode: str = "min"):
    """An in-memory Optuna study with one trial per Tune result (its best report), for Optuna's plots.

    Distributions are inferred from the values seen (a param is only kept if it varies):
    strings and booleans are categorical, numbers span their observed range, on a log scale
    when positive and spread over a decade or more. Conditional params are simply absent
    from the trials that did not take their branch, as in the original study.
    """
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
    from optuna.trial import TrialState, create_trial

    rows = []
    for result in results:
        curve = {}
        frame = result.metrics_dataframe
        if frame is not None and metric in frame and "training_iteration" in frame:
            curve = {
                int(step): float(v)
                for step, v in zip(frame["training_iteration"], frame[metric], strict=True)
                if isinstance(v, (int, float)) and math.isfinite(v)
            }
        # A trial counts with its best report, as the driver ranks trials (and keeps checkpoints).
        pick = min if mode == "min" else max
        value = pick(curve.values()) if curve else (result.metrics or {}).get(metric)
        ok = result.error is None and isinstance(value, (int, float)) and math.isfinite(value)
        rows.append((flat_config(result.config or {}), float(value) if ok else None, curve))

    values_by_key: dict[str, list] = {}
    for config, _, _ in rows:
        for key, value in config.items():
            values_by_key.setdefault(key, []).append(value)
    distributions = {}
    for key, seen in values_by_key.items():
        distinct = {repr(v) for v in seen}
        if len(distinct) < 2:
            continue
        if all(isinstance(v, int) and not isinstance(v, bool) for v in seen):
            low, high = min(seen), max(seen)
            distributions[key] = IntDistribution(low, high, log=low > 0 and high >= 10 * low)
        elif all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in seen):
            low, high = float(min(seen)), float(max(seen))
            distributions[key] = FloatDistribution(low, high, log=low > 0 and high >= 10 * low)
        elif all(isinstance(v, (str, bool, int, float)) or v is None for v in seen):
            distributions[key] = CategoricalDistribution(sorted({v for v in seen}, key=repr))

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="minimize" if mode == "min" else "maximize")
    for config, value, curve in rows:
        params = {k: v for k, v in config.items() if k in distributions}
        study.add_trial(
            create_trial(
                state=TrialState.COMPLETE if value is not None else TrialState.FAIL,
                value=value,
                params=params,
                distributions={k: distributions[k] for k in params},
                intermediate_values=curve,
            )
        )
    return study


def save_figure(drawn: Any, path: Path) -> Path:
    """Save a matplotlib Figure or the figure of an Axes, and free it."""
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    figure = drawn if isinstance(drawn, Figure) else drawn.figure
    figure.set_size_inches(9, 6)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def optuna_plots(study: Any, folder: Path, target_name: str = "Objective Value") -> list[Path]:
    """History, parallel coordinates and importances, as far as the trials allow."""
    import matplotlib

    matplotlib.use("Agg")
    from optuna.visualization import matplotlib as ovm

    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    varying = {name for t in complete for name in t.params}
    plots = [("optimization_history", ovm.plot_optimization_history, 1)]
    if varying:
        plots.append(("parallel_coordinates", ovm.plot_parallel_coordinate, 1))
    if varying and len(complete) >= 2:
        plots.append(("param_importances", ovm.plot_param_importances, 2))
    written = []
    for name, draw, needed in plots:
        if len(complete) < needed:
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                written.append(save_figure(draw(study, target_name=target_name), folder / f"{name}.png"))
        except Exception as exc:  # noqa: BLE001 - a missing plot must not lose the record
            log.warning("plot %s skipped: %s", name, exc)
    return written


def mi_curve_plot(frame: Any, path: Path, true_mi: float | None, title: str) -> Path | None:
    """The best trial's MI (both forms, ± one standard error) per report, against the truth."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if frame is None or "mi" not in frame or "training_iteration" not in frame:
        return None
    figure, axes = plt.subplots()
    steps = frame["training_iteration"]
    for column, label in (("mi", "direct"), ("mi_orthogonal", "orthogonal")):
        if column not in frame:
            continue
        axes.plot(steps, frame[column], marker="o", label=label)
        stderr = frame.get(f"{column}_stderr")
        if stderr is not None:
            axes.fill_between(steps, frame[column] - stderr, frame[column] + stderr, alpha=0.2)
    if true_mi is not None and math.isfinite(true_mi):
        axes.axhline(true_mi, color="black", linestyle="--", label=f"true MI {true_mi:.3f}")
    axes.set_xlabel("report (training_iteration)")
    axes.set_ylabel("MI [nats]")
    axes.set_title(title)
    axes.legend()
    return save_figure(figure, path)


def fidelity_plot(summary: Mapping[str, Any], path: Path) -> Path | None:
    """One point per trial: its best objective against its true |error|; the defaults as a line."""
    ranking = summary.get("ranking") or {}
    points = ranking.get("points") or []
    if not points:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots()
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
    return save_figure(figure, path)


def spectrum_artifacts(summary: Mapping[str, Any], folder: Path, plot_path: Path, true_mi: float | None) -> Path | None:
    """The final estimate's information spectrum: ``best_spectrum.json`` and a plot beside the others."""
    import json

    values = summary.get("final_spectrum")
    if not values:
        return None
    (folder / "best_spectrum.json").write_text(json.dumps(plain(values)), encoding="utf-8")
    try:
        from dmi.spectrum import InformationSpectrum
        from dmi.spectrum_plot import plot_spectrum

        spectrum = InformationSpectrum.from_dict(values)
        return plot_spectrum(spectrum, plot_path, title="best trial's estimate, test rows", true_mi=true_mi)
    except Exception as exc:  # a plot never fails the record
        log.warning("plot best_spectrum skipped: %s", exc)
        return None
