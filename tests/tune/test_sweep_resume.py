"""An interrupted driver, run again with the same command, resumes without repeating finished trials."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from sweep_helpers import tiny_config, write_config

from tune.budget import BUDGET_FILE
from tune.cli import main

FINISHED_LINE = re.compile(r"^\[\d+/\d+\] (\w+) ", re.MULTILINE)
TRIALS, REPORTS = 3, 12  # 360 steps, a report every 30, no early stopping (FIFO), one trial at a time
BUDGET_S = 900.0


def _sweep_config(name: str) -> dict:
    """TRIALS trials of REPORTS reports, one at a time; a time budget far above what they need."""
    return tiny_config(
        name=name,
        estimator={"max_steps": 30 * REPORTS},
        search={"num_samples": TRIALS, "points_to_evaluate": []},
        scheduler={"type": "fifo"},
        trials={"max_concurrent_trials": 1},
        time_budget_s=BUDGET_S,  # spent seconds are kept across runs (tune.budget)
    )


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
    """The moment to interrupt: one trial finished, another has a checkpoint the driver knows of but is far from done.

    A checkpoint folder appears on disk before the driver registers it (Tune saves it in a
    later step of its event loop); an interrupt in between restarts that trial from scratch,
    as Tune intends. The trainable writes its second checkpoint only after the driver has
    processed the first, so a second one on disk means the first is in the saved state; the
    second's own report may still be in flight, and is then logged again after the restore.
    """
    if not (log.exists() and FINISHED_LINE.search(log.read_text())):
        return False
    finished = set(FINISHED_LINE.findall(log.read_text()))
    for folder in experiment.glob("trial_*"):
        saved = [int(p.name.removeprefix("checkpoint_")) for p in folder.glob("checkpoint_*")]
        if folder.name.removeprefix("trial_") not in finished and saved and 1 <= max(saved) < REPORTS // 2:
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
    config = _sweep_config("resume")
    path, storage = write_config(tmp_path, config), tmp_path / "results"
    experiment, log = storage / "resume", tmp_path / "first.log"
    command = _command(path, storage, local_ray.get_runtime_context().gcs_address)

    code = _interrupt_mid_sweep(command, log, experiment, tmp_path)
    first = log.read_text()
    finished_first = FINISHED_LINE.findall(first)
    assert code == 130 and "interrupted; run the same command again" in first, first[-3000:]
    assert 1 <= len(finished_first) < TRIALS
    spent_first = json.loads((experiment / BUDGET_FILE).read_text())["spent_s"]
    assert 0 < spent_first < BUDGET_S

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
        iterations = list(reports["training_iteration"])
        # Tune logs a report before it registers that report's checkpoint (a later step of its event
        # loop): an interrupt in between resumes from the checkpoint before, and the report in flight
        # is logged again, once, right after the restore. Nothing else may repeat or go missing.
        repeated = [i for i, (a, b) in enumerate(zip(iterations, iterations[1:], strict=False)) if b <= a]
        assert sorted(set(iterations)) == list(range(1, REPORTS + 1)), f"{folder.name}\n{logs}"
        assert len(repeated) <= 1 and len(iterations) - REPORTS == len(repeated), f"{folder.name}\n{logs}"
        if repeated:
            restart = reports.iloc[repeated[0] + 1]
            assert restart["iterations_since_restore"] == 1, f"{folder.name}\n{logs}"
            assert restart["training_iteration"] == iterations[repeated[0]], f"{folder.name}\n{logs}"
        # A trial cut off mid-way continues from its checkpoint instead of starting over.
        resumed += bool((reports["iterations_since_restore"] < reports["training_iteration"]).any())
    assert resumed >= 1, logs

    # The budget went on from what the first run spent, not from zero.
    spent_both = json.loads((experiment / BUDGET_FILE).read_text())["spent_s"]
    summary = json.loads((experiment / "dmi_summary.json").read_text())
    assert spent_first < spent_both and abs(spent_both - summary["budget_spent_s"]) <= 0.1, logs
    assert summary["state"] == "finished", logs

    capsys.readouterr()
    assert main(["status", "resume", "--storage", str(storage)]) == 0
    assert f"resume: finished; {TRIALS} trials ({TRIALS} TERMINATED)" in capsys.readouterr().out


# 55-65 s. The default run keeps what it checks: the fault night's killed driver resumes with the seconds it had
# spent (test_a_killed_driver_resumes_keeping_finished_trials), and a budget ends a tracked night
# (tests/tune/test_overnight.py); the full suite had passed 10 minutes on this 2-core machine.
@pytest.mark.slow
def test_a_resumed_sweep_goes_on_with_what_is_left_of_its_time_budget(local_ray, tmp_path) -> None:
    """Tune's own time_budget_s would start again from zero; the sweep's budget file says what is left."""
    config = _sweep_config("budget")
    path, storage = write_config(tmp_path, config), tmp_path / "results"
    experiment, log = storage / "budget", tmp_path / "first.log"
    command = _command(path, storage, local_ray.get_runtime_context().gcs_address)
    assert _interrupt_mid_sweep(command, log, experiment, tmp_path) == 130, log.read_text()[-3000:]

    # As if the first run had spent all but one second of it (a long night cut short).
    ledger = experiment / BUDGET_FILE
    assert 0 < json.loads(ledger.read_text())["spent_s"] < BUDGET_S
    ledger.write_text(json.dumps({"time_budget_s": BUDGET_S, "spent_s": BUDGET_S - 1.0}))
    began = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, env=_env(), cwd=tmp_path, timeout=300)
    logs = done.stdout[-3000:] + done.stderr[-3000:]
    assert done.returncode == 3 and "resuming budget" in done.stdout, logs
    assert "the time budget ended the search" in done.stdout, logs
    summary = json.loads((experiment / "dmi_summary.json").read_text())
    assert summary["state"] == "time_budget" and summary["budget_spent_s"] >= BUDGET_S, logs
    assert summary["trial_counts"].get("TERMINATED", 0) < TRIALS  # the search ended before it was done
    assert time.monotonic() - began < 120, "the resumed sweep did not stop when its budget ran out"
