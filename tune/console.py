"""What the sweep prints: one line per finished trial, a table and the final estimate at the end."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ray.tune import Callback

from dmi.forms import FORM_FIELDS

SHORT = {"architecture": "arch", "learning_rate": "lr", "model_dim": "dim", "snr_threshold": "snr", "use_ema": "ema"}


def format_config(config: dict[str, Any], keys: list[str]) -> str:
    shown = [(SHORT.get(k, k), config[k]) for k in keys if k in config]
    return " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in shown)


def _num(value: Any, spec: str = ".4f") -> str:
    return "-" if value is None else format(value, spec)


class TrialLinePrinter(Callback):
    """Prints one line when a trial ends (kept plain: it is pickled with the experiment)."""

    def __init__(self, searched: list[str], max_reports: int, num_samples: int) -> None:
        self.searched, self.max_reports, self.num_samples = list(searched), max_reports, num_samples

    def _line(self, trial: Any, trials: list, outcome: str) -> None:
        done = 1 + sum(t.status in ("TERMINATED", "ERROR") for t in trials if t is not trial)
        r = trial.last_result or {}
        metrics = f"val_loss {_num(r.get('val_loss'))}  mi {_num(r.get('mi'))} ± {_num(r.get('mi_stderr'))}"
        if "abs_error" in r:
            metrics += f"  abs_error {_num(r.get('abs_error'))}"
        print(
            f"[{done}/{self.num_samples}] {trial.trial_id} {format_config(trial.config, self.searched)} | "
            f"{outcome} | {metrics} | {_num(r.get('time_total_s'), '.1f')} s",
            flush=True,
        )

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        last = trial.last_result or {}
        if last.get("diverged"):
            self._line(trial, trials, f"DIVERGED (not retried): {last.get('failure', 'training diverged')}")
            return
        reports = last.get("training_iteration", 0)
        how = f"{reports} reports" if reports >= self.max_reports else f"stopped at report {reports}/{self.max_reports}"
        self._line(trial, trials, how)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        """The last line of the trial's error file (the exception), and where the full trace is."""
        path, headline = getattr(trial, "error_file", None), "the trial failed"
        if path and os.path.isfile(path):
            lines = [line.strip() for line in Path(path).read_text(encoding="utf-8", errors="replace").splitlines()]
            headline = f"{next((line for line in reversed(lines) if line), headline)} ({path})"
        self._line(trial, trials, f"ERROR: {headline}")


def print_table(rows: list[dict[str, Any]], searched: list[str], objective: str, best_id: str | None) -> None:
    """Trials sorted by their best objective; ``*`` marks the one the final estimate uses."""
    lines = [["", "trial", "status", "reports", f"best {objective}", "mi", "abs_error", "config"]]
    for r in sorted(rows, key=lambda r: (r["objective"] is None, r["objective"] or 0.0)):
        mark, numbers = "*" if r["trial_id"] == best_id else "", [_num(r[k]) for k in ("objective", "mi")]
        config = format_config(r["config"], searched)
        lines.append([mark, r["trial_id"], r["status"], str(r["reports"]), *numbers, _num(r.get("abs_error")), config])
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    for line in lines:
        print("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip())


def print_final(summary: dict[str, Any]) -> None:
    est = summary.get("final_estimate")
    if not est:
        return
    truth = summary.get("true_mi")
    print(f"final estimate on {est['n_points']} held-out test points ({est['n_logsnr']} log-SNR nodes):")
    for form, key in FORM_FIELDS.items():
        if key not in est:  # a summary written before the cross form was reported
            continue
        line = f"  {form:<11} {est[key]:.4f} ± {est[key + '_stderr']:.4f} nats"
        if truth is not None:
            line += f"   truth {truth:.4f}, error {est[key] - truth:+.4f}"
        print(line)
    diag = summary.get("final_diagnostics") or {}
    if diag.get("held_out_selection"):
        stopped = " (stopped early)" if diag["stopped_early"] else ""
        steps = f"{diag['selected_step']} of {diag['trained_steps']}"
        print(f"  selected step {steps}{stopped}; held-out NLL gap {diag.get('nll_gap', float('nan')):+.3f}")
    for message in diag.get("warnings", []):
        print(f"  warning: {message}")
    domain = summary.get("final_domain") or {}
    if domain.get("in_domain") is False:
        print(f"  warning: the test rows are out of the estimator's domain (domain_score {domain['domain_score']:.2f})")
    defaults = summary.get("library_defaults")
    if defaults:
        fixed = ", ".join(f"{k}={v}" for k, v in sorted((defaults.get("fixed") or {}).items()))
        under = f" (with the sweep's fixed {fixed})" if fixed else ""
        line = f"  library defaults{under} on the same rows: direct {defaults['mi']:.4f} ± {defaults['mi_stderr']:.4f}"
        if "abs_error" in defaults and "abs_error" in summary:
            line += f", |error| {defaults['abs_error']:.4f} (the pick's {summary['abs_error']:.4f})"
        print(line + f"; {defaults.get('trained_steps', '?')} steps, {defaults['seconds']:.0f} s")
    ranking = summary.get("ranking")
    if ranking and ranking.get("spearman") is not None:
        print(
            f"  {ranking['objective']} ranks trials by true error with Spearman rho {ranking['spearman']:+.2f} "
            f"over {ranking['n_trials']} trials; regret of the label-free pick {ranking['regret']:.4f} nats"
        )
    print(f"best checkpoint: {summary.get('best_checkpoint')}")
