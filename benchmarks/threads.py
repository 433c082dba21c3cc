"""Training speed of the CLI and the library at 1, 2, ... torch threads and at ``auto``, idle and under load.

Each measurement is a fresh process started in its own session, as a terminal or cron
starts one. It trains the library's default estimator (default width, patience off, so
every run makes all ``--steps`` steps) on a 3,000-row CSV, and its steps/s is the trained
steps over its training seconds. The CLI is ``dmi estimate --threads N --json``, the
library ``DiffusionMI(threads=N).estimate_with_info``; N is a count or ``auto`` (the default).
"Loaded" adds one busy-looping process in another session, the "other core busy" of a shared machine. A measured
process that passes ``--timeout`` is killed, and its row then says "> timeout".
``--passive`` adds rows with ``OMP_WAIT_POLICY=PASSIVE`` (OpenMP threads sleep instead of
spinning while they wait for work). ``--baseline DIR`` adds rows for the code in DIR (a checkout
of an earlier commit, imported first through PYTHONPATH) at its own default threads, measured in
the same run: the earlier release's speed beside the new one. With ``--repeats``, the cells are
measured in turn, so that the machine's drift over the run falls on every cell alike.

    python benchmarks/threads.py [--threads 1 2 auto] [--steps 200] [--repeats 3] [--passive] [--out FILE.md]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

LIBRARY = """
import json, sys
from dmi.api import DiffusionMI
import numpy as np
table = np.loadtxt(sys.argv[1], delimiter=",", skiprows=1)
dx = int(sys.argv[4])
threads = sys.argv[2] if sys.argv[2] in ("auto", "None") else int(sys.argv[2])
est = DiffusionMI(threads=threads, max_steps=int(sys.argv[3]), patience=10**6)
info = est.estimate_with_info(table[:, :dx], table[:, dx:]).additional_information
print(json.dumps({"trained_steps": info["trained_steps"], "train_seconds": info["train_seconds"]}))
"""


def write_sample(path: Path, rows: int, dim: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, dim))
    y = 0.8 * x + 0.6 * rng.normal(size=(rows, dim))
    header = ",".join([f"x{i}" for i in range(dim)] + [f"y{i}" for i in range(dim)])
    np.savetxt(path, np.hstack([x, y]), delimiter=",", header=header, comments="")


@contextlib.contextmanager
def busy_core(on: bool) -> Iterator[None]:
    """One process spinning in a session of its own while the block runs."""
    if not on:
        yield
        return
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"], start_new_session=True)
    time.sleep(1.0)  # let the scheduler see it
    try:
        yield
    finally:
        spinner.kill()
        spinner.wait()


def clean_env(extra: dict[str, str]) -> dict[str, str]:
    """No inherited thread settings: the measured process chooses by its own ``--threads``."""
    drop = {"OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY"}
    return {**{k: v for k, v in os.environ.items() if k not in drop}, **extra}


def measure(command: list[str], timeout: float, extra_env: dict[str, str]) -> float | None:
    """Steps/s of one fresh process in its own session; None if it ran past ``timeout``."""
    try:
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=timeout,
            start_new_session=True,
            env=clean_env(extra_env),
            cwd=tempfile.gettempdir(),  # not a checkout: ``-m``/``-c`` put the working folder first on sys.path
        )
    except subprocess.TimeoutExpired:
        return None
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return result["trained_steps"] / result["train_seconds"]


def commands(kind: str, data: Path, threads: int | str | None, steps: int, dim: int) -> list[str]:
    """The measured command; ``threads`` None: no thread option at all (an earlier release's default)."""
    if kind == "cli":
        columns = ["--x", *[f"x{i}" for i in range(dim)], "--y", *[f"y{i}" for i in range(dim)]]
        chosen = [] if threads is None else ["--threads", str(threads)]
        return [
            sys.executable, "-m", "dmi.cli", "estimate", str(data), *columns, *chosen,
            "--max_steps", str(steps), "--patience", str(10**6), "--json",
        ]  # fmt: skip
    library = LIBRARY if threads is not None else LIBRARY.replace("threads=threads, ", "")
    return [sys.executable, "-c", library, str(data), str(threads), str(steps), str(dim)]


def table(rows: list[dict], timeout: float) -> str:
    def cell(value: float | None) -> str:
        return f"> {timeout:.0f} s" if value is None else f"{value:.1f}"

    lines = [
        "| path | threads | idle steps/s | loaded steps/s | loaded / idle |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        ratio = "-" if r["loaded"] is None else f"{r['loaded'] / r['idle']:.2f}"
        lines.append(f"| {r['path']} | {r['threads']} | {cell(r['idle'])} | {cell(r['loaded'])} | {ratio} |")
    return "\n".join(lines)


def thread_option(text: str) -> int | str:
    """A count, or ``auto``."""
    return text if text == "auto" else int(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=thread_option, nargs="+", default=[1, 2, "auto"])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--rows", type=int, default=3000)
    parser.add_argument("--dim", type=int, default=5)
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--repeats", type=int, default=1, help="runs per cell; the median is reported")
    parser.add_argument("--passive", action="store_true", help="also measure with OMP_WAIT_POLICY=PASSIVE")
    parser.add_argument("--baseline", type=Path, default=None, help="also measure the code in this checkout")
    parser.add_argument("--out", type=Path, default=None, help="also write the table (markdown) here")
    args = parser.parse_args(argv)

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "sample.csv"
        write_sample(data, args.rows, args.dim)
        variants: list[tuple[str, dict[str, str], list[int | str | None]]] = [("", {}, list(args.threads))]
        if args.baseline:
            where = str(args.baseline.resolve())
            variants.append((f" ({args.baseline.name}, its default)", {"PYTHONPATH": where}, [None]))
        if args.passive:
            variants.append((" (OMP_WAIT_POLICY=PASSIVE)", {"OMP_WAIT_POLICY": "PASSIVE"}, list(args.threads)))
        cells = [
            ({"path": kind + label, "threads": "default" if threads is None else threads}, kind, threads, extra)
            for label, extra, thread_counts in variants
            for kind in ("cli", "library")
            for threads in thread_counts
        ]
        runs: dict[tuple[int, str], list[float | None]] = {}
        for condition in ("idle", "loaded"):
            for _ in range(args.repeats):  # round robin: the machine's drift falls on every cell alike
                for k, (row, kind, threads, extra) in enumerate(cells):
                    done = runs.setdefault((k, condition), [])
                    if None in done:
                        continue  # past the timeout once: repeating it says nothing more
                    with busy_core(condition == "loaded"):
                        done.append(measure(commands(kind, data, threads, args.steps, args.dim), args.timeout, extra))
                    print(f"{row['path']} threads={threads} {condition}: {done}", flush=True)
        for k, (row, *_) in enumerate(cells):
            for condition in ("idle", "loaded"):
                done = runs[(k, condition)]
                row[condition] = None if None in done else statistics.median(done)
            rows.append(row)
    text = table(rows, args.timeout)
    header = (
        f"{os.cpu_count()} CPUs; {args.rows} rows of a {args.dim}x{args.dim} Gaussian, library defaults "
        f"(patience off), {args.steps} steps per run, median of {args.repeats} run(s) per cell, "
        "the cells taken in turn; each run a fresh process in its own session; "
        "loaded = one busy-looping process in another session.\n\n"
    )
    print(header + text)
    if args.out:
        args.out.write_text(f"# Training speed by torch threads, idle and under load\n\n{header}{text}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
