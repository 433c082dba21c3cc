"""``--run_all`` killed with SIGKILL mid-way, then rerun: only the interrupted configuration runs again."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cli_helpers import TINY, read_lines

GRID = ["--run_all", "--dims", "3", "--strengths", "200", "650", "1100", "--task_types", "multinormal"]
ARGS = ["train", *TINY, "--max_steps", "120", "--mi_estimation_interval", "5", "--patience", "1000", *GRID]


def wait_for(condition, timeout: float, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, proc.communicate()[0]
        assert time.monotonic() < deadline, "timed out waiting for the run to get there"
        time.sleep(0.02)


@pytest.mark.faults
def test_killed_run_all_repeats_only_the_interrupted_configuration(workdir: Path, dmi) -> None:
    results = workdir / "results_unified_600.jsonl"
    second = workdir / "checkpoints" / "multinormal_sparse_650_dim_3"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    code = "import sys; from dmi.cli import main; sys.exit(main())"
    proc = subprocess.Popen(
        [sys.executable, "-c", code, *ARGS],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        # Kill while the second configuration is training (its periodic checkpoint exists).
        wait_for(lambda: results.exists() and any(second.glob("*.ckpt")), 120, proc)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    before = read_lines(results)  # every line whole, the file ends with a newline
    assert [r["task"] for r in before] == ["multinormal_sparse_200_dim_3"]
    first_line = results.read_text()

    # Rerun with --load_ckpt: the finished one is skipped, the interrupted one resumes
    # from its last periodic checkpoint, the one never started trains.
    code, out, _ = dmi(*ARGS, "--load_ckpt")
    assert code == 0 and out.count("skipped") == 1
    after = read_lines(results)
    assert results.read_text().startswith(first_line)
    assert [r["task"] for r in after] == [
        "multinormal_sparse_200_dim_3",
        "multinormal_sparse_650_dim_3",
        "multinormal_sparse_1100_dim_3",
    ]
    assert [r["checkpoint_action"] for r in after[1:]] == ["resumed", "trained"]
    assert all(r["trained_steps"] == 120 for r in after)

    code, out, _ = dmi(*ARGS)  # and once complete, nothing runs again
    assert code == 0 and out.count("skipped") == 3 and len(read_lines(results)) == 3
