"""Rows of the accuracy benchmark and what is made of them: the CSV, the summary, markdown, the plot.

One row per task × estimator × form. A 95 % interval is estimate ± 1.96 SE, and only estimators
that report an SE have one; coverage is computed over those rows alone.
"""

from __future__ import annotations

import csv
import io
import math
import os
import statistics
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

TOLERANCE = 0.5  # nats: the "|error| ≤ 0.5"
Z95 = 1.959963984540054
COLUMNS = (
    "task",
    "task_id",
    "dim",
    "true_mi",
    "estimator",
    "form",
    "estimate",
    "stderr",
    "ci_low",
    "ci_high",
    "covered",
    "abs_error",
    "seconds",
    "status",
    "note",
    "family",
    "dim_y",
    "n_samples",
    "steps",
)
FLOATS = {"true_mi", "estimate", "stderr", "ci_low", "ci_high", "abs_error", "seconds"}
INTS = {"dim", "dim_y", "n_samples", "steps"}
FAMILY_ORDER = ("multinormal", "half_cube", "spiral", "bmi")


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def make_row(
    task,
    estimator: str,
    form: str,
    estimate: float | None,
    stderr: float | None,
    seconds: float,
    status: str,
    note: str = "",
    n_samples: int | None = None,
    steps: int | None = None,
) -> dict[str, Any]:
    """A result row; interval, coverage and error follow from estimate, SE and the task's truth."""
    if status == "ok" and not _finite(estimate):
        status, note = "failed", "; ".join(filter(None, ["non-finite estimate", note]))
    ok = status == "ok"
    has_se = ok and _finite(stderr)
    low = estimate - Z95 * stderr if has_se else None
    high = estimate + Z95 * stderr if has_se else None
    return {
        "task": task.label,
        "task_id": task.task_id,
        "dim": task.dim_x,
        "true_mi": task.true_mi,
        "estimator": estimator,
        "form": form,
        "estimate": estimate if ok else None,
        "stderr": stderr if has_se else None,
        "ci_low": low,
        "ci_high": high,
        "covered": (low <= task.true_mi <= high) if has_se else None,
        "abs_error": abs(estimate - task.true_mi) if ok else None,
        "seconds": seconds,
        "status": status,
        "note": note,
        "family": task.family,
        "dim_y": task.dim_y,
        "n_samples": n_samples,
        "steps": steps,
    }


# ---------------------------------------------------------------- summary


def series(rows: Iterable[dict[str, Any]]) -> list[tuple[str, str]]:
    """(estimator, form) pairs in order of first appearance."""
    seen: dict[tuple[str, str], None] = {}
    for row in rows:
        seen.setdefault((row["estimator"], row["form"]), None)
    return list(seen)


def summarize(rows: list[dict[str, Any]], tolerance: float = TOLERANCE) -> list[dict[str, Any]]:
    """Per (estimator, form): |error| ≤ tolerance over tasks with an estimate, coverage of the 95 %
    interval over tasks with an SE (None when there is none), and the failures beside them."""
    out = []
    for estimator, form in series(rows):
        mine = [r for r in rows if r["estimator"] == estimator and r["form"] == form]
        ok = [r for r in mine if r["status"] == "ok" and _finite(r["estimate"])]
        with_se = [r for r in ok if _finite(r["stderr"])]
        within = sum(r["abs_error"] <= tolerance for r in ok)
        covered = sum(bool(r["covered"]) for r in with_se)
        out.append(
            {
                "estimator": estimator,
                "form": form,
                "tasks": len(mine),
                "ok": len(ok),
                "within": within,
                "frac_within": within / len(ok) if ok else None,
                "with_se": len(with_se),
                "covered": covered,
                "coverage": covered / len(with_se) if with_se else None,
                "failed": sum(r["status"] == "failed" for r in mine),
                "skipped": sum(r["status"] == "skipped" for r in mine),
                "median_abs_error": statistics.median(r["abs_error"] for r in ok) if ok else None,
                "mean_seconds": statistics.fmean(r["seconds"] for r in mine if _finite(r["seconds"]))
                if any(_finite(r["seconds"]) for r in mine)
                else None,
            }
        )
    return out


def fraction(k: int, n: int) -> str:
    return f"{k}/{n} ({100 * k / n:.0f} %)" if n else "n/a"


def series_label(estimator: str, form: str) -> str:
    return estimator if form == "point" else f"{estimator} ({form})"


# ---------------------------------------------------------------- markdown


def summary_lines(summary: list[dict[str, Any]], tolerance: float = TOLERANCE) -> list[str]:
    lines = []
    for s in summary:
        coverage = (
            f"covers the truth on {fraction(s['covered'], s['with_se'])} tasks"
            if s["with_se"]
            else "n/a (no standard error)"
        )
        lines.append(
            f"- {series_label(s['estimator'], s['form'])}: |error| ≤ {tolerance:g} nats on "
            f"{fraction(s['within'], s['ok'])} tasks with an estimate; 95 % interval {coverage}"
        )
    return lines


def summary_table(summary: list[dict[str, Any]], tolerance: float = TOLERANCE) -> list[str]:
    lines = [
        f"| estimator | form | tasks | estimates | \\|error\\| ≤ {tolerance:g} | 95 % CI covers truth "
        "| failed | skipped | median \\|error\\| | mean s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in summary:
        med = "–" if s["median_abs_error"] is None else f"{s['median_abs_error']:.2f}"
        secs = "–" if s["mean_seconds"] is None else f"{s['mean_seconds']:.0f}"
        coverage = fraction(s["covered"], s["with_se"]) if s["with_se"] else "n/a"
        lines.append(
            f"| {s['estimator']} | {s['form']} | {s['tasks']} | {s['ok']} | {fraction(s['within'], s['ok'])} "
            f"| {coverage} | {s['failed']} | {s['skipped']} | {med} | {secs} |"
        )
    return lines


def families(rows: list[dict[str, Any]]) -> list[str]:
    present = {r["family"] for r in rows}
    return [f for f in FAMILY_ORDER if f in present] + sorted(present - set(FAMILY_ORDER))


def family_table(rows: list[dict[str, Any]], tolerance: float = TOLERANCE) -> list[str]:
    """|error| ≤ tolerance per task family: spiral is reported apart, never averaged away."""
    fams = families(rows)
    lines = ["| estimator | form | " + " | ".join(fams) + " |", "|---|---|" + "---|" * len(fams)]
    for estimator, form in series(rows):
        cells = []
        for fam in fams:
            ok = [
                r
                for r in rows
                if r["estimator"] == estimator
                and r["form"] == form
                and r["family"] == fam
                and r["status"] == "ok"
                and _finite(r["estimate"])
            ]
            cells.append(fraction(sum(r["abs_error"] <= tolerance for r in ok), len(ok)))
        lines.append(f"| {estimator} | {form} | " + " | ".join(cells) + " |")
    return lines


def cell(row: dict[str, Any] | None) -> str:
    if row is None:
        return "–"
    if row["status"] != "ok":
        return row["status"]
    if _finite(row["stderr"]):
        return f"{row['estimate']:.2f} ± {row['stderr']:.2f}"
    return f"{row['estimate']:.2f}"


def task_table(rows: list[dict[str, Any]]) -> list[str]:
    """One line per task: the truth, then every estimator's estimate ± SE."""
    cols = series(rows)
    lines = [
        "| task | true MI | " + " | ".join(series_label(e, f) for e, f in cols) + " |",
        "|---|---|" + "---|" * len(cols),
    ]
    by_key = {(r["task_id"], r["estimator"], r["form"]): r for r in rows}
    tasks: dict[str, dict[str, Any]] = {}
    for r in rows:
        tasks.setdefault(r["task_id"], r)
    for task_id, first in tasks.items():
        cells = [cell(by_key.get((task_id, e, f))) for e, f in cols]
        lines.append(f"| {first['task']} | {first['true_mi']:.3f} | " + " | ".join(cells) + " |")
    return lines


def markdown(rows: list[dict[str, Any]], header: list[str], tolerance: float = TOLERANCE) -> str:
    summary = summarize(rows, tolerance)
    parts = [
        *header,
        "",
        *summary_lines(summary, tolerance),
        "",
        *summary_table(summary, tolerance),
        "",
        f"\\|error\\| ≤ {tolerance:g} nats by task family:",
        "",
        *family_table(rows, tolerance),
        "",
        "Estimates per task (nats; ± one standard error where the estimator reports one):",
        "",
        *task_table(rows),
    ]
    return "\n".join(parts) + "\n"


# ---------------------------------------------------------------- files


def write_atomic(path: Path, data: str | bytes) -> None:
    """Temporary file in the same folder, then a rename: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data.encode() if isinstance(data, str) else data)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; results are for everyone
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def csv_text(rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if row.get(k) is None else row[k] for k in COLUMNS})
    return buffer.getvalue()


def _parse(key: str, text: str) -> Any:
    if text == "":
        return None
    if key in FLOATS:
        return float(text)
    if key in INTS:
        return int(text)
    if key == "covered":
        if text not in ("True", "False"):
            raise ValueError(f"covered must be True, False or empty, got {text!r}")
        return text == "True"
    return text


def read_rows(path: Path) -> list[dict[str, Any]]:
    """Rows of a CSV this benchmark wrote (or one written by hand with the same columns)."""
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}: missing column(s) {', '.join(missing)}")
        return [{k: _parse(k, row[k]) for k in COLUMNS} for row in reader]


def plot_png(rows: list[dict[str, Any]], tolerance: float = TOLERANCE) -> bytes:
    """Estimate against truth per task, one panel per task family: the truth as a black bar in a grey
    ± tolerance band, each estimator beside it with its 95 % interval as an error bar."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fams, cols = families(rows), series(rows)
    per_family = {f: list(dict.fromkeys(r["task_id"] for r in rows if r["family"] == f)) for f in fams}
    widest = max(len(v) for v in per_family.values())
    size = (max(8.0, 0.25 * widest * max(2, len(cols)) + 4), 3.4 * len(fams) + 0.5)
    fig, axes = plt.subplots(len(fams), 1, figsize=size, squeeze=False)
    colors = plt.get_cmap("tab10")
    width = 0.8 / max(1, len(cols))
    for ax, fam in zip(axes[:, 0], fams, strict=True):
        ids = per_family[fam]
        first = {r["task_id"]: r for r in rows if r["family"] == fam}
        truth = [first[t]["true_mi"] for t in ids]
        ax.bar(
            range(len(ids)),
            2 * tolerance,
            bottom=[t - tolerance for t in truth],
            width=0.9,
            color="0.9",
            label=f"truth ± {tolerance:g} nats",
        )
        ax.hlines(
            truth,
            [i - 0.45 for i in range(len(ids))],
            [i + 0.45 for i in range(len(ids))],
            color="black",
            lw=1.5,
            label="true MI",
            zorder=3,
        )
        for k, (estimator, form) in enumerate(cols):
            pts = [
                r
                for r in rows
                if r["family"] == fam
                and (r["estimator"], r["form"]) == (estimator, form)
                and r["status"] == "ok"
                and _finite(r["estimate"])
            ]
            if not pts:
                continue
            xs = [ids.index(r["task_id"]) - 0.4 + width * (k + 0.5) for r in pts]
            err = [Z95 * r["stderr"] if _finite(r["stderr"]) else 0.0 for r in pts]
            ax.errorbar(
                xs,
                [r["estimate"] for r in pts],
                yerr=err,
                fmt="o",
                ms=4,
                capsize=2,
                zorder=4,
                color=colors(k % 10),
                label=series_label(estimator, form),
            )
        rotation = 90 if fam == "bmi" else 0  # bmi ids are long; grid labels are short ("d3 s200")
        ax.set_xticks(range(len(ids)), [_short_label(first[t]) for t in ids], rotation=rotation, fontsize=7)
        ax.set_xlim(-0.6, len(ids) - 0.4)
        ax.set_ylabel("MI (nats)")
        ax.set_title(fam)
        ax.grid(axis="y", alpha=0.3)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=7, ncol=min(5, len(labels)), loc="upper center", frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.5 / size[1]))
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return buffer.getvalue()


def _short_label(row: dict[str, Any]) -> str:
    if row["family"] == "bmi":
        return row["task_id"]
    strength = row["task"].split("_sparse_")[-1].split("_dim_")[0]
    return f"d{row['dim']} s{strength}"


def write_outputs(rows: list[dict[str, Any]], out: Path, header: list[str]) -> str:
    """accuracy.csv, accuracy.md and accuracy.png under ``out``, each written atomically."""
    if not rows:
        raise ValueError("no result rows to report")
    text = markdown(rows, header)
    write_atomic(out / "accuracy.csv", csv_text(rows))
    write_atomic(out / "accuracy.md", text)
    write_atomic(out / "accuracy.png", plot_png(rows))
    return text
