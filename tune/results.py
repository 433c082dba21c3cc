"""From a finished experiment's ResultGrid to its summary: trial rows, best trial, final estimate."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

from dmi.config import EstimatorConfig
from tune.data import SweepData
from tune.objectives import CANDIDATES
from tune.summary import clean, diverged, ranking_quality, status_counts
from tune.trainable import CHECKPOINT_FILE


def _finite(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def distinct_reports(frame, folder: str | None = None) -> int:
    """Reports a trial made: a trial resumed after a killed driver may repeat one in its progress file.

    The iterations of the in-memory frame and of the trial's ``progress.csv`` on disk are
    counted together: after a driver restore the frame of a resumed trial can miss a report
    that the file, written across both runs, holds.
    """
    if "training_iteration" not in frame:
        return len(frame)
    seen = set(frame["training_iteration"].dropna().astype(int))
    progress = Path(folder, "progress.csv") if folder else None
    if progress is not None and progress.is_file() and progress.stat().st_size:
        import pandas as pd

        try:
            on_disk = pd.read_csv(progress, usecols=["training_iteration"])["training_iteration"]
            seen |= set(on_disk.dropna().astype(int))
        except (ValueError, pd.errors.ParserError):
            pass  # a file cut mid-line by a kill: the frame alone
    return len(seen)


def trial_rows(grid, objective: str) -> list[dict[str, Any]]:
    """One row per trial with the metrics of its best report (by the objective)."""
    rows = []
    for result in grid:
        frame = result.metrics_dataframe
        reports = 0 if frame is None or frame.empty else distinct_reports(frame, result.path)
        status = "ERROR" if result.error else ("TERMINATED" if reports else "NOT_RUN")
        row: dict[str, Any] = {
            "trial_id": (result.metrics or {}).get("trial_id") or Path(result.path).name,
            "status": status,
            "reports": reports,
            "config": dict(result.config or {}),
            "objective": None,
            "val_loss": None,
            "mi": None,
        }
        if diverged(result.metrics):  # ended by its trainable, not retried: see tune.trainable
            row.update(status="DIVERGED", failure=result.metrics.get("failure"))
        if reports and objective in frame:
            scored = frame[frame[objective].notna()]
            if not scored.empty:
                best = scored.loc[scored[objective].idxmin()]
                for key in ("val_loss", "mi", "mi_orthogonal", "mi_stderr", "abs_error"):
                    if key in best:
                        row[key] = _finite(best[key])
                row["objective"] = _finite(best[objective])
                row["best_report"] = int(best["training_iteration"])
        rows.append(row)
    return rows


def label_free_ranking(grid, objective: str) -> dict[str, Any]:
    """How well label-free objectives ranked this sweep's trials by true error (benchmark sweeps only).

    Per trial, its best report by an objective and the true error there; then, as
    ``ranking_quality``, Spearman and regret, for the sweep's objective (top level, with one
    point per trial for the plot) and for every candidate the trials reported.
    """
    frames = []
    for result in grid:
        frame = result.metrics_dataframe
        if frame is not None and not frame.empty and "abs_error" in frame:
            trial_id = (result.metrics or {}).get("trial_id") or Path(result.path).name
            frames.append((trial_id, (result.config or {}).get("architecture"), frame))

    def best_reports(name: str) -> list[tuple[str, Any, float, float]]:
        out = []
        for trial_id, arch, frame in frames:
            if name not in frame:
                continue
            scored = frame[frame[name].notna() & frame["abs_error"].notna()]
            scored = scored[scored[name].map(math.isfinite)]
            if not scored.empty:
                best = scored.loc[scored[name].idxmin()]
                out.append((trial_id, arch, float(best[name]), float(best["abs_error"])))
        return out

    chosen = best_reports(objective)
    ranking: dict[str, Any] = {"objective": objective, **ranking_quality([(v, e) for *_, v, e in chosen])}
    ranking["points"] = [{"trial_id": t, "architecture": a, "objective": v, "abs_error": e} for t, a, v, e in chosen]
    ranking["candidates"] = {
        name: ranking_quality([(v, e) for *_, v, e in best_reports(name)])
        for name in CANDIDATES
        if any(name in frame for *_, frame in frames)
    }
    return ranking


def defaults_estimate(data: SweepData, base: EstimatorConfig, n_logsnr: int) -> dict[str, Any]:
    """What the sweep did not search gives: ``base`` (the library defaults under the sweep's fixed
    ``estimator:`` settings) trained on the training rows, selected on the validation rows and
    estimated on the test rows, as the sweep's pick is.

    One torch thread: the trials are done, but other work may share the machine.
    """
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


def final_estimate(grid, objective: str, data: SweepData, n_logsnr: int) -> dict[str, Any]:
    """Best trial by the objective → its best kept checkpoint → MI on the held-out test set."""
    from dmi.diagnostics import diagnose
    from dmi.training import load_module

    best = grid.get_best_result(metric=objective, mode="min", scope="all", filter_nan_and_inf=True)
    checkpoint = best.get_best_checkpoint(metric=objective, mode="min") or best.checkpoint
    if checkpoint is None:
        raise RuntimeError(f"the best trial ({best.path}) kept no checkpoint")
    with checkpoint.as_directory() as folder:
        module = load_module(Path(folder) / CHECKPOINT_FILE)
    est = module.estimate(data.x_test, data.y_test, n_logsnr=n_logsnr, seed=0)
    spectrum = module.spectrum(data.x_test, data.y_test, seed=0)
    selection = checkpoint_selection(best, checkpoint)
    estimate = est.as_dict()
    out: dict[str, Any] = {
        "best_trial_id": best.metrics.get("trial_id"),
        "best_trial_path": best.path,
        "best_checkpoint": checkpoint.path,
        "best_config": dict(best.config),
        "best_estimator_config": module.cfg.as_dict(),
        "final_estimate": estimate,
        "final_diagnostics": diagnose(est, selection, spectrum),
        # Where along the noise levels the final estimate's MI lives (dmi.spectrum).
        "final_spectrum": spectrum.as_dict(),
        # The test rows against the validation rows the weights were selected on (dmi.domain).
        "final_domain": module.check_domain(data.x_test, data.y_test).as_dict(),
        "true_mi": data.true_mi,
    }
    if data.true_mi is not None:
        out["abs_error"] = abs(estimate["mi"] - data.true_mi)
        out["abs_error_orthogonal"] = abs(estimate["mi_orthogonal"] - data.true_mi)
    return out


def checkpoint_selection(result, checkpoint):
    """How the final weights were chosen: the best report's step, of all the trial trained.

    The sweep selects by the lowest reported objective (as Tune's checkpoint ranking does),
    so the selected step is that report's, not the trial's own paired-SE choice.
    """
    from dmi.selection import SelectionReport

    chosen = next((m for c, m in result.best_checkpoints if c.path == checkpoint.path), result.metrics)
    last = result.metrics or {}
    if "trained_steps" not in chosen:
        return None
    frame = result.metrics_dataframe
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
        "trial_counts": status_counts([r["status"] for r in rows]),
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
