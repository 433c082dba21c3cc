"""``dmi train``: the original ``main.py``: benchmark tasks in, one JSONL results line per configuration.

Every option of the original keeps its name and default, except the log-SNR range (see
``--logsnr_clip``). ``--run_all`` is kill-safe by construction: a configuration's line is
appended (atomically) only once it is complete, and a rerun skips every configuration
already in the results file, so at most the interrupted one is repeated.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dmi.checks import positive_number_problem
from dmi.commands.options import (
    add_estimator_options,
    architecture,
    check_common,
    check_positive,
    default_range,
)
from dmi.errors import EXIT_FAILED, UsageError

HELP = "Train on benchmark tasks (the original main.py's options) and append MI estimates to a JSONL file."
GRID = {
    "dims": [3, 5, 10, 20, 50],
    "strengths": [200, 650, 1100, 1550, 2000],
    "task_types": ["multinormal", "half_cube", "spiral"],
}

EPILOG = """\
differences from the original main.py:
  --logsnr_loc/--logsnr_scale/--logsnr_clip default to the library's range {range};
    the original's 2/3/4 ([-10, 14]) loses up to 0.98 nats at 14.5 nats (see `dmi oracle`).
  training is counted in steps: --max_epochs E means E * (train_sample_num // batch_size) steps;
    --max_steps overrides it, and is a cap: every --val_interval (alias --mi_estimation_interval) steps the
    held-out NLL is evaluated on a --val_fraction split of the training rows (never the test rows); training
    stops after --patience evaluations without improvement and the best weights give the estimate.
  unset --learning_rate/--batch_size/--max_epochs are resolved per configuration from its dim.
  results: JSON lines, appended atomically; checkpoints: checkpoints/<task>/dmi_<arch>_<hash>.ckpt.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.usage = "dmi train [options]   (dmi train -h lists them)"
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG.format(range=default_range())
    task = parser.add_argument_group("task")
    task.add_argument(
        "--task_type",
        default="multinormal",
        metavar="TYPE",
        help="multinormal, half_cube or spiral (default %(default)s)",
    )
    task.add_argument(
        "--dim", type=int, default=3, metavar="N", help="dimension of x and of y (default %(default)s)"
    )
    task.add_argument(
        "--strength",
        type=float,
        default=2000,
        metavar="S",
        help="sparse-multinormal strength (default %(default)g)",
    )
    task.add_argument(
        "--train_sample_num",
        type=int,
        default=100000,
        metavar="N",
        help="training samples (default %(default)s)",
    )
    task.add_argument(
        "--test_num",
        type=int,
        default=10000,
        metavar="N",
        help="test samples for the estimate (default %(default)s)",
    )
    add_estimator_options(parser, original_defaults=True)
    out = parser.add_argument_group("results, checkpoints and the grid")
    out.add_argument(
        "--results_file",
        default=None,
        metavar="FILE",
        help="JSONL file to append to (default results_{unified|moe}_{train_sample_num}.jsonl)",
    )
    out.add_argument(
        "--checkpoint_dir", default="checkpoints", metavar="DIR", help="checkpoint root (default %(default)s)"
    )
    out.add_argument(
        "--load_ckpt",
        action="store_true",
        help="estimate from this configuration's saved checkpoint without training; "
        "with a larger budget than it holds, resume training from it",
    )
    out.add_argument(
        "--run_all",
        action="store_true",
        help="the whole grid (--dims × --strengths × --task_types), skipping configurations "
        "already in the results file",
    )
    out.add_argument(
        "--dims", type=int, nargs="+", default=None, metavar="N", help=f"grid dims (default {GRID['dims']})"
    )
    out.add_argument(
        "--strengths",
        type=float,
        nargs="+",
        default=None,
        metavar="S",
        help=f"grid strengths (default {GRID['strengths']})",
    )
    out.add_argument(
        "--task_types",
        nargs="+",
        default=None,
        metavar="TYPE",
        help=f"grid task types (default {GRID['task_types']})",
    )


def plan(args: argparse.Namespace) -> list:
    """Every configuration to run, fully validated; nothing is written here."""
    from dmi.commands.experiment import plan_experiment

    check_common(args)
    check_positive(args, "dim", "strength", "train_sample_num", "test_num")
    for name in ("train_sample_num", "test_num"):
        if getattr(args, name) < 2:
            raise UsageError(f"too few samples to split: --{name} must be >= 2, got {getattr(args, name)}")
    grid_given = [name for name in GRID if getattr(args, name) is not None]
    if grid_given and not args.run_all:
        raise UsageError(f"--{grid_given[0]} needs --run_all")
    if args.run_all:
        dims, strengths, task_types = (getattr(args, name) or GRID[name] for name in GRID)
        for name, values in (("dims", dims), ("strengths", strengths)):
            for value in values:
                if positive_number_problem(value):
                    raise UsageError(f"--{name} values must be > 0, got {value:g}")
        combos = [(t, d, s) for d in dims for s in strengths for t in task_types]
    else:
        combos = [(args.task_type, args.dim, args.strength)]
    experiments = [plan_experiment(args, t, d, s) for t, d, s in combos]
    if args.load_ckpt:
        from dmi.commands.checkpoints import stored_selection, trained_steps

        for exp in experiments:
            if exp.checkpoint.exists():
                exp.checkpoint_steps = trained_steps(exp.checkpoint)
                exp.checkpoint_selection = stored_selection(exp.checkpoint)
            elif not args.run_all:
                raise UsageError(f"--load_ckpt: no checkpoint for this configuration at {exp.checkpoint}")
    return experiments


def summary(record: dict) -> str:
    steps, seconds = record["trained_steps"], record["train_seconds"]
    how = {
        "trained": f"trained {steps} steps in {seconds:.1f} s",
        "resumed": f"resumed to {steps} steps in {seconds:.1f} s",
        "loaded": f"from its checkpoint ({steps} steps)",
    }[record["checkpoint_action"]]
    diag = record.get("diagnostics") or {}
    if diag.get("held_out_selection"):
        how += f", selected step {diag['selected_step']}" + (" (stopped early)" if diag["stopped_early"] else "")
    return (
        f"MI {record['mi_estimate']:.4f} ± {record['mi_stderr']:.4f}"
        f" (orthogonal {record['mi_estimate_orthogonal']:.4f} ± {record['mi_orthogonal_stderr']:.4f},"
        f" cross {record['mi_estimate_cross']:.4f} ± {record['mi_cross_stderr']:.4f}),"
        f" true {record['gt_mi']:.4f} nats; {how}"
    )


def remove_stale_writes(results_path: Path, experiments: list) -> None:
    """Temporary files that a killed run's atomic writes left beside the results and checkpoints."""
    from dmi.tempfiles import remove_stale

    folders = {results_path.parent, *(exp.checkpoint.parent for exp in experiments)}
    removed = remove_stale(*sorted(folders))
    if removed:
        print(f"dmi: removed {len(removed)} stale temporary file(s) of a killed write", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    from dmi.commands.options import check_tensorboard
    from dmi.commands.results import check_writable

    arch = architecture(args)
    results_path = Path(args.results_file or f"results_{arch}_{args.train_sample_num}.jsonl")
    check_writable(results_path)
    check_tensorboard(args)
    experiments = plan(args)
    remove_stale_writes(results_path, experiments)

    from dmi.commands.experiment import run_experiment
    from dmi.commands.progress import make_display, quiet
    from dmi.commands.results import append_record, read_records

    records = read_records(results_path)
    failed = appended = 0
    from dmi.threads import torch_threads

    with quiet(args.verbose), torch_threads(args.threads) as threads, make_display(len(experiments)) as display:
        for k, exp in enumerate(experiments, start=1):
            if args.run_all and any(exp.matches(r) for r in records):
                display.line(k, exp.spec.name, f"already in {results_path}; skipped")
                continue
            callbacks = display.start(k, exp.spec.name, exp.cfg.max_steps, exp.budget.steps_per_epoch)
            try:
                record = run_experiment(exp, args, [*callbacks, *threads.callbacks])
            except FloatingPointError as exc:
                display.finish(f"failed: {exc}")
                failed += 1
                continue
            append_record(results_path, record)
            records.append(record)
            appended += 1
            display.finish(summary(record))
            for message in (record.get("diagnostics") or {}).get("warnings", []):
                print(f"dmi: warning: {exp.spec.name}: {message}", file=sys.stderr)
    if appended:
        print(f"{appended} result(s) appended to {results_path}")
    if failed:
        print(f"dmi: {failed} configuration(s) failed; rerun to retry them", file=sys.stderr)
        return EXIT_FAILED
    return 0
