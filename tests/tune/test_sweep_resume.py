"""An interrupted driver, run again with the same command, resumes without repeating finished trials."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
from sweep_helpers import tiny_config, write_config

from tune.cli import main

FINISHED_LINE = re.compile(r"^\[\d+/\d+\] (\w+) ", re.MULTILINE)
TRIALS, REPORTS = 3, 12  # 360 steps, a report every 30, no early stopping (FIFO), one trial at a time


def _command(config: Path, storage: Path, address: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "tune.cli",
        "run",
        str(config),
        "--storage",
        str(storage),
        "--address",
        address,
    ]


def _env() -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}, "PYTHONUNBUFFERED": "1"}


def _early_in_a_trial(log: Path, experiment: Path) -> bool:
    """The moment to interrupt: one trial finished, another has checkpointed but is far from done."""
    if not (log.exists() and FINISHED_LINE.search(log.read_text())):
        return False
    finished = set(FINISHED_LINE.findall(log.read_text()))
    for folder in experiment.glob("trial_*"):
        saved = [int(p.name.removeprefix("checkpoint_")) for p in folder.glob("checkpoint_*")]
        if folder.name.removeprefix("trial_") not in finished and saved and max(saved) < REPORTS // 2:
            return True
    return False


def _interrupt_mid_sweep(command: list[str], log: Path, experiment: Path, cwd: Path) -> int:
    with log.open("w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=_env(), cwd=cwd)
        try:
            deadline = time.monotonic() + 600  # generous: a busy CI machine is slow, not broken
            while not _early_in_a_trial(log, experiment) and process.poll() is None:
                assert time.monotonic() < deadline, log.read_text()[-3000:]
                time.sleep(0.1)
            assert process.poll() is None, log.read_text()[-3000:]
            process.send_signal(signal.SIGINT)
            return process.wait(timeout=120)
        finally:
            if process.poll() is None:
                process.kill()


def test_interrupted_sweep_resumes_without_rerunning_finished_trials(local_ray, tmp_path, capsys) -> None:
    """Both drivers join the session's Ray (``--address``), as drivers on a cluster would."""
    config = tiny_config(
        name="resume",
        estimator={"max_steps": 30 * REPORTS},
        search={"num_samples": TRIALS, "points_to_evaluate": []},
        scheduler={"type": "fifo"},
        trials={"max_concurrent_trials": 1},
    )
    path, storage = write_config(tmp_path, config), tmp_path / "results"
    experiment, log = storage / "resume", tmp_path / "first.log"
    command = _command(path, storage, local_ray.get_runtime_context().gcs_address)

    code = _interrupt_mid_sweep(command, log, experiment, tmp_path)
    first = log.read_text()
    finished_first = FINISHED_LINE.findall(first)
    assert code == 130 and "interrupted; run the same command again" in first, first[-3000:]
    assert 1 <= len(finished_first) < TRIALS

    # Resuming with another search space would mix two experiments: refused, nothing touched.
    changed = write_config(tmp_path, {**config, "search": {**config["search"], "seed": 1}}, "changed.yaml")
    assert main(["run", str(changed), "--storage", str(storage)]) == 2
    assert "search: differs from the config resume started with" in capsys.readouterr().err

    second = subprocess.run(command, capture_output=True, text=True, env=_env(), cwd=tmp_path, timeout=300)
    logs = f"first run:\n{first[-3000:]}\nsecond run:\n{second.stdout[-3000:]}{second.stderr[-3000:]}"
    assert second.returncode == 0, logs
    assert "resuming resume" in second.stdout, logs
    finished_second = FINISHED_LINE.findall(second.stdout)
    assert sorted(finished_first + finished_second) == sorted({*finished_first, *finished_second}), logs
    assert len(finished_first) + len(finished_second) == TRIALS == len(list(experiment.glob("trial_*"))), logs

    resumed = 0
    for folder in experiment.glob("trial_*"):
        reports = pd.read_csv(folder / "progress.csv")
        assert list(reports["training_iteration"]) == list(range(1, REPORTS + 1)), f"{folder.name}\n{logs}"
        # A trial cut off mid-way continues from its checkpoint instead of starting over.
        resumed += bool((reports["iterations_since_restore"] < reports["training_iteration"]).any())
    assert resumed >= 1, logs

    capsys.readouterr()
    assert main(["status", "resume", "--storage", str(storage)]) == 0
    assert f"resume: finished; {TRIALS} trials ({TRIALS} TERMINATED)" in capsys.readouterr().out
