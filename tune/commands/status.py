"""``dmi-tune status NAME``: where a sweep stands, read from its folder (no Ray needed)."""

from __future__ import annotations

import argparse
from collections import Counter

from dmi.errors import UsageError
from tune.storage import join, read_json, resolve_storage
from tune.summary import CONFIG_FILE, SUMMARY_FILE

HELP = "Show where a sweep stands: trials by status, best so far, finished or not."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help="sweep (experiment) name")
    parser.add_argument("--storage", help="results folder or URI (default ./ray_results)")


def run(args: argparse.Namespace) -> int:
    root = resolve_storage(args.storage)
    path = join(root, args.name)
    summary = read_json(join(path, SUMMARY_FILE))
    if summary is not None and summary.get("kind") == "multi_task":
        print(f"{args.name}: multi-task sweep, {summary['state']}")
        for entry in summary["experiments"]:
            describe(entry["name"], entry["experiment_path"])
        return 0
    if summary is None and not _is_experiment(path):
        raise UsageError(f"no sweep {args.name!r} under {root}")
    describe(args.name, path)
    return 0


def _is_experiment(path: str) -> bool:
    from ray.tune import Tuner

    return Tuner.can_restore(path)


def describe(name: str, path: str) -> None:
    summary = read_json(join(path, SUMMARY_FILE))
    if summary is not None:
        counts = ", ".join(f"{n} {s}" for s, n in (summary.get("trial_counts") or {}).items())
        line = f"{name}: {summary['state']}; {summary.get('n_trials', 0)} trials ({counts})"
        est = summary.get("final_estimate")
        if est:
            line += f"; final MI {est['mi']:.4f} ± {est['mi_stderr']:.4f}"
            if summary.get("true_mi") is not None:
                line += f" (truth {summary['true_mi']:.4f})"
        print(line)
        return
    if not _is_experiment(path):
        print(f"{name}: not started")
        return
    from ray.tune import ExperimentAnalysis

    config = read_json(join(path, CONFIG_FILE)) or {}
    objective = config.get("objective", "val_loss")
    trials = ExperimentAnalysis(path).trials
    best = [t.metric_analysis[objective]["min"] for t in trials if objective in (t.metric_analysis or {})]
    counts = ", ".join(f"{n} {s}" for s, n in sorted(Counter(t.status for t in trials).items()))
    line = f"{name}: not finished (running, or interrupted: `dmi-tune run` resumes it); "
    line += f"{len(trials)}/{(config.get('search') or {}).get('num_samples', '?')} trials ({counts})"
    print(line + (f"; best {objective} so far {min(best):.4f}" if best else ""))
