"""One bad night of a real sweep: every fault of the suite that needs a running sweep, in order.

``dmi-tune run`` is started as a user would, in its own process with its own local Ray,
recording to a real ``mlflow server``:

1. run 1: one trial diverges (learning rate 1e6: a real NaN), one trial's worker is
   SIGKILLed mid-way (Tune retries it from its checkpoint), then the driver itself is
   SIGKILLed while one trial is finished and another is mid-way. The retried trial's new
   worker is SIGSTOPped once it has reported again, so that on a machine of any speed a
   trial is still mid-way when another has finished (it is continued after the kill);
2. run 2, the same command: the sweep resumes; once it trains again the server is
   SIGKILLed, and the sweep finishes without it (records go to the journal);
3. with the store down, a new sweep is refused at once (exit 2, nothing started) and
   ``dmi-tune sync`` keeps the journal; the server is restarted on the same port and
   ``dmi-tune sync`` writes what was missing.

Everything observed on the way is kept in a ``Night`` for the tests to check.
"""

from __future__ import annotations

import contextlib
import glob
import io
import json
import os
import signal
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from fault_helpers import (
    MlflowServer,
    Process,
    cmdline,
    dmi_tune,
    environment,
    listening_sockets,
    session_pids,
    wait_for,
    working_dir,
)

MAX_STEPS, VAL_EVERY = 480, 20  # a trial of 24 reports: long enough for the harness to catch one mid-way
REPORTS = MAX_STEPS // VAL_EVERY
DIVERGING_LR = 1e6  # Adam at this rate overflows the network at once: the loss turns NaN
LEARNING_RATES = [3e-3, DIVERGING_LR, 2e-3, 1e-3]
MAX_FAILURES = 1
NIGHT: dict[str, Any] = {
    "name": "night",
    "objective": "val_loss",
    "data": {"task_type": "multinormal", "dim": 3, "strength": 2, "n_train": 2000, "n_val": 400, "n_test": 500},
    "estimator": {
        "max_steps": MAX_STEPS,
        "patience": 1000,  # every trial makes all its reports
        "model_dim": 8,
        "n_blocks": 1,
        "batch_size": 128,
        "val_n_logsnr": 8,
        "n_logsnr": 16,
    },
    "search": {
        "num_samples": len(LEARNING_RATES),
        "seed": 0,
        "params": {"learning_rate": {"choices": LEARNING_RATES}},
        "points_to_evaluate": [{"learning_rate": lr} for lr in LEARNING_RATES],
    },
    "scheduler": {"type": "fifo"},
    "trials": {
        "val_every_n_steps": VAL_EVERY,
        "resources": {"cpu": 1},
        "max_concurrent_trials": 2,
        "max_failures": MAX_FAILURES,
    },
    "ray": {"num_cpus": 2, "object_store_mb": 100},
    "final_n_logsnr": 16,
    "tracking": True,
    "time_budget_s": 3600,  # never reached: the night checks that the spent seconds survive the kill
}


@dataclass
class Night:
    folder: Path
    server: MlflowServer
    storage: Path = field(init=False)
    experiment: Path = field(init=False)
    refused: tuple[int, str, str] = (0, "", "")  # exit code, output, the closed URI
    killed_worker: tuple[str, int] = ("", -1)  # trial folder, its last checkpoint index at the kill
    sockets: dict[int, tuple[str, set]] = field(default_factory=dict)  # pid: (command, listening)
    saved_at_kill: dict[str, str] = field(default_factory=dict)  # trial id: status on disk after the kill
    kept_progress: dict[str, str] = field(default_factory=dict)  # finished trial: progress.csv at the kill
    checkpointed_at_kill: list[str] = field(default_factory=list)  # unfinished trials with a checkpoint
    driver_killed_at: float = 0.0  # time.time()
    budget_spent_at_kill: float = 0.0  # what the budget file said after the driver's SIGKILL
    environments: dict[int, dict[str, str]] = field(default_factory=dict)  # pid: environment at start
    second: tuple[int, str] = (0, "")
    journaled: int = 0
    sync_down: tuple[int, str] = (0, "")
    sync_up: tuple[int, str] = (0, "")
    during_outage: tuple[int, int, list[str]] = (0, 0, [])  # count_records on the dead server's database
    left_by_run_1: list[str] = field(default_factory=list)  # its processes still alive when run 2 ended
    phases: list[tuple[str, float]] = field(default_factory=list)  # (what, seconds since the start)

    def mark(self, what: str) -> None:
        if not self.phases:
            self._began = time.monotonic()
        self.phases.append((what, round(time.monotonic() - self._began, 1)))

    def __post_init__(self) -> None:
        self.storage = self.folder / "results"
        self.experiment = self.storage / NIGHT["name"]


def checkpoint_indices(trial_dir: Path) -> list[int]:
    return sorted(int(p.name.rsplit("_", 1)[1]) for p in trial_dir.glob("checkpoint_*"))


def saved_statuses(experiment: Path) -> dict[str, str]:
    """Trial statuses in Tune's latest experiment snapshot (what a restart will see), read cheaply."""
    files = sorted(glob.glob(str(experiment / "experiment_state-*.json")))
    if not files:
        return {}
    try:
        state = json.loads(Path(files[-1]).read_text())
    except (OSError, ValueError):  # caught mid-sync
        return {}
    trials = (json.loads(trial) for trial, _ in state["trial_data"])
    return {t["trial_id"]: t["status"] for t in trials}


def saved_failures(experiment: Path, trial_id: str) -> int:
    """The trial's failure count in Tune's latest experiment snapshot (0 if not yet there)."""
    files = sorted(glob.glob(str(experiment / "experiment_state-*.json")))
    try:
        state = json.loads(Path(files[-1]).read_text()) if files else {"trial_data": []}
    except (OSError, ValueError):  # caught mid-sync
        return 0
    for trial, metadata in state["trial_data"]:
        if json.loads(trial)["trial_id"] == trial_id:
            return int(json.loads(metadata).get("num_failures", 0))
    return 0


def trial_workers(driver: Process, trial: str) -> list[int]:
    """Every process of this driver's session titled as a trial worker and working in ``trial``'s folder.

    A worker's forked children carry its title and folder too, so the trial's actor is one of these, not
    necessarily the first: a fault aimed at the trial goes to all of them.
    """
    return [
        pid
        for pid in session_pids(driver.pid)
        if cmdline(pid).startswith("ray::ImplicitFunc") and Path(working_dir(pid)).name == trial
    ]


def worker_mid_trial(driver: Process, experiment: Path) -> tuple[str, int, list[int]] | None:
    """(trial folder, checkpoint index, worker pids) of a trial that has reported twice and has far to go."""
    for pid in session_pids(driver.pid):
        if not cmdline(pid).startswith("ray::ImplicitFunc"):
            continue
        trial = Path(working_dir(pid)).name
        indices = checkpoint_indices(experiment / trial) if trial.startswith("trial_") else []
        if indices and 1 <= indices[-1] <= REPORTS // 2:
            return trial, indices[-1], trial_workers(driver, trial)
    return None


def newest_checkpoint_write(trial_dir: Path) -> float:
    """The latest modification time of a file in the trial's checkpoints (0 if none); a rewrite in place counts."""
    newest = 0.0
    for path in trial_dir.glob("checkpoint_*/*"):
        with contextlib.suppress(OSError):  # a checkpoint deleted or replaced while listed
            newest = max(newest, path.stat().st_mtime)
    return newest


class RetriedWorker:
    """Called until true: SIGSTOPs the retried worker of ``trial`` once it has written a checkpoint; its pids.

    The retried worker is a process titled as the trial's worker that was not killed, so no report of the
    dying one can be taken for it; its checkpoint must be written after it was first seen. (Waiting for Tune's
    ``error.txt`` first, as before, depended on when Tune wrote that file: once, in a clean-clone CI, the retried
    trial had finished before the harness counted its reports.) A stopped worker keeps its trial RUNNING and
    mid-way however fast the machine runs the others.
    """

    def __init__(self, driver: Process, trial_dir: Path, killed: list[int]) -> None:
        self.driver, self.trial_dir, self.killed = driver, trial_dir, set(killed)
        self.first_seen: float | None = None

    def __call__(self) -> list[int] | None:
        retry = [pid for pid in trial_workers(self.driver, self.trial_dir.name) if pid not in self.killed]
        if not retry:
            return None
        if self.first_seen is None:
            self.first_seen = time.time()
            return None
        if newest_checkpoint_write(self.trial_dir) <= self.first_seen:
            return None
        for pid in retry:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)
        return retry


def training(driver: Process) -> bool:
    """A trial of this driver's is inside ``train`` (Ray titles the worker process so)."""
    return any(cmdline(pid).startswith("ray::ImplicitFunc.train") for pid in session_pids(driver.pid))


def finished_and_mid_way(experiment: Path) -> bool:
    """The moment to kill the driver: a trial finished on disk, another running with far to go."""
    statuses = saved_statuses(experiment)
    if "TERMINATED" not in statuses.values():
        return False
    for trial_id, status in statuses.items():
        indices = checkpoint_indices(experiment / f"trial_{trial_id}")
        if status == "RUNNING" and indices and indices[-1] <= REPORTS - 3:
            return True
    return False


def parent_starts(database: Path) -> int:
    """How often the sweep's parent run was opened (its ``dmi.starts`` tag), read from the server's sqlite."""
    if not database.exists():
        return 0
    try:
        with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=1)) as db:
            rows = db.execute("SELECT value FROM tags WHERE key = 'dmi.starts'").fetchall()
    except sqlite3.Error:
        return 0
    return max((int(v) for (v,) in rows), default=0)


def mlflow_runs(client) -> tuple[list, dict[str, list]]:
    """The night sweep's parent runs, and its child runs by trial id."""
    experiment = client.get_experiment_by_name(NIGHT["name"])
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    parents = [r for r in runs if r.data.tags.get("dmi.role") == "sweep"]
    children: dict[str, list] = {}
    for run in runs:
        if run.data.tags.get("dmi.role") == "trial":
            children.setdefault(run.data.tags["dmi.trial_id"], []).append(run)
    return parents, children


def count_records(client, experiment: Path) -> tuple[int, int, list[str]]:
    """(expected, found, what is missing): MLflow's record of the sweep against Tune's results on disk.

    Per trial: its child run, a ``val_loss`` point per report, its end status; for the sweep:
    its end (FINISHED, the final estimate, a registered model version).
    """
    import pandas as pd
    from ray.tune import ExperimentAnalysis

    parents, children = mlflow_runs(client)
    expected, found, missing = 0, 0, []
    for trial in ExperimentAnalysis(str(experiment)).trials:
        progress = experiment / f"trial_{trial.trial_id}" / "progress.csv"
        frame = pd.read_csv(progress) if progress.exists() and progress.stat().st_size else pd.DataFrame()
        reports = set(frame["training_iteration"]) if "training_iteration" in frame else set()
        runs = children.get(trial.trial_id, [])
        steps = {m.step for run in runs for m in client.get_metric_history(run.info.run_id, "val_loss")}
        failed = trial.status == "ERROR" or ("diverged" in frame and bool(frame["diverged"].eq(1).any()))
        ended = "FAILED" if failed else "FINISHED"
        checks = [("child run", bool(runs)), *((f"report {i}", i in steps) for i in sorted(reports))]
        checks.append((f"end {ended}", any(r.info.status == ended for r in runs)))
        expected += len(checks)
        found += sum(ok for _, ok in checks)
        missing += [f"trial {trial.trial_id}: {what}" for what, ok in checks if not ok]
    summary = json.loads((experiment / "dmi_summary.json").read_text())
    ended = [
        p
        for p in parents
        if p.info.status == "FINISHED"
        and p.data.metrics.get("final_mi") == summary["final_estimate"]["mi"]
        and client.search_model_versions(f"run_id = '{p.info.run_id}'")
    ]
    expected, found = expected + 1, found + bool(ended)
    missing += [] if ended else ["the sweep's end"]
    return expected, found, missing


def run_cli(*args: str) -> tuple[int, str]:
    """``dmi-tune ARGS`` in this process (for the quick commands); exit code and output."""
    from tune.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        code = main(list(args))
    return code, out.getvalue()


def run_night(night: Night, ledger) -> None:
    folder, server = night.folder, night.server
    config = folder / "night.yaml"
    config.write_text(yaml.safe_dump(NIGHT, sort_keys=False))
    command = dmi_tune("run", config, "--storage", night.storage, "--tracking-uri", server.uri)
    processes: list[Process] = []
    try:
        night.mark("start")
        server.start()
        night.mark("server up")

        # 1. Run 1: a diverging trial, a killed worker, a killed driver.
        first = Process(command, folder / "first.log", folder)
        processes.append(first)
        ledger.inject("diverging trial")  # by its config: learning rate 1e6
        trial, index, pids = wait_for(
            lambda: worker_mid_trial(first, night.experiment), 300, "a trial mid-way, its worker alive", first
        )
        night.mark("run 1 trial mid-way")
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        ledger.inject("worker SIGKILL")
        night.killed_worker = (trial, index)
        retried = RetriedWorker(first, night.experiment / trial, pids)
        frozen = wait_for(retried, 240, "the retried trial to report", first)
        night.mark("killed trial reported again, its worker stopped")
        pids = session_pids(first.pid)
        # A process that exits meanwhile reads as an empty command line: it listens on nothing any more.
        night.sockets = {p: (cmdline(p), listening_sockets([p])) for p in pids if cmdline(p)}
        night.environments = {p: environment(p) for p in pids}
        # A driver SIGKILL loses what Tune did since its last snapshot: the worker's failure must be in it.
        killed_id = trial.removeprefix("trial_")
        wait_for(
            lambda: finished_and_mid_way(night.experiment) and saved_failures(night.experiment, killed_id) >= 1,
            240,
            "a finished and a mid-way trial, the worker's failure saved",
            first,
        )
        first.kill()
        for pid in frozen:  # let them find their driver gone, as any other worker of run 1
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        night.mark("run 1 driver killed")
        ledger.inject("driver SIGKILL")
        night.driver_killed_at = time.time()
        night.budget_spent_at_kill = json.loads((night.experiment / "dmi_budget.json").read_text())["spent_s"]
        night.saved_at_kill = saved_statuses(night.experiment)
        for trial_id, status in night.saved_at_kill.items():
            folder = night.experiment / f"trial_{trial_id}"
            if status in ("TERMINATED", "ERROR") and (folder / "progress.csv").exists():
                night.kept_progress[trial_id] = (folder / "progress.csv").read_text()
            elif status not in ("TERMINATED", "ERROR") and checkpoint_indices(folder):
                night.checkpointed_at_kill.append(trial_id)

        # 2. Run 2, the same command; the MLflow server dies once the sweep has reopened its run.
        second = Process(command, folder / "second.log", folder)
        processes.append(second)
        wait_for(lambda: parent_starts(server.database) >= 2, 300, "run 2 to reopen the sweep's MLflow run", second)
        night.mark("run 2 reopened its run")
        wait_for(lambda: training(second), 300, "run 2 to train", second)
        server.kill()
        night.mark("run 2 training, server killed")
        ledger.inject("MLflow server SIGKILL")
        night.second = (second.wait(420), second.text())
        night.mark("run 2 ended")
        night.left_by_run_1 = sorted(cmdline(pid)[:40] for pid in session_pids(first.pid))
        from tune.tracking.sync import Journal, journal_path

        night.journaled = len(Journal(journal_path(night.storage, NIGHT["name"])).records())

        # 3. With the store down, a new sweep is refused before it starts anything, and a
        #    sync keeps its journal; with the server back on the same port, sync writes it all.
        ledger.inject("MLflow unreachable at start")
        refused = run_cli(
            "run", str(config), "--storage", str(night.storage), "--name", "refused", "--tracking-uri", server.uri
        )
        night.refused = (*refused, server.uri)
        night.sync_down = run_cli("sync", NIGHT["name"], "--storage", str(night.storage))
        from mlflow import MlflowClient

        night.during_outage = count_records(MlflowClient(f"sqlite:///{server.database}"), night.experiment)
        night.mark("sync while down ended")
        server.start()
        night.mark("server up again")
        night.sync_up = run_cli("sync", NIGHT["name"], "--storage", str(night.storage))
        night.mark("synced")
    finally:
        for process in processes:
            process.end_session()
