"""|error| against ``snr_threshold``: the mixture of experts beside unified at equal parameters and steps.

Tasks: spiral dim 3 and dim 10 and half-cube dim 10 (the original's grid, ``--n_train`` training
rows, 10k test rows), and two of bmi's ``BENCHMARK_TASKS`` families at 5,000 samples (split as
``DiffusionMI`` splits them). Each task is trained once per threshold with the mixture, and once
with a unified network whose width gives it the mixture's parameter count; every run has the
library defaults otherwise, with ``--steps`` as the step cap. It also keeps each run's information
spectrum (``dmi.spectrum``), so a threshold's effect can be read along the noise levels.

    python benchmarks/moe_threshold.py                      # all tasks, 5 thresholds, 6k steps, 2 workers
    python benchmarks/moe_threshold.py --report_only        # table and plot from the saved JSONL

Jobs run in ``--workers`` processes with one thread each; each finished job is appended to
``moe-threshold.jsonl`` under ``--out`` (atomically), and a rerun skips the jobs already there.
Writes ``moe-threshold.md`` and ``moe-threshold.png``.
"""

from __future__ import annotations

import argparse
import io
import json
import multiprocessing
import os
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the ``benchmarks`` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

RESULTS = Path(__file__).resolve().parent / "results"
SYNTHETIC = ("spiral:3:200", "spiral:10:200", "half_cube:10:200")
BMI_TASKS = ("spiral-multinormal-sparse-3-3-2-2.0", "student-identity-3-3-2")
THRESHOLDS = (-4.0, 0.0, 5.0, 10.0, 15.0)
BMI_SAMPLES = 5000


def equal_parameter_width(dim_x: int, dim_y: int, width: int, n_blocks: int) -> int:
    """The unified width whose parameter count is closest to the mixture's (two networks of ``width``).

    Both are built as the library builds them (``build_denoiser``), so they follow its defaults (``y_squares``).
    """
    from dmi.config import EstimatorConfig
    from dmi.module import build_denoiser

    def count(**changes) -> int:
        cfg = EstimatorConfig(n_blocks=n_blocks, snr_threshold=0.0, **changes)
        return sum(p.numel() for p in build_denoiser(cfg, dim_x, dim_y).parameters())

    target = count(architecture="moe", model_dim=width)
    return min(range(width, 4 * width), key=lambda w: abs(count(architecture="unified", model_dim=w) - target))


def _init_worker() -> None:
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ["XLA_FLAGS"] = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
    import torch

    torch.set_num_threads(1)


def sample(task: str, n_train: int, seed: int):
    """(x_train, y_train, x_test, y_test, true MI) for a synthetic task name or a bmi task id."""
    import numpy as np

    if ":" not in task:  # a bmi task id, not type:dim:strength
        from bmi.benchmark import BENCHMARK_TASKS

        from dmi.api import DiffusionMI

        bmi_task = BENCHMARK_TASKS[task]
        x, y = (np.asarray(a, dtype=np.float64) for a in bmi_task.sample(BMI_SAMPLES, seed=seed))
        x_train, y_train, x_test, y_test = DiffusionMI(seed=seed).split(x, y)
        return x_train, y_train, x_test, y_test, float(bmi_task.mutual_information)
    from dmi.tasks import TaskSpec, sample_task, true_mi

    kind, dim, strength = task.split(":")
    spec = TaskSpec(kind, int(dim), float(strength))
    x, y = sample_task(spec, n_train + 10_000, seed=seed)
    return x[:n_train], y[:n_train], x[n_train:], y[n_train:], true_mi(spec)


def run_job(task: str, arch: str, threshold: float | None, steps: int, n_train: int, seed: int) -> dict[str, Any]:
    from dmi.commands.progress import quiet
    from dmi.config import EstimatorConfig
    from dmi.training import fit

    x_train, y_train, x_test, y_test, truth = sample(task, n_train, seed)
    cfg = EstimatorConfig(seed=seed, max_steps=steps)
    if arch == "moe":
        cfg = cfg.replace(architecture="moe", snr_threshold=threshold)
    else:
        cfg = cfg.replace(
            model_dim=equal_parameter_width(x_train.shape[1], y_train.shape[1], cfg.model_dim, cfg.n_blocks)
        )
    start = time.perf_counter()
    with quiet(False):
        module, trainer = fit(cfg, x_train, y_train)
    seconds = time.perf_counter() - start
    est = module.estimate(x_test, y_test, seed=seed)
    spectrum = module.spectrum(x_test, y_test, seed=seed)
    return {
        "task": task,
        "arch": arch,
        "threshold": threshold,
        "model_dim": cfg.model_dim,
        "parameters": sum(p.numel() for p in module.denoiser.inner.parameters()),
        "true_mi": truth,
        "mi": est.mi,
        "mi_stderr": est.mi_stderr,
        "mi_orthogonal": est.mi_orthogonal,
        "error": est.mi - truth,
        "error_orthogonal": est.mi_orthogonal - truth,
        "selected_step": module.selection.selected_step if module.selection else None,
        "trained_steps": trainer.global_step,
        "seconds": seconds,
        "spectrum": spectrum.as_dict(),
    }


def _job(args: tuple) -> dict[str, Any]:
    return run_job(*args)


def append_atomic(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = path.read_text() if path.exists() else ""
    text += "".join(json.dumps(r) + "\n" for r in rows)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def read_rows(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _key(row: dict[str, Any]) -> tuple:
    return row["task"], row["arch"], row["threshold"]


def report(rows: list[dict[str, Any]]) -> str:
    """|error| per task: unified (equal parameters), then the mixture at each threshold."""
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    thresholds = sorted({r["threshold"] for r in rows if r["arch"] == "moe"})
    out = io.StringIO()
    out.write(
        "|error|, direct / orthogonal (nats); **bold**: the mixture at least as accurate as unified (direct).\n\n"
    )
    out.write(
        "| task (true MI) | unified, equal parameters | " + " | ".join(f"MoE t = {t:g}" for t in thresholds) + " |\n"
    )
    out.write("|---|---|" + "---|" * len(thresholds) + "\n")
    for task in tasks:
        mine = {(r["arch"], r["threshold"]): r for r in rows if r["task"] == task}
        unified = mine.get(("unified", None))
        truth = next(r["true_mi"] for r in rows if r["task"] == task)
        cells = [f"{task} ({truth:.3f})"]
        cells.append(
            "–" if unified is None else f"{abs(unified['error']):.3f} / {abs(unified['error_orthogonal']):.3f}"
        )
        for t in thresholds:
            r = mine.get(("moe", t))
            if r is None:
                cells.append("–")
                continue
            text = f"{abs(r['error']):.3f} / {abs(r['error_orthogonal']):.3f}"
            better = unified is not None and abs(r["error"]) <= abs(unified["error"])
            cells.append(f"**{text}**" if better else text)
        out.write("| " + " | ".join(cells) + " |\n")
    widths = sorted({(r["task"], r["model_dim"], r["parameters"]) for r in rows if r["arch"] == "unified"})
    if widths:
        out.write("\nUnified widths at the mixture's parameter count: ")
        out.write("; ".join(f"{t}: width {w} ({p:,} parameters)" for t, w, p in widths) + ".\n")
    return out.getvalue()


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(dict.fromkeys(r["task"] for r in rows))
    fig, axes = plt.subplots(1, len(tasks), figsize=(3.2 * len(tasks), 3.2), squeeze=False, constrained_layout=True)
    for axis, task in zip(axes[0], tasks, strict=True):
        moe = sorted((r for r in rows if r["task"] == task and r["arch"] == "moe"), key=lambda r: r["threshold"])
        axis.plot([r["threshold"] for r in moe], [abs(r["error"]) for r in moe], "o-", label="MoE, direct")
        axis.plot(
            [r["threshold"] for r in moe], [abs(r["error_orthogonal"]) for r in moe], "^--", label="MoE, orthogonal"
        )
        for r in rows:
            if r["task"] == task and r["arch"] == "unified":
                axis.axhline(abs(r["error"]), color="black", label="unified (equal params), direct")
        axis.set_title(task, fontsize=8)
        axis.set_xlabel("snr_threshold (log-SNR)")
    axes[0][0].set_ylabel("|error| (nats)")
    axes[0][0].legend(fontsize=7)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=[*SYNTHETIC, *BMI_TASKS])
    parser.add_argument("--thresholds", nargs="+", type=float, default=list(THRESHOLDS))
    parser.add_argument("--steps", type=int, default=6000, help="step cap of every run (held-out selection on)")
    parser.add_argument("--n_train", type=int, default=100_000, help="training rows of the synthetic tasks")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--report_only", action="store_true")
    args = parser.parse_args(argv)
    store = args.out / "moe-threshold.jsonl"
    if not args.report_only:
        done = {_key(r) for r in read_rows(store)}
        jobs = [(t, "unified", None, args.steps, args.n_train, args.seed) for t in args.tasks]
        jobs += [(t, "moe", th, args.steps, args.n_train, args.seed) for t in args.tasks for th in args.thresholds]
        jobs = [j for j in jobs if (j[0], j[1], j[2]) not in done]
        with multiprocessing.get_context("spawn").Pool(args.workers, initializer=_init_worker) as pool:
            for row in pool.imap_unordered(_job, jobs):
                append_atomic(store, [row])
                print(
                    f"{row['task']} {row['arch']} t={row['threshold']} |err| {abs(row['error']):.3f} "
                    f"/ {abs(row['error_orthogonal']):.3f} ({row['seconds']:.0f} s)",
                    flush=True,
                )
    rows = [r for r in read_rows(store) if r["task"] in args.tasks]
    text = report(rows)
    (args.out / "moe-threshold.md").write_text(text)
    if rows:
        plot(rows, args.out / "moe-threshold.png")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
