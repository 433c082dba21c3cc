"""What Ray, Tune and MLflow cost a sweep: its total wall time against the time its trials train.

A small fixed sweep (one benchmark task, a few trials run one after another, MLflow tracking
on) runs through ``tune.sweep.run_sweep`` like ``dmi-tune run``. Every trial reports its own
``train_seconds`` (time inside Lightning's fit, validation included). With one trial at a
time, whatever the wall clock shows beyond their sum is overhead: starting Ray and the trial
workers, shipping data, checkpoints, experiment snapshots, MLflow records, the final estimate.
Target: at most 10 % for trials of 30 s or more, on CPU.

    python benchmarks/sweep_overhead.py [--trials 8] [--steps 6000] [--no-tracking] [--json]

``--json``: the last line is JSON. 6000 steps take 30-40 s on one core of a quiet machine; the
trial seconds are printed, so check they are >= 30 s. Most of the overhead is paid once per
sweep (Ray and MLflow start-up, the first trial worker's imports, the final estimate), so its
share falls with the number of trials: the printout separates the once-per-sweep part
(outside Tuner.fit, and between trainables) from what each trial pays inside its trainable.
Timings depend on what else the machine runs. One CPU (torch thread) per trial by default: where other work leaves fewer
free cores than threads, torch's threads wait on each other and a step gets tens of times
slower, which would hide the overhead being measured.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib
import json
import os
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

TASK = {"task_type": "multinormal", "dim": 5, "strength": 200}
REPORTS = 10  # reports (validations + checkpoints) per trial
LEARNING_RATES = {"low": 3e-4, "high": 3e-3, "log": True}  # searched; leaves the speed of a step alone


def sweep_config(max_steps: int, trials: int, cpus: int, tracking_uri: str | None) -> dict:
    return {
        "name": "overhead",
        "objective": "val_loss",
        "data": {**TASK, "n_train": 20000, "n_val": 4000, "n_test": 4000, "seed": 0},
        "estimator": {"max_steps": max_steps, "batch_size": 256, "val_n_logsnr": 16, "architecture": "unified"},
        "search": {
            "num_samples": trials,
            "seed": 0,
            "params": {"learning_rate": LEARNING_RATES},
        },
        "scheduler": {"type": "fifo"},
        "trials": {
            "val_every_n_steps": max_steps // REPORTS,
            "resources": {"cpu": cpus, "gpu": 0},
            "max_concurrent_trials": 1,
        },
        "final_n_logsnr": 64,
        "ray": {"num_cpus": cpus, "object_store_mb": 256},
        "tracking": tracking_uri is not None,
        "tracking_uri": tracking_uri,
    }


# The steps of a sweep outside Tuner.fit, timed where the driver calls them: (module, function) -> phase.
PHASES = {
    ("tune.sweep", "load_data"): "data",
    ("tune.sweep", "make_trackers"): "mlflow_store",
    ("ray", "init"): "ray_start",
    ("tune.tracking.tracker:SweepTracker", "start"): "mlflow_parent_run",
    ("tune.sweep", "conclude"): "final_estimate_and_summary",
    ("tune.sweep", "record_end"): "mlflow_finish",
    ("ray", "shutdown"): "ray_stop",
}


@contextlib.contextmanager
def phase_clock() -> Iterator[dict[str, float]]:
    """Seconds spent in each of PHASES while the block runs (the functions are wrapped, then restored)."""
    seconds: dict[str, float] = defaultdict(float)
    originals = []
    for (module_name, name), phase in PHASES.items():
        module_path, _, class_name = module_name.partition(":")
        module = importlib.import_module(module_path)
        if class_name:
            module = getattr(module, class_name)
        original = getattr(module, name)

        @functools.wraps(original)
        def timed(*args, _original=original, _phase=phase, **kwargs):
            began = time.perf_counter()
            try:
                return _original(*args, **kwargs)
            finally:
                seconds[_phase] += time.perf_counter() - began

        setattr(module, name, timed)
        originals.append((module, name, original))
    try:
        yield seconds
    finally:
        for module, name, original in originals:
            setattr(module, name, original)


def trial_seconds(experiment: Path) -> tuple[list[float], list[float]]:
    """Each trial's training seconds and its whole time in the trainable, as it last reported them."""
    train, total = [], []
    for folder in sorted(experiment.glob("trial_*")):
        reports = pd.read_csv(folder / "progress.csv")
        train.append(float(reports["train_seconds"].iloc[-1]))
        total.append(float(reports["time_total_s"].iloc[-1]))
    return train, total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--steps", type=int, default=6000, help="training steps per trial (a multiple of 10)")
    parser.add_argument("--cpus", type=int, default=1, help="CPUs (torch threads) per trial")
    parser.add_argument("--no-tracking", action="store_true", help="leave MLflow out")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    from tune.config import parse_config
    from tune.sweep import run_sweep

    max_steps = max(REPORTS, args.steps // REPORTS * REPORTS)
    with tempfile.TemporaryDirectory(prefix="dmi-overhead-") as folder:
        tracking = None if args.no_tracking else f"sqlite:///{Path(folder) / 'mlflow.db'}"
        cfg = parse_config(sweep_config(max_steps, args.trials, args.cpus, tracking))
        began = time.perf_counter()
        with phase_clock() as phases:
            code = run_sweep(cfg, storage=str(Path(folder) / "results"))
        wall = time.perf_counter() - began
        experiment = Path(folder) / "results" / "overhead"
        summary = json.loads((experiment / "dmi_summary.json").read_text())
        train, in_trainable = trial_seconds(experiment)
    total_train = float(np.sum(train))
    # Inside Tuner.fit: in the trainable but not training (set-up, reports, checkpoints), and
    # between trainables (Tune's loop, the searcher, trial start and end, MLflow callbacks).
    in_trials = float(np.sum(in_trainable)) - total_train
    between_trials = summary["wall_s"] - float(np.sum(in_trainable))
    figures = {
        "exit_code": code,
        "trials": len(train),
        "max_steps": max_steps,
        "trial_train_s": train,
        "total_wall_s": wall,
        "sum_trial_train_s": total_train,
        "overhead_s": wall - total_train,
        "overhead_share": (wall - total_train) / wall,
        "tune_fit_wall_s": summary["wall_s"],
        "tune_fit_overhead_share": (summary["wall_s"] - total_train) / summary["wall_s"],
        "in_trainables_not_training_s": in_trials,
        "between_trainables_s": between_trials,
        "outside_fit_s": dict(phases, other=wall - summary["wall_s"] - sum(phases.values())),
        "tracking": not args.no_tracking,
        "cpus": args.cpus,
        "load_average_1m": os.getloadavg()[0],
    }
    mlflow = "on" if tracking else "off"
    print(f"trials: {len(train)} x {max_steps} steps, one at a time, {args.cpus} CPUs, MLflow {mlflow}")
    print(f"trial train seconds: {', '.join(f'{s:.1f}' for s in train)}")
    print(f"total wall:             {wall:8.1f} s   (Ray start, data, sweep, final estimate, MLflow)")
    print(f"sum of trial training:  {total_train:8.1f} s")
    print(f"overhead share:         {figures['overhead_share']:8.1%}   (target <= 10 % for trials >= 30 s)")
    print(f"  of Tuner.fit alone:   {figures['tune_fit_overhead_share']:8.1%}   ({summary['wall_s']:.1f} s)")
    print(f"    in trainables, not training: {in_trials:.1f} s; between trainables: {between_trials:.1f} s")
    outside = ", ".join(f"{k} {v:.1f}" for k, v in figures["outside_fit_s"].items())
    print(f"outside Tuner.fit (s):  {wall - summary['wall_s']:8.1f}   ({outside})")
    print(
        f"load average (1 min):   {figures['load_average_1m']:8.2f}   (other work on the machine inflates the overhead)"
    )
    if args.json:
        print(json.dumps(figures))
    return 0 if code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
