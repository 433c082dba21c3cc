"""bmi's own benchmark: the 40 ``bmi.benchmark.BENCHMARK_TASKS`` at 5,000 samples, dmi beside bmi's peers.

Every estimator gets the whole sample, as bmi's protocol gives it, and splits it itself: dmi
with the library defaults (``DiffusionMI``: test 30 %, validation 10 % of the rest), the peers
with bmi's defaults (KSG, CCA, and the neural critics InfoNCE, MINE, NWJ and Donsker–Varadhan,
which score on half the sample). Nothing is tuned per task. A success is
|estimate − truth| ≤ max(0.1 nats, 10 % of the truth).

    python benchmarks/bmi_benchmark.py                       # dmi-unified, dmi-moe, KSG, CCA; 1 seed
    python benchmarks/bmi_benchmark.py --estimators all --seeds 0 1 2
    python benchmarks/bmi_benchmark.py --report_only         # tables and plot from the saved CSV
    python benchmarks/bmi_benchmark.py --estimators dmi-unified-previous --tasks ...   # the defaults before selection
    python benchmarks/bmi_benchmark.py --estimators dmi-unified-one       # the defaults until 2026-12-07

Jobs run in ``--workers`` processes with one thread each. Results are appended to
``bmi-benchmark.csv`` under ``--out`` as each job ends (atomically), and a rerun skips the
jobs already there, so an interrupted run resumes. Writes ``bmi-benchmark.md`` and ``.png``.
"""

from __future__ import annotations

import argparse
import csv
import io
import math
import multiprocessing
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the ``benchmarks`` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.peers import PeerSettings, run_peer  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
N_SAMPLES = 5000
DMI = ("dmi-unified", "dmi-moe", "dmi-unified-one", "dmi-moe-one", "dmi-unified-4x32", "dmi-unified-previous")
# The defaults before held-out selection, for before/after runs: no validation split (30k steps,
# last weights), standardisation only, the raw-moment Gaussian base, one network, 10 % test split.
PREVIOUS = {"val_fraction": 0.0, "preprocess": "rescale", "test_fraction": 0.1, "members": 1}
# dmi estimators other than the library defaults: what they change.
OPTIONS = {
    "dmi-unified-previous": PREVIOUS,
    # The defaults until 2026-12-07: one network of width 64 at batch 1024 whatever the sample, patience 10.
    "dmi-unified-one": {"members": 1, "patience": 10},
    "dmi-moe-one": {"members": 1, "patience": 10},
    # Four packed members of width 32, the batch of 2048 dealt out among them, predictions averaged (what
    # members=None picks on bmi's 5,000 samples), with the former patience of 10.
    "dmi-unified-4x32": {"members": 4, "model_dim": 32, "batch_size": 2048, "patience": 10},
}
PEERS = ("ksg", "cca", "infonce", "mine", "nwj", "dv")
DEFAULT_ESTIMATORS = ("dmi-unified", "dmi-moe", "ksg", "cca")
FIELDS = (
    "task",
    "family",
    "seed",
    "estimator",
    "true_mi",
    "estimate",
    "stderr",
    "estimate_orthogonal",
    "stderr_orthogonal",
    "estimate_cross",
    "stderr_cross",
    "error",
    "success",
    "below_zero_2se",
    "selected_step",
    "trained_steps",
    "stopped_early",
    "warnings",
    "seconds",
    "status",
    "note",
)
FAMILIES = (
    ("spiral", "spiral"),
    ("student", "Student-t"),
    ("normal_cdf", "transformed"),
    ("half_cube", "transformed"),
    ("wiggly", "transformed"),
    ("swissroll", "transformed"),
    ("1v1", "one-dimensional"),
    ("dense", "multinormal dense"),
    ("sparse", "multinormal sparse"),
)


def family(task_id: str) -> str:
    """The task's family, by the first transformation or distribution its bmi id names."""
    return next((name for key, name in FAMILIES if key in task_id), "other")


def success(estimate: float | None, truth: float) -> bool:
    return estimate is not None and math.isfinite(estimate) and abs(estimate - truth) <= max(0.1, 0.1 * truth)


def _init_worker(threads: int) -> None:
    """One thread per worker, set before torch or JAX start their pools."""
    os.environ["XLA_FLAGS"] = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
    os.environ["OMP_NUM_THREADS"] = str(threads)
    import torch

    torch.set_num_threads(threads)


def run_job(task_id: str, seed: int, estimator: str, settings: PeerSettings) -> dict[str, Any]:
    """One estimator on one task's sample of ``N_SAMPLES`` points drawn with ``seed``."""
    import warnings

    import numpy as np
    from bmi.benchmark import BENCHMARK_TASKS

    task = BENCHMARK_TASKS[task_id]
    x, y = task.sample(N_SAMPLES, seed=seed)
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    truth = float(task.mutual_information)
    row: dict[str, Any] = {"task": task_id, "family": family(task_id), "seed": seed, "estimator": estimator}
    row["true_mi"] = truth
    if estimator in DMI:
        from dmi.api import DiffusionMI
        from dmi.commands.progress import quiet

        start = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught, quiet(False):
            warnings.simplefilter("always")
            try:
                options = OPTIONS.get(estimator, {})
                estimator_ = DiffusionMI(architecture=estimator.split("-")[1], seed=seed, **options)
                result = estimator_.estimate_with_info(x, y)
            except FloatingPointError as exc:
                return row | {"status": "failed", "note": str(exc), "seconds": time.perf_counter() - start}
        info = result.additional_information
        shown = [str(w.message) for w in caught if issubclass(w.category, UserWarning) and "dmi" in str(w.message)]
        value, se = float(result.mi_estimate), float(info["mi_stderr"])
        row |= {
            "estimate": value,
            "stderr": se,
            "estimate_orthogonal": info["mi_orthogonal"],
            "stderr_orthogonal": info["mi_orthogonal_stderr"],
            "estimate_cross": info["mi_cross"],
            "stderr_cross": info["mi_cross_stderr"],
            "below_zero_2se": value < -2 * se,
            "selected_step": info.get("selected_step"),
            "trained_steps": info.get("trained_steps"),
            "stopped_early": info.get("stopped_early"),
            "warnings": " | ".join(shown),
            "seconds": time.perf_counter() - start,
            "status": "ok",
            "note": "",
        }
    else:
        peer = run_peer(estimator, x, y, settings)
        row |= {
            "estimate": peer["estimate"],
            "seconds": peer["seconds"],
            "status": peer["status"],
            "note": peer["note"],
        }
    value = row.get("estimate")
    row["error"] = None if value is None else value - truth
    row["success"] = success(value, truth)
    return row


# -- results file --------------------------------------------------------------------------


def read_rows(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=FIELDS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    write_atomic(path, buffer.getvalue())


# -- report ----------------------------------------------------------------------------------


def _num(value: Any) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def _true(value: Any) -> bool:
    return str(value) in ("True", "true", "1")


def report(rows: list[dict[str, Any]]) -> str:
    """Successes by estimator and family, then one row per task with every estimator beside it."""
    from bmi.benchmark import BENCHMARK_TASKS

    estimators = [e for e in (*DMI, *PEERS) if any(r["estimator"] == e for r in rows)]
    tasks = [t for t in BENCHMARK_TASKS if any(r["task"] == t for r in rows)]
    families = list(dict.fromkeys(family(t) for t in tasks))
    by = {(r["estimator"], r["task"], str(r["seed"])): r for r in rows}
    seeds = sorted({str(r["seed"]) for r in rows}, key=int)
    lines = [
        f"Success: |error| ≤ max(0.1 nats, 10 % of the truth); {N_SAMPLES} samples per task; "
        f"seeds {', '.join(seeds)}. Cells: successes / runs.",
        "",
        "| estimator | "
        + " | ".join(f"{f} ({sum(family(t) == f for t in tasks)})" for f in families)
        + " | all | below 0 by > 2 SE | wall s (sum) |",
        "|---|" + "---|" * (len(families) + 3),
    ]
    for est in estimators:
        mine = [r for r in rows if r["estimator"] == est]
        below = sum(_true(r.get("below_zero_2se")) for r in mine) if est in DMI else "-"
        seconds = sum(_num(r.get("seconds")) or 0.0 for r in mine)
        lines.append(summary_row(est, mine, families, lambda r: _true(r["success"]), f"{below} | {seconds:.0f}"))
    for est in (e for e in estimators if e in DMI):
        lines.append(cross_form_row(est, [r for r in rows if r["estimator"] == est], families))
    peers = [e for e in estimators if e in PEERS]
    lines += [
        "",
        "Per task (seed " + seeds[0] + "; ✓ = success; dmi: direct ± SE, orthogonal in brackets; "
        "best peer = the peer closest to the truth):",
        "",
        "| task | true | " + " | ".join(estimators) + (" | best peer |" if peers else " |"),
        "|---|---|" + "---|" * (len(estimators) + (1 if peers else 0)),
    ]
    for task in tasks:
        truth = float(BENCHMARK_TASKS[task].mutual_information)
        cells = []
        best: tuple[float, str] | None = None
        for est in estimators:
            r = by.get((est, task, seeds[0]))
            value = _num(r.get("estimate")) if r else None
            if r is None:
                cells.append("")
                continue
            if value is None:
                cells.append(r.get("status") or "failed")
                continue
            mark = " ✓" if _true(r["success"]) else ""
            if est in DMI:
                cells.append(
                    f"{value:.3f} ± {_num(r['stderr']) or 0:.3f} ({_num(r['estimate_orthogonal']) or 0:.3f}){mark}"
                )
            else:
                cells.append(f"{value:.3f}{mark}")
                if best is None or abs(value - truth) < abs(best[0] - truth):
                    best = (value, est)
        tail = (f" | {best[1]} {best[0]:.3f} |" if best else " | |") if peers else " |"
        lines.append(f"| {task} | {truth:.3f} | " + " | ".join(cells) + tail)
    return "\n".join(lines) + "\n"


def cross_form(row: dict[str, Any]) -> float | None:
    """The cross form of a dmi row: exactly the mean of its direct and orthogonal estimates."""
    direct, orthogonal = _num(row.get("estimate")), _num(row.get("estimate_orthogonal"))
    return None if direct is None or orthogonal is None else 0.5 * (direct + orthogonal)


def summary_row(
    label: str, mine: list[dict[str, Any]], families: list[str], hit: Callable[[dict], bool], tail: str
) -> str:
    """One row of the summary table: successes (``hit`` of a row) by family and in all, then ``tail``'s cells."""
    cells = []
    for fam in families:
        runs = [r for r in mine if r["family"] == fam]
        cells.append(f"{sum(hit(r) for r in runs)}/{len(runs)}")
    return f"| {label} | " + " | ".join(cells) + f" | **{sum(hit(r) for r in mine)}/{len(mine)}** | {tail} |"


def cross_form_row(est: str, mine: list[dict[str, Any]], families: list[str]) -> str:
    """The summary row of ``est`` judged on its cross form (rows written before it was reported included)."""
    below = 0
    for r in mine:
        value, se = cross_form(r), _num(r.get("stderr_cross"))
        # Rows from before the cross form have no SE for it: a negative value counts as below zero there.
        below += value is not None and value < (-2 * se if se is not None else 0.0)

    def hit(row: dict[str, Any]) -> bool:
        return success(cross_form(row), float(row["true_mi"]))

    return summary_row(f"{est}, cross form", mine, families, hit, f"{below} | -")


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    """Estimate against truth per task, one marker per estimator; the band is the success rule."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from bmi.benchmark import BENCHMARK_TASKS

    tasks = [t for t in BENCHMARK_TASKS if any(r["task"] == t for r in rows)]
    estimators = [e for e in (*DMI, *PEERS) if any(r["estimator"] == e for r in rows)]
    fig, ax = plt.subplots(figsize=(max(10, 0.32 * len(tasks)), 5.5))
    truth = [float(BENCHMARK_TASKS[t].mutual_information) for t in tasks]
    xs = list(range(len(tasks)))
    lo = [t - max(0.1, 0.1 * t) for t in truth]
    hi = [t + max(0.1, 0.1 * t) for t in truth]
    ax.fill_between(xs, lo, hi, step="mid", color="0.85", label="success band")
    ax.plot(xs, truth, "k_", markersize=12, label="true MI")
    markers = "os^vD<>p"
    for k, est in enumerate(estimators):
        pts = [
            (i, _num(r["estimate"]))
            for i, t in enumerate(tasks)
            for r in rows
            if r["task"] == t and r["estimator"] == est
        ]
        pts = [(i + 0.08 * (k - len(estimators) / 2), v) for i, v in pts if v is not None]
        if pts:
            ax.scatter(*zip(*pts, strict=True), s=14, marker=markers[k % len(markers)], label=est)
    ax.set_xticks(xs, tasks, rotation=90, fontsize=6)
    ax.set_ylabel("MI estimate (nats)")
    ax.set_ylim(-0.5, 2.5)
    ax.set_title(f"bmi BENCHMARK_TASKS, {N_SAMPLES} samples")
    ax.legend(fontsize=7, ncol=4, loc="upper left")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(buffer.getvalue())
    os.replace(tmp, path)


def write_report(rows: list[dict[str, Any]], out: Path, command: str) -> str:
    text = report(rows)
    write_atomic(out / "bmi-benchmark.md", f"`{command}`\n\n{text}")
    plot(rows, out / "bmi-benchmark.png")
    return text


# -- main ------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--estimators", nargs="+", default=list(DEFAULT_ESTIMATORS), help="or 'all'")
    parser.add_argument("--tasks", nargs="+", default=None, help="bmi task ids (default: all 40)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--workers", type=int, default=2, help="parallel processes, one thread each")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--report_only", action="store_true")
    args = parser.parse_args(argv)
    from bmi.benchmark import BENCHMARK_TASKS

    estimators = list((*DMI, *PEERS)) if args.estimators == ["all"] else args.estimators
    bad = [e for e in estimators if e not in (*DMI, *PEERS)]
    tasks = args.tasks or list(BENCHMARK_TASKS)
    unknown = [t for t in tasks if t not in BENCHMARK_TASKS]
    if bad or unknown or args.workers < 1:
        what = (
            f"unknown estimator {bad[0]!r}" if bad else (f"unknown task {unknown[0]!r}" if unknown else "--workers < 1")
        )
        print(f"bmi_benchmark: error: {what}", file=sys.stderr)
        return 2
    path = args.out / "bmi-benchmark.csv"
    rows = read_rows(path)
    command = "python benchmarks/bmi_benchmark.py " + " ".join(argv if argv is not None else sys.argv[1:])
    if args.report_only:
        print(write_report(rows, args.out, command))
        return 0
    done = {(r["estimator"], r["task"], str(r["seed"])) for r in rows}
    # Slow estimators first, so the pool does not end on one long job.
    jobs = [(t, s, e) for e in estimators for s in args.seeds for t in tasks if (e, t, str(s)) not in done]
    settings = PeerSettings(critic_steps=10_000, ksg_neighborhoods=(5, 10))
    start = time.perf_counter()
    context = multiprocessing.get_context("spawn")
    with context.Pool(args.workers, initializer=_init_worker, initargs=(1,), maxtasksperchild=8) as pool:
        pending = [pool.apply_async(run_job, (t, s, e, settings)) for t, s, e in jobs]
        for (task, seed, est), job in zip(jobs, pending, strict=True):
            row = job.get()
            rows.append(row)
            write_rows(path, rows)
            value = row.get("estimate")
            shown = "-" if value is None else f"{value:+.3f}"
            print(
                f"{est:12s} {task:48s} seed {seed} true {row['true_mi']:.3f} est {shown} "
                f"{'ok ' if row['success'] else 'MISS'} {row.get('seconds', 0):.0f} s",
                flush=True,
            )
    print(f"wall time {time.perf_counter() - start:.0f} s for {len(jobs)} jobs on {args.workers} workers")
    print(write_report(rows, args.out, command))
    return 0


if __name__ == "__main__":
    sys.exit(main())
