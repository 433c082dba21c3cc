"""From a finished experiment's ResultGrid to its summary: trial rows, best trial, final estimate."""

from __future__ import annotations

import math
import time
from collections import Counter
from pathlib import Path
from typing import Any

from dmi.config import EstimatorConfig
from dmi.forms import FORM_FIELDS
from tune.data import SweepData
from tune.objectives import CANDIDATES, MODE
from tune.retention import best_checkpoint
from tune.summary import abs_error_key, clean, diverged, ranking_quality
from tune.trainable import CHECKPOINT_FILE


def _finite(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def _trial_id(result: Any) -> str:
    return (result.metrics or {}).get("trial_id") or Path(result.path).name


def best_report(frame: Any, name: str, *also: str) -> Any:
    """The report (a frame row) with the lowest finite ``name``, among those where ``also`` are known."""
    if frame is None or name not in frame:
        return None
    scored = frame[frame[[name, *also]].notna().all(axis=1)]
    scored = scored[scored[name].map(math.isfinite)]
    return None if scored.empty else scored.loc[scored[name].idxmin()]


def distinct_reports(frame: Any, folder: str) -> int:
    """Reports a trial made, over the frame and ``progress.csv`` (a restored frame may miss one, a retry repeat one)."""
    seen = set(frame["training_iteration"].dropna().astype(int))
    progress = Path(folder, "progress.csv")
    if progress.is_file() and progress.stat().st_size:
        import pandas as pd

        try:
            on_disk = pd.read_csv(progress, usecols=["training_iteration"])["training_iteration"]
            seen |= set(on_disk.dropna().astype(int))
        except (ValueError, pd.errors.ParserError):
            pass  # a file cut mid-line by a kill: the frame alone
    return len(seen)


def trial_rows(grid: Any, objective: str) -> list[dict[str, Any]]:
    """One row per trial with the metrics of its best report (by the objective)."""
    rows = []
    for result in grid:
        frame = result.metrics_dataframe
        reports = 0 if frame is None or frame.empty else distinct_reports(frame, result.path)
        status = "ERROR" if result.error else ("TERMINATED" if reports else "NOT_RUN")
        row = {"trial_id": _trial_id(result), "status": status, "reports": reports, "config": dict(result.config or {})}
        row.update(dict.fromkeys(("objective", "val_loss", "mi")))
        if diverged(result.metrics):  # ended by its trainable, not retried: see tune.trainable
            row.update(status="DIVERGED", failure=result.metrics.get("failure"))
        best = best_report(frame, objective) if reports else None
        if best is not None:
            keys = ("val_loss", "mi", "mi_orthogonal", "mi_stderr", "abs_error")
            row.update({key: _finite(best[key]) for key in keys if key in best})
            row.update(objective=_finite(best[objective]), best_report=int(best["training_iteration"]))
        rows.append(row)
    return rows


def label_free_ranking(grid: Any, objective: str) -> dict[str, Any]:
    """How well the objective, and every candidate reported, ranked the trials by true error at their best report."""
    trials = [(_trial_id(r), (r.config or {}).get("architecture"), r.metrics_dataframe) for r in grid]
    trials = [t for t in trials if t[2] is not None and not t[2].empty and "abs_error" in t[2]]

    def points(name: str) -> list[tuple[str, Any, float, float]]:
        best = [(t, a, best_report(frame, name, "abs_error")) for t, a, frame in trials]
        return [(t, a, float(b[name]), float(b["abs_error"])) for t, a, b in best if b is not None]

    chosen = points(objective)
    ranking: dict[str, Any] = {"objective": objective, **ranking_quality([(v, e) for *_, v, e in chosen])}
    ranking["points"] = [{"trial_id": t, "architecture": a, "objective": v, "abs_error": e} for t, a, v, e in chosen]
    ranking["candidates"] = {
        name: ranking_quality([(v, e) for *_, v, e in points(name)])
        for name in CANDIDATES
        if any(name in frame for *_, frame in trials)
    }
    return ranking


def defaults_estimate(data: SweepData, base: EstimatorConfig, n_logsnr: int) -> dict[str, Any]:
    """What the sweep did not search gives: ``base`` trained (one torch thread) and estimated on the pick's rows."""
    import torch

    from dmi.training import fit

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    began = time.monotonic()
    try:
        module, _ = fit(base, data.x_train, data.y_train, data.x_val, data.y_val)
    finally:
        torch.set_num_threads(threads)
    est = module.estimate(data.x_test, data.y_test, n_logsnr=n_logsnr, seed=0)
    out: dict[str, Any] = {**est.as_dict(), "seconds": time.monotonic() - began}
    library = EstimatorConfig().as_dict()
    out["fixed"] = {k: v for k, v in base.as_dict().items() if v != library[k]}
    if module.selection is not None:
        out.update(selected_step=module.selection.selected_step, trained_steps=module.selection.trained_steps)
    if data.true_mi is not None:
        out["abs_error"] = abs(est.mi - data.true_mi)
    return out


def final_estimate(grid: Any, objective: str, data: SweepData, n_logsnr: int) -> dict[str, Any]:
    """Best trial by the objective → its best kept checkpoint → MI on the held-out test set."""
    from dmi.diagnostics import diagnose
    from dmi.training import load_module

    best = grid.get_best_result(metric=objective, mode=MODE, scope="all", filter_nan_and_inf=True)
    checkpoint = best_checkpoint(best, objective) or best.checkpoint
    if checkpoint is None:
        raise RuntimeError(f"the best trial ({best.path}) kept no checkpoint")
    with checkpoint.as_directory() as folder:
        module = load_module(Path(folder) / CHECKPOINT_FILE)
    est = module.estimate(data.x_test, data.y_test, n_logsnr=n_logsnr, seed=0)
    spectrum = module.spectrum(data.x_test, data.y_test, seed=0)
    out: dict[str, Any] = {
        "best_trial_id": best.metrics.get("trial_id"),
        "best_trial_path": best.path,
        "best_checkpoint": checkpoint.path,
        "best_config": dict(best.config),
        "best_estimator_config": module.cfg.as_dict(),
        "final_estimate": est.as_dict(),
        "final_diagnostics": diagnose(est, checkpoint_selection(best, checkpoint), spectrum),
        "final_spectrum": spectrum.as_dict(),  # where along the noise levels the MI lives
        "final_domain": module.check_domain(data.x_test, data.y_test).as_dict(),  # test rows vs validation rows
        "true_mi": data.true_mi,
    }
    if data.true_mi is not None:
        for field in FORM_FIELDS.values():
            out[abs_error_key(field)] = abs(out["final_estimate"][field] - data.true_mi)
    return out


def checkpoint_selection(result: Any, checkpoint: Any) -> Any:
    """How the final weights were chosen: the best report's step (as Tune ranks checkpoints; not the trial's pick)."""
    from dmi.selection import SelectionReport

    chosen = next((m for c, m in result.best_checkpoints if c.path == checkpoint.path), result.metrics)
    if "trained_steps" not in chosen:
        return None
    last, frame = result.metrics or {}, result.metrics_dataframe
    history = []
    if frame is not None and "trained_steps" in frame:
        history = [(int(a), float(b)) for a, b in zip(frame["trained_steps"], frame["val_loss"], strict=True)]
    val_nll = float(chosen["val_loss"])
    return SelectionReport(
        selected_step=int(chosen["trained_steps"]),
        trained_steps=int(last.get("trained_steps", chosen["trained_steps"])),
        max_steps=-1,
        stopped_early=bool(last.get("early_stopped", False)),
        best_val_loss=val_nll,
        val_history=history,
        fit_gap={"train_nll": float(chosen["train_nll"]), "val_nll": val_nll, "nll_gap": float(chosen["nll_gap"])},
    )


def build_summary(
    *,
    experiment: dict[str, Any],
    state: str,
    rows: list[dict[str, Any]],
    best: dict[str, Any] | None,
    ranking: dict[str, Any] | None,
    data: SweepData,
    config: dict[str, Any],
    wall_s: float,
    defaults: dict[str, Any] | None = None,
) -> dict[str, Any]:
    best_row = next((r for r in rows if best and r["trial_id"] == best.get("best_trial_id")), None)
    summary = {
        "kind": "experiment",
        **experiment,
        "state": state,
        "objective": config["objective"],
        "data": data.describe(),
        "trial_counts": dict(sorted(Counter(r["status"] for r in rows).items())),
        "n_trials": len(rows),
        **(best or {}),
        "best_metrics": best_row,
        "ranking": ranking,
        "library_defaults": defaults,
        "wall_s": wall_s,
        "trials": rows,
        "config": config,
    }
    return clean(summary)
