"""Selection fidelity: does a label-free objective pick the trial whose MI is closest to the truth?

A panel of benchmark tasks with known MI. On each, one fixed random set of trials (both
architectures, width, learning rate, batch, EMA, step budget: 16 short ones of 1.5k-12k steps
and 4 at the library defaults' 30k-step cap, so that tuning can beat the defaults on the
same compute per trial) is trained once, as sweep
trials are (``dmi.training.fit`` on the sweep's validation rows, a report every
``--val_every`` steps, early stopping at the default patience). Every report keeps its
label-free metrics and, for scoring only, the direct MI of those weights on a test split
that nothing trains or selects on (64 log-SNR nodes, as the sweep's final estimate). Every
candidate objective in ``tune.objectives`` is then scored on the same reports, as the sweep
uses it: a trial's best report is its lowest objective, and the pick is the lowest of all.

The library defaults (``DiffusionMI`` defaults trained on the same training and validation
rows) are one of the trials, because every shipped sweep enqueues them first
(``points_to_evaluate`` in ``configs/sweep/*.yaml``): a sweep's pick is chosen among them too.

Per task and candidate: Spearman(objective, |error|) over trials, the pick's |error|, its
regret against the most accurate trial, beside the library defaults' |error| (their own
held-out selection's estimate, as ``DiffusionMI`` returns it).

    python benchmarks/selection.py                     # the panel: 6 tasks x 20 trials + defaults
    python benchmarks/selection.py --report_only       # tables and plot from the saved JSONL

Jobs run in ``--workers`` processes with one thread each; each finished job is written to
``selection-fidelity.jsonl`` under ``--out`` (atomically), so an interrupted run resumes.
Writes ``selection-fidelity.md`` and ``selection-fidelity.png``.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import multiprocessing
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import lightning.pytorch as pl  # noqa: E402
import numpy as np  # noqa: E402

from tune.objectives import CANDIDATES, DEFAULT_OBJECTIVE, trial_scores  # noqa: E402
from tune.summary import ranking_quality  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
# Not a report's score: each trial's own held-out selection (paired-SE val_loss, step 0 included),
# the weights the library would return, compared across trials by their val_loss.
SELECTED = "selected_val_loss"
SCORED = (*CANDIDATES, SELECTED)
FINAL_N_LOGSNR = 64


@dataclass(frozen=True)
class PanelTask:
    """One task of the panel: where its sample comes from and how it is split."""

    name: str
    kind: str  # "dmi" (dmi.tasks: type/dim/strength) or "bmi" (a BENCHMARK_TASKS id)
    ident: str
    n: int
    n_val: int
    n_test: int
    covers: str


PANEL = (
    PanelTask("half_cube-3 @10k", "dmi", "half_cube/3/200", 10_000, 1_000, 3_000, "near-Gaussian, 9.9 nats"),
    PanelTask("spiral-3 @100k", "dmi", "spiral/3/200", 100_000, 5_000, 5_000, "nonlinear, 100k samples"),
    PanelTask("bmi spiral-3-3 @5k", "bmi", "spiral-multinormal-sparse-3-3-2-2.0", 5_000, 350, 1_500, "nonlinear"),
    PanelTask("bmi student-5-5-2 @5k", "bmi", "student-identity-5-5-2", 5_000, 350, 1_500, "heavy tails"),
    PanelTask("bmi normal_cdf-5-5 @5k", "bmi", "normal_cdf-multinormal-sparse-5-5-2-2.0", 5_000, 350, 1_500, "bounded"),
    PanelTask("bmi dense-25-25 @5k", "bmi", "multinormal-dense-25-25-0.5", 5_000, 350, 1_500, "25 dimensions"),
)


SHORT = {"max_steps": (1500, 3000, 6000, 12000), "batch_size": (128, 256, 512)}
LONG = {"max_steps": (30000,), "batch_size": (256, 512, 1024)}  # the library defaults' cap


def random_trials(n: int, seed: int, budget: dict[str, tuple[int, ...]] = SHORT) -> list[dict[str, Any]]:
    """``n`` configurations drawn once, the same on every task (the space the sweeps search)."""
    rng = np.random.default_rng(seed)
    trials = []
    for _ in range(n):
        arch = str(rng.choice(["unified", "moe"]))
        trial: dict[str, Any] = {
            "architecture": arch,
            "model_dim": int(round(math.exp(rng.uniform(math.log(16), math.log(128))))),
            "learning_rate": float(math.exp(rng.uniform(math.log(3e-4), math.log(3e-3)))),
            "batch_size": int(rng.choice(budget["batch_size"])),
            "use_ema": bool(rng.random() < 0.5),
            "max_steps": int(rng.choice(budget["max_steps"])),
        }
        if arch == "moe":
            trial["snr_threshold"] = float(rng.uniform(0.0, 10.0))
        if trial["use_ema"]:
            trial["ema_decay"] = float(rng.uniform(0.99, 0.999))
        trials.append(trial)
    return trials


# -- data ------------------------------------------------------------------------------------

_DATA: dict[str, tuple[dict[str, np.ndarray], float]] = {}


def panel_data(task: PanelTask, seed: int = 0) -> tuple[dict[str, np.ndarray], float]:
    """(train / val / test arrays, true MI): one draw, split by a seeded permutation."""
    key = f"{task.name}/{seed}"
    if key in _DATA:
        return _DATA[key]
    if task.kind == "bmi":
        from bmi.benchmark import BENCHMARK_TASKS

        bt = BENCHMARK_TASKS[task.ident]
        x, y = bt.sample(task.n, seed=seed)
        truth = float(bt.mutual_information)
    else:
        from dmi.tasks import TaskSpec, sample_task, true_mi

        kind, dim, strength = task.ident.split("/")
        spec = TaskSpec(kind, int(dim), float(strength))
        x, y = sample_task(spec, task.n, seed)
        truth = true_mi(spec)
    x, y = np.asarray(x, dtype=np.float32), np.asarray(y, dtype=np.float32)
    order = np.random.default_rng([seed, 2]).permutation(len(x))
    test, val, train = np.split(order, [task.n_test, task.n_test + task.n_val])
    arrays = {
        "x_train": x[train],
        "y_train": y[train],
        "x_val": x[val],
        "y_val": y[val],
        "x_test": x[test],
        "y_test": y[test],
    }
    _DATA[key] = (arrays, truth)
    return arrays, truth


# -- training ----------------------------------------------------------------------------------


class ReportRecorder(pl.Callback):
    """What a sweep report holds, plus the test-split MI of the same weights (for scoring only)."""

    def __init__(self, x_test: np.ndarray, y_test: np.ndarray) -> None:
        self.x_test, self.y_test = x_test, y_test
        self.reports: list[dict[str, float]] = []
        self._test: tuple[float, float] = (float("nan"), float("nan"))

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # The weights validation saw (EMA's average is swapped back after this hook).
        if trainer.sanity_checking:
            return
        est = pl_module.estimate(self.x_test, self.y_test, n_logsnr=FINAL_N_LOGSNR, seed=0)
        self._test = (est.mi, est.mi_orthogonal)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        metrics = trainer.callback_metrics
        if trainer.sanity_checking or "val_loss" not in metrics:
            return
        report = {key: float(value) for key, value in metrics.items() if value.numel() == 1}
        report.update(step=trainer.global_step, test_mi=self._test[0], test_mi_orthogonal=self._test[1])
        self.reports.append(report)


def run_job(task: PanelTask, trial_id: str, config: dict[str, Any], val_every: int) -> dict[str, Any]:
    """Train one trial (or the library defaults) on one task and return every report."""
    import warnings

    from dmi.commands.progress import quiet
    from dmi.config import EstimatorConfig
    from dmi.training import fit

    arrays, truth = panel_data(task)
    start = time.perf_counter()
    row: dict[str, Any] = {"task": task.name, "trial": trial_id, "config": config, "true_mi": truth}
    with warnings.catch_warnings(), quiet(False):
        warnings.simplefilter("ignore")
        cfg = EstimatorConfig.from_dict(config)
        recorder = ReportRecorder(arrays["x_test"], arrays["y_test"])
        interval = None if trial_id == "defaults" else val_every
        try:
            module, _ = fit(
                cfg,
                arrays["x_train"],
                arrays["y_train"],
                arrays["x_val"],
                arrays["y_val"],
                callbacks=[recorder],
                val_every_n_steps=interval,
            )
        except FloatingPointError as exc:
            return row | {"status": "failed", "note": str(exc), "reports": recorder.reports}
        est = module.estimate(arrays["x_test"], arrays["y_test"], n_logsnr=FINAL_N_LOGSNR, seed=0)
    selection = module.selection.as_dict() if module.selection is not None else {}
    return row | {
        "status": "ok",
        "reports": recorder.reports,
        "selected": {"mi": est.mi, "mi_orthogonal": est.mi_orthogonal, "mi_stderr": est.mi_stderr, **selection},
        "seconds": time.perf_counter() - start,
    }


def _init_worker() -> None:
    os.environ["XLA_FLAGS"] = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)


def _run(args: tuple[PanelTask, str, dict[str, Any], int]) -> dict[str, Any]:
    return run_job(*args)


# -- scoring ---------------------------------------------------------------------------------


def score_task(jobs: list[dict[str, Any]], candidate: str) -> dict[str, Any]:
    """Spearman, the pick's |error| and its regret for one candidate on one task (as a sweep scores it)."""
    truth = jobs[0]["true_mi"]
    pairs = []
    for job in jobs:  # the defaults included: the sweeps enqueue them (points_to_evaluate)
        if candidate == SELECTED:
            chosen = job.get("selected") or {}
            if "best_val_loss" in chosen:
                pairs.append((chosen["best_val_loss"], abs(chosen["mi"] - truth)))
            continue
        best = trial_scores(job["reports"], candidate)
        if best is not None:
            pairs.append((best[0], abs(best[1]["test_mi"] - truth)))
    return {"candidate": candidate, **ranking_quality(pairs)}


def oracle_error(jobs: list[dict[str, Any]]) -> float | None:
    """The smallest |error| of any report of any trial: what no label-free rule can beat."""
    errors = [abs(r["test_mi"] - j["true_mi"]) for j in jobs for r in j["reports"]]
    errors = [e for e in errors if math.isfinite(e)]
    return min(errors) if errors else None


def defaults_error(jobs: list[dict[str, Any]]) -> float | None:
    job = next((j for j in jobs if j["trial"] == "defaults" and j["status"] == "ok"), None)
    return None if job is None else abs(job["selected"]["mi"] - job["true_mi"])


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per candidate: its per-task figures and the panel's aggregate against the targets."""
    tasks = [t.name for t in PANEL if any(r["task"] == t.name for r in rows)]
    by_task = {t: [r for r in rows if r["task"] == t] for t in tasks}
    defaults = {t: defaults_error(by_task[t]) for t in tasks}
    out: dict[str, Any] = {"tasks": tasks, "defaults": defaults, "candidates": {}}
    for name in SCORED:
        per = {t: score_task(by_task[t], name) for t in tasks}
        regrets = [p["regret"] for p in per.values() if "regret" in p]
        rhos = [p.get("spearman") for p in per.values()]
        beats = [
            (p["pick_abs_error"], defaults[t])
            for t, p in per.items()
            if "pick_abs_error" in p and defaults[t] is not None
        ]
        out["candidates"][name] = {
            "per_task": per,
            "mean_regret": float(np.mean(regrets)) if regrets else None,
            "spearman_at_least_half": sum(r is not None and r >= 0.5 for r in rhos),
            "pick_not_worse_than_defaults": sum(e <= d for e, d in beats),
            "mean_error_reduction": float(np.mean([1 - e / d for e, d in beats if d > 0])) if beats else None,
        }
    return out


def _f(value: Any, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def report(rows: list[dict[str, Any]]) -> str:
    summary = summarise(rows)
    tasks, defaults = summary["tasks"], summary["defaults"]
    truths = {r["task"]: r["true_mi"] for r in rows}
    n_trials = {t: sum(r["task"] == t for r in rows) for t in tasks}
    lines = [
        f"Default objective: `{DEFAULT_OBJECTIVE}`. Panel: {len(tasks)} tasks, "
        + ", ".join(f"{n_trials[t]}" for t in tasks)
        + " trials, the library defaults among them (every shipped sweep enqueues them first). "
        "|error| of the direct MI on the test split (64 nodes).",
        "",
        "**Panel, by candidate** (targets: mean regret ≤ 0.05; Spearman ≥ 0.5 on ≥ 4 tasks; "
        "pick ≤ defaults on ≥ 5 tasks, 30 % lower on average):",
        "",
        "| candidate | mean regret | tasks Spearman ≥ 0.5 | pick ≤ defaults | mean error reduction vs defaults |",
        "|---|---|---|---|---|",
    ]
    for name, c in summary["candidates"].items():
        mark = " (default)" if name == DEFAULT_OBJECTIVE else ""
        reduction = "–" if c["mean_error_reduction"] is None else f"{100 * c['mean_error_reduction']:.0f} %"
        lines.append(
            f"| `{name}`{mark} | {_f(c['mean_regret'])} | {c['spearman_at_least_half']}/{len(tasks)} | "
            f"{c['pick_not_worse_than_defaults']}/{len(tasks)} | {reduction} |"
        )
    lines += [
        "",
        "**Per task**: Spearman(objective, |error|) / pick |error| / regret.",
        "",
        "| task | true MI | defaults \\|error\\| | best of any report | "
        + " | ".join(f"`{n}`" for n in SCORED)
        + " |",
        "|---|---|---|---|" + "---|" * len(SCORED),
    ]
    for t in tasks:
        cells = []
        best = oracle_error([r for r in rows if r["task"] == t])
        for name in SCORED:
            p = summary["candidates"][name]["per_task"][t]
            rho = p.get("spearman")
            cells.append(
                f"{'–' if rho is None else f'{rho:+.2f}'} / {_f(p.get('pick_abs_error'))} / {_f(p.get('regret'))}"
            )
        lines.append(f"| {t} | {truths[t]:.3f} | {_f(defaults[t])} | {_f(best)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(rows: list[dict[str, Any]], path: Path, candidate: str = DEFAULT_OBJECTIVE) -> None:
    """Per task: each trial's best objective against its |error|, the defaults as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = [t.name for t in PANEL if any(r["task"] == t.name for r in rows)]
    cols = 3
    fig, axes = plt.subplots(math.ceil(len(tasks) / cols), cols, figsize=(12, 3.6 * math.ceil(len(tasks) / cols)))
    for ax, task in zip(np.ravel(axes), tasks, strict=False):
        jobs = [r for r in rows if r["task"] == task]
        pts = []
        for job in jobs:
            best = trial_scores(job["reports"], candidate)
            if best is not None:
                arch = "defaults" if job["trial"] == "defaults" else job["config"].get("architecture", "unified")
                pts.append((best[0], abs(best[1]["test_mi"] - job["true_mi"]), arch))
        for arch, marker in (("unified", "o"), ("moe", "^"), ("defaults", "*")):
            sel = [(a, b) for a, b, c in pts if c == arch]
            if sel:
                ax.scatter(*zip(*sel, strict=True), marker=marker, label=arch, s=22)
        d = defaults_error(jobs)
        if d is not None:
            ax.axhline(d, color="k", ls="--", lw=0.8, label="library defaults' estimate")
        ax.set_title(task, fontsize=9)
        ax.set_xlabel(candidate, fontsize=8)
        ax.set_ylabel("|error| (nats)", fontsize=8)
        ax.legend(fontsize=6)
    for ax in np.ravel(axes)[len(tasks) :]:
        ax.axis("off")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    write_atomic(path, buffer.getvalue())


# -- files -----------------------------------------------------------------------------------


def write_atomic(path: Path, data: str | bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data.encode() if isinstance(data, str) else data)
    os.replace(tmp, path)


def read_rows(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=16, help="short-budget random trials per task (the same on each)")
    parser.add_argument("--long_trials", type=int, default=4, help="more at the defaults' 30k-step cap")
    parser.add_argument("--tasks", nargs="+", default=None, help="panel task names (default: all)")
    parser.add_argument("--val_every", type=int, default=300, help="steps between reports")
    parser.add_argument("--workers", type=int, default=2, help="parallel processes, one thread each")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random trial set")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--report_only", action="store_true")
    args = parser.parse_args(argv)
    panel = [t for t in PANEL if args.tasks is None or t.name in args.tasks]
    if args.tasks and len(panel) != len(args.tasks) or args.trials < 3 or args.workers < 1:
        print("selection: error: unknown --tasks name, --trials < 3 or --workers < 1", file=sys.stderr)
        return 2
    results = args.out / "selection-fidelity.jsonl"
    rows = read_rows(results)
    if not args.report_only:
        done = {(r["task"], r["trial"]) for r in rows}
        drawn = random_trials(args.trials, args.seed) + random_trials(args.long_trials, args.seed + 1, LONG)
        configs = [("defaults", {"seed": 0})] + [(f"t{i:02d}", {**c, "seed": 0}) for i, c in enumerate(drawn)]
        jobs = [(t, tid, c, args.val_every) for t in panel for tid, c in configs if (t.name, tid) not in done]
        jobs.sort(key=lambda job: job[0].n)  # the small tasks first: their figures come in early
        print(f"selection: {len(jobs)} jobs to run ({len(done)} already in {results})", flush=True)
        context = multiprocessing.get_context("spawn")
        with context.Pool(args.workers, initializer=_init_worker, maxtasksperchild=4) as pool:
            for row in pool.imap_unordered(_run, jobs):
                rows.append(row)
                write_atomic(results, "".join(json.dumps(r) + "\n" for r in rows))
                print(f"  {row['task']} {row['trial']}: {row['status']} {row.get('seconds', 0):.0f} s", flush=True)
    wanted = {"defaults", *(f"t{i:02d}" for i in range(args.trials + args.long_trials))}
    names = {t.name for t in panel}
    rows = [r for r in rows if r["trial"] in wanted and r["task"] in names]
    text = report(rows)
    command = (
        f"python benchmarks/selection.py --trials {args.trials} --long_trials {args.long_trials} "
        f"--val_every {args.val_every} --seed {args.seed}"
    )
    write_atomic(args.out / "selection-fidelity.md", f"`{command}` (trials: {results.name})\n\n{text}")
    plot(rows, args.out / "selection-fidelity.png")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
