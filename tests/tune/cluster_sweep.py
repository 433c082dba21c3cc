"""A sweep on a simulated 3-node Ray cluster, run as its own process (its own Ray, not the session's).

    python tests/tune/cluster_sweep.py OUT_DIR [--reports N] [--remove-node]

Nodes declare GPUs that do not exist (the trials fall back to the CPU). Four trials ask for
one CPU and half a GPU each and may all start at once; no node holds four (the head and the
first worker have one GPU, the second worker three CPUs), so they must spread. With
``--remove-node`` a worker node is removed as soon as one of its trials has saved a
checkpoint and has at least as many reports still to make. The script only runs and
records: ``OUT_DIR/observed.json`` holds the exit code, the nodes and every trial's reports,
and tests/tune/test_cluster.py judges them.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import threading
import time
import warnings
from pathlib import Path

from sweep_helpers import tiny_config

HEAD = {"num_cpus": 2, "num_gpus": 1}
WORKERS = ({"num_cpus": 3, "num_gpus": 1}, {"num_cpus": 3, "num_gpus": 2})
TRIAL_CPU, TRIAL_GPU, TRIALS = 1, 0.5, 4

SYSTEM_CONFIG = {
    # Notice a removed node within a few seconds, not the default ~30 s.
    "health_check_initial_delay_ms": 0,
    "health_check_period_ms": 1000,
    "health_check_failure_threshold": 3,
    # No idle workers started ahead on every node: on a 2-core machine they slow the trials' start.
    "prestart_worker_first_driver": False,
    "enable_worker_prestart": False,
}


def sweep_config(reports: int) -> dict:
    return tiny_config(
        name="cluster",
        estimator={"max_steps": 30 * reports},
        search={"num_samples": TRIALS},
        scheduler={"type": "fifo"},
        trials={
            "resources": {"cpu": TRIAL_CPU, "gpu": TRIAL_GPU},
            "max_concurrent_trials": TRIALS,
            "max_failures": 2,
        },
    )


def read_reports(experiment: Path) -> dict[str, list[dict]]:
    reports = {}
    for folder in experiment.glob("trial_*"):
        path = folder / "result.json"
        lines = path.read_text().splitlines() if path.exists() else []
        rows = []
        for line in lines:
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:  # a line being written
                break
        reports[folder.name.removeprefix("trial_")] = rows
    return reports


def remove_when_busy(cluster, nodes: list, experiment: Path, reports: int, removed: dict, stop: threading.Event):
    """Remove the first of ``nodes`` with a trial that has checkpointed at least once and is far from done."""
    by_id = {node.node_id: node for node in nodes}
    while not stop.is_set():
        for trial_id, rows in read_reports(experiment).items():
            last = rows[-1] if rows else {}
            if last.get("node_id") in by_id and 1 <= last["training_iteration"] <= reports // 2:
                removed.update(node_id=last["node_id"], trial_id=trial_id, at=time.time())
                cluster.remove_node(by_id[last["node_id"]], allow_graceful=False)
                removed["gone_at"] = time.time()
                return
        time.sleep(0.2)


def forget_address(address: str) -> None:
    """Cluster leaves its address where a bare ``ray.init()`` on this machine would join it: remove it."""
    from ray._common.utils import get_ray_address_file

    path = Path(get_ray_address_file(None))
    if path.exists() and path.read_text().strip() == address:
        path.unlink(missing_ok=True)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--reports", type=int, default=3)
    parser.add_argument("--remove-node", action="store_true")
    args = parser.parse_args()
    warnings.simplefilter("ignore", FutureWarning)
    from ray.cluster_utils import Cluster

    from tune.config import parse_config
    from tune.sweep import run_sweep

    began = time.monotonic()
    head = {**HEAD, "include_dashboard": False, "_system_config": SYSTEM_CONFIG}
    cluster = Cluster(initialize_head=True, head_node_args=head)
    workers = [cluster.add_node(**w) for w in WORKERS]
    cluster.wait_for_nodes()
    forget_address(cluster.address)
    declared = {cluster.head_node.node_id: HEAD["num_gpus"]}
    declared.update({node.node_id: spec["num_gpus"] for node, spec in zip(workers, WORKERS, strict=True)})
    started = time.monotonic() - began

    storage = args.out / "results"
    experiment = storage / "cluster"
    removed: dict = {}
    stop = threading.Event()
    watcher = None
    if args.remove_node:
        watch = (cluster, workers, experiment, args.reports, removed, stop)
        watcher = threading.Thread(target=remove_when_busy, args=watch)
        watcher.start()
    cfg = parse_config(sweep_config(args.reports))
    sweep_began = time.time()
    try:
        code = run_sweep(cfg, address=cluster.address, storage=str(storage))
    finally:
        sweep_ended = time.time()
        stop.set()
        if watcher is not None:
            watcher.join()
        logging.disable(logging.WARNING)
        cluster.shutdown()
    summary_path = experiment / "dmi_summary.json"
    observed = {
        "code": code,
        "declared_gpus": declared,
        "removed": removed,
        "trial_gpu": TRIAL_GPU,
        "reports_per_trial": args.reports,
        "trials": TRIALS,
        "summary": json.loads(summary_path.read_text()) if summary_path.exists() else None,
        "reports": read_reports(experiment),
        "cluster_start_s": started,
        "sweep_began": sweep_began,
        "sweep_ended": sweep_ended,
        "wall_s": time.monotonic() - began,
    }
    (args.out / "observed.json").write_text(json.dumps(observed, indent=1, default=str))
    return 0


if __name__ == "__main__":
    os.environ.pop("RAY_ADDRESS", None)
    sys.exit(main())
