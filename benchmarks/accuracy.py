"""Accuracy benchmark: dmi's estimates against the truth of bmi tasks, beside bmi's own estimators.

Every task is sampled once (n_train + n_test points, ``--seed``); every estimator sees that
sample. dmi trains on n_train points and estimates on n_test, both forms (direct and orthogonal)
with a standard error, so each gets a 95 % interval (± 1.96 SE). bmi's KSG (on at most
``--ksg_max_n`` points), CCA and InfoNCE / MINE (on at most ``--critic_max_n`` points) run with
bmi's defaults; they report no SE. A peer that raises, or runs past ``--peer_timeout``, is a
'failed' or 'skipped' row with the reason. Nothing is tuned per task: one config per estimator.

    python benchmarks/accuracy.py                   # 18 tasks at a reduced budget (about an hour of CPU)
    python benchmarks/accuracy.py --full            # the original's 75 tasks at 100k/10k (GPU, or --shard)
    python benchmarks/accuracy.py --tasks spiral:10:1100 bmi   # any original-grid spec or bmi task id
    python benchmarks/accuracy.py --configs best.json          # adds dmi-tuned-<name> rows
    python benchmarks/accuracy.py --report_only a.csv b.csv    # merge shards into one report

Writes accuracy.csv, accuracy.md and accuracy.png under ``--out`` (after every task, atomically).
"""

from __future__ import annotations

import argparse
import datetime
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

if __package__ in (None, ""):  # run as a script: make the ``benchmarks`` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import report, task_suite  # noqa: E402
from benchmarks.peers import PEER_NAMES, PeerRunner, PeerSettings, one_line, sample_size, steps_of  # noqa: E402
from benchmarks.tuned_configs import ConfigFileError, load_configs  # noqa: E402
from dmi.config import ConfigError, EstimatorConfig  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
DMI_DEFAULTS = ("dmi-unified", "dmi-moe")
ESTIMATORS = (*DMI_DEFAULTS, *PEER_NAMES)
DEFAULT_ESTIMATORS = (*DMI_DEFAULTS, "ksg", "cca", "infonce")
# (n_train, n_test, max_steps); max_steps None = each config's own (the library default for dmi-*).
REDUCED_BUDGET = (20_000, 5_000, 4_000)
FULL_BUDGET = (100_000, 10_000, None)
OWN_OPTIONS = {"architecture": "--estimators", "max_steps": "--max_steps", "seed": "--seed"}


class UsageError(Exception):
    """Input the benchmark refuses before running anything: one line, exit code 2."""


@dataclass
class Plan:
    tasks: list[task_suite.BenchTask]
    dmi: dict[str, EstimatorConfig]
    peers: list[str]
    n_train: int
    n_test: int
    max_steps: int | None
    settings: PeerSettings
    out: Path
    command: str
    peer_timeout: float
    threads: int


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="accuracy.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--tasks",
        nargs="+",
        metavar="TASK",
        help="type:dim:strength, a bmi task id, 'grid' or 'bmi' "
        "(default: multinormal, half_cube, spiral × dims 3, 10 × strengths 200, 1100, 2000)",
    )
    p.add_argument(
        "--full",
        action="store_true",
        help="the original's 75-task grid at its 100k/10k budget with each config's own max_steps",
    )
    p.add_argument(
        "--n_train",
        type=int,
        help=f"training points per task (default {REDUCED_BUDGET[0]}; --full {FULL_BUDGET[0]})",
    )
    p.add_argument(
        "--n_test",
        type=int,
        help=f"estimation points per task (default {REDUCED_BUDGET[1]}; --full {FULL_BUDGET[1]})",
    )
    p.add_argument(
        "--max_steps",
        type=int,
        help=f"training steps of every dmi config (default {REDUCED_BUDGET[2]}; --full: each config's own)",
    )
    p.add_argument(
        "--estimators",
        nargs="+",
        metavar="NAME",
        default=list(DEFAULT_ESTIMATORS),
        help=f"from {', '.join(ESTIMATORS)} (default: %(default)s); --configs adds dmi-tuned-*",
    )
    p.add_argument(
        "--configs",
        metavar="FILE",
        help="tuned EstimatorConfig(s): dmi-tune best NAME --json, "
        "or a mapping of fields / of names to fields (JSON or YAML)",
    )
    p.add_argument(
        "--set",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="override an EstimatorConfig field in every dmi config (the same for every task)",
    )
    p.add_argument(
        "--ksg_max_n", type=int, default=PeerSettings.ksg_max_n, help="KSG sample cap (O(n²) cost)"
    )
    p.add_argument(
        "--critic_max_n",
        type=int,
        default=PeerSettings.critic_max_n,
        help="InfoNCE/MINE sample cap (half trains, half scores: O(n²) scoring)",
    )
    p.add_argument(
        "--critic_steps",
        type=int,
        default=PeerSettings.critic_steps,
        help="InfoNCE/MINE max steps (bmi's early stopping may end sooner)",
    )
    p.add_argument(
        "--peer_timeout",
        type=float,
        default=600.0,
        help="seconds before a peer is stopped and recorded as skipped (0: no limit, in-process)",
    )
    p.add_argument("--seed", type=int, default=0, help="data sample and estimator seed (default 0)")
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="CPU threads for torch and JAX (default 1: on a shared 2-core machine two threads thrash)",
    )
    p.add_argument("--shard", metavar="I/K", help="run only tasks I, I+K, I+2K, ... (0-based), e.g. 0/4")
    p.add_argument(
        "--report_only", nargs="+", metavar="CSV", help="run nothing: merge these CSVs into one report"
    )
    p.add_argument("--out", type=Path, default=RESULTS, help="output folder (default benchmarks/results/)")
    return p


def _positive(args: argparse.Namespace, *names: str) -> None:
    for name in names:
        value = getattr(args, name)
        if value is not None and value < 1:
            raise UsageError(f"--{name} must be a positive integer, got {value}")


def _shard(tasks: list[task_suite.BenchTask], text: str | None) -> list[task_suite.BenchTask]:
    if text is None:
        return tasks
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise UsageError(f"--shard must be I/K with integers, got {text!r}") from None
    if not (count >= 1 and 0 <= index < count):
        raise UsageError(f"--shard I/K needs 0 <= I < K, got {text!r}")
    return tasks[index::count]


def _check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} exists and is not a folder")


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``KEY=VALUE`` pairs, values read as YAML scalars (``16`` → 16, ``true`` → True)."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--set expects KEY=VALUE, got {item!r}")
        if key in OWN_OPTIONS:
            raise UsageError(f"--set {key}: use {OWN_OPTIONS[key]} instead")
        try:
            out[key] = yaml.safe_load(value)
        except yaml.YAMLError:
            raise UsageError(f"--set {key}: cannot read value {value!r}") from None
    return out


def plan(args: argparse.Namespace, argv: list[str]) -> Plan:
    """Every check, before any task runs or any file is written."""
    _positive(args, "n_train", "n_test", "max_steps", "ksg_max_n", "critic_max_n", "critic_steps", "threads")
    if args.peer_timeout < 0:
        raise UsageError(f"--peer_timeout must be >= 0, got {args.peer_timeout}")
    unknown = [e for e in args.estimators if e not in ESTIMATORS]
    if unknown:
        raise UsageError(f"unknown estimator(s) {', '.join(unknown)}; choose from {', '.join(ESTIMATORS)}")
    default = FULL_BUDGET if args.full else REDUCED_BUDGET
    n_train = args.n_train or default[0]
    n_test = args.n_test or default[1]
    max_steps = args.max_steps or default[2]
    if n_test < 2 or n_train < 2:
        raise UsageError("--n_train and --n_test must be at least 2")
    tokens = args.tasks or (["grid"] if args.full else task_suite.default_tokens())
    try:
        tasks = _shard(task_suite.resolve_tasks(tokens), args.shard)
    except task_suite.TaskError as exc:
        raise UsageError(str(exc)) from None
    if not tasks:
        raise UsageError(f"--shard {args.shard} selects no task")
    overrides = (
        parse_overrides(args.set) | {"seed": args.seed} | ({"max_steps": max_steps} if max_steps else {})
    )
    named = {
        name: {"architecture": name.removeprefix("dmi-")} for name in args.estimators if name in DMI_DEFAULTS
    }
    if args.configs:
        try:
            tuned = load_configs(args.configs)
        except ConfigFileError as exc:
            raise UsageError(str(exc)) from None
        named |= {f"dmi-tuned-{name}": cfg.as_dict() for name, cfg in tuned.items()}
    dmi: dict[str, EstimatorConfig] = {}
    for name, values in named.items():
        try:
            dmi[name] = EstimatorConfig.from_dict(values | overrides)
        except (ConfigError, TypeError) as exc:
            raise UsageError(f"{name}: {exc}") from None
    _check_out(args.out)
    settings = PeerSettings(args.ksg_max_n, args.critic_max_n, args.critic_steps, args.seed)
    peers = [e for e in args.estimators if e in PEER_NAMES]
    if not dmi and not peers:
        raise UsageError("no estimator to run")
    command = "python benchmarks/accuracy.py" + (" " + shlex.join(argv) if argv else "")
    return Plan(
        tasks=tasks,
        dmi=dmi,
        peers=peers,
        n_train=n_train,
        n_test=n_test,
        max_steps=max_steps,
        settings=settings,
        out=args.out,
        command=command,
        peer_timeout=args.peer_timeout,
        threads=args.threads,
    )


# ---------------------------------------------------------------- running


def run_dmi(task, name: str, cfg: EstimatorConfig, x, y, n_test: int) -> list[dict[str, Any]]:
    """Both forms of one dmi estimator; a failure (e.g. divergence) is two 'failed' rows."""
    from dmi import DiffusionMI

    def row(form: str, estimate, stderr, status: str, note: str) -> dict[str, Any]:
        return report.make_row(
            task, name, form, estimate, stderr, seconds, status, note, len(x), cfg.max_steps
        )

    start = time.perf_counter()
    try:
        estimator = DiffusionMI(test_fraction=n_test / len(x), **cfg.as_dict())
        info = estimator.estimate_with_info(x, y).additional_information
    except Exception as exc:  # noqa: BLE001 - recorded, not hidden
        seconds = time.perf_counter() - start
        return [row(form, None, None, "failed", one_line(exc)) for form in ("direct", "orthogonal")]
    seconds = time.perf_counter() - start
    n_est = info["n_points"]
    note = f"trained {info['train_seconds']:.0f} s on {len(x) - n_est} points, estimated on {n_est}"
    return [
        row("direct", info["mi"], info["mi_stderr"], "ok", note),
        row("orthogonal", info["mi_orthogonal"], info["mi_orthogonal_stderr"], "ok", note),
    ]


def run_peer(task, name: str, x, y, p: Plan, runner: PeerRunner) -> dict[str, Any]:
    n = sample_size(name, len(x), p.settings)
    r = runner.run(name, x[:n], y[:n], p.settings)
    note = "; ".join(filter(None, [f"first {n} of {len(x)} points" if n < len(x) else "", r["note"]]))
    steps = steps_of(name, p.settings)
    return report.make_row(
        task, name, "point", r["estimate"], None, r["seconds"], r["status"], note, n, steps
    )


def progress(index: int, total: int, task, rows: list[dict[str, Any]]) -> None:
    shown = ", ".join(f"{report.series_label(r['estimator'], r['form'])} {report.cell(r)}" for r in rows)
    print(f"[{index}/{total}] {task.label} (true {task.true_mi:.3f}): {shown}", file=sys.stderr, flush=True)


def config_line(name: str, cfg: EstimatorConfig) -> str:
    """A dmi config as the fields where it differs from EstimatorConfig's defaults of this run."""
    default = EstimatorConfig(architecture=cfg.architecture).as_dict()
    changed = ", ".join(f"{k}={v}" for k, v in cfg.as_dict().items() if v != default[k])
    return f"  - {name}: architecture={cfg.architecture}" + (f", {changed}" if changed else "")


def header(p: Plan, done: int, wall_s: float) -> list[str]:
    """What was run, on what budget, with which configs: the lines above the tables."""
    s, lib = p.settings, EstimatorConfig()
    steps = f"max_steps {p.max_steps}" if p.max_steps else "each config's own max_steps"
    state = "complete" if done == len(p.tasks) else f"PARTIAL: {done} of {len(p.tasks)} tasks done"
    written = datetime.datetime.now().isoformat(timespec="seconds")
    defaults = ", ".join(f"{k}={v}" for k, v in lib.as_dict().items() if k != "architecture")
    return [
        "# Accuracy benchmark",
        "",
        f"Command: `{p.command}`",
        "",
        f"- {len(p.tasks)} tasks ({state}), {wall_s / 60:.1f} min, written {written}; "
        f"each task sampled once (seed {s.seed}).",
        f"- dmi trains on {p.n_train} points ({steps}) and estimates on {p.n_test}. Configs, as "
        f"changes to EstimatorConfig's defaults of this run ({defaults}):",
        *(config_line(name, cfg) for name, cfg in p.dmi.items()),
        f"- peers (bmi's defaults): KSG (k=5) on at most {s.ksg_max_n} points; InfoNCE/MINE on at most "
        f"{s.critic_max_n} (half train, half score), at most {s.critic_steps} steps; CCA on all points.",
        "- 95 % interval: estimate ± 1.96 SE (only dmi reports an SE).",
    ]


def run(p: Plan) -> str:
    """Every task, every estimator; the outputs are rewritten after each task. Returns the markdown."""
    import torch

    torch.set_num_threads(p.threads)
    quiet_lightning()
    rows: list[dict[str, Any]] = []
    text = ""
    runner = PeerRunner(p.peer_timeout, p.threads)
    start = time.perf_counter()
    try:
        for i, task in enumerate(p.tasks, start=1):
            x, y = task.sample(p.n_train + p.n_test, seed=p.settings.seed)
            task_rows: list[dict[str, Any]] = []
            for name, cfg in p.dmi.items():
                task_rows += run_dmi(task, name, cfg, x, y, p.n_test)
            for name in p.peers:
                task_rows.append(run_peer(task, name, x, y, p, runner))
            rows += task_rows
            progress(i, len(p.tasks), task, task_rows)
            text = report.write_outputs(rows, p.out, header(p, i, time.perf_counter() - start))
    finally:
        runner.close()
    return text


def quiet_lightning() -> None:
    """Lightning announces devices and tips at every fit; warnings only (after import: it sets INFO)."""
    import logging
    import warnings

    import lightning.pytorch  # noqa: F401

    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)


def report_only(paths: list[str], out: Path, argv: list[str]) -> str:
    """Merge CSVs (e.g. shards); a later row for the same task, estimator and form replaces an earlier."""
    merged: dict[tuple[str, str, str], dict[str, Any]] = {}
    for path in paths:
        try:
            rows = report.read_rows(Path(path))
        except (OSError, ValueError) as exc:
            raise UsageError(f"{path}: {' '.join(str(exc).split())}") from None
        merged |= {(r["task_id"], r["estimator"], r["form"]): r for r in rows}
    if not merged:
        raise UsageError("the CSVs hold no rows")
    _check_out(out)
    head = [
        "# Accuracy benchmark",
        "",
        f"Merged by `python benchmarks/accuracy.py {shlex.join(argv)}` from: "
        + ", ".join(f"`{p}`" for p in paths)
        + ".",
    ]
    return report.write_outputs(list(merged.values()), out, head)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    try:
        if args.report_only:
            print(report_only(args.report_only, args.out, argv), end="")
            return 0
        p = plan(args, argv)
    except UsageError as exc:
        print(f"accuracy.py: error: {exc}", file=sys.stderr)
        return 2
    print(run(p), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
