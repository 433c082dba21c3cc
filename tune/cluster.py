"""Checks on the Ray cluster a sweep runs on, made after Ray is up and before any trial starts.

Storage rule: on a cluster of several alive nodes, a storage *path* (not a URI such as
``s3://`` or ``gs://``) must be the same folder on every node: a shared filesystem (NFS,
Lustre, ...) mounted at the same path. The driver writes a marker file there and asks every
node whether it sees it; a node that does not would keep its trials' checkpoints on its own
disk, out of the driver's reach, so the sweep is refused (exit 2) naming the nodes. A URI is
accepted as is (Ray Tune reads and writes it from every node).

Resource rule: a trial cannot span nodes, so it must fit on one node. On a private local Ray
the driver refuses a trial larger than the machine (``tune.driver.check_resources``). On a
joined cluster the autoscaler may still add a node that fits, so a trial no node can hold
now is a warning, not an error.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tune.schema import SweepConfigError
from tune.storage import is_uri

if TYPE_CHECKING:  # the storage probe imports this module on every node: keep it light
    from tune.config import SweepConfig

MARKER_PREFIX = ".dmi-storage-probe-"
PROBE_TIMEOUT_S = 60.0


def alive_nodes() -> list[dict[str, Any]]:
    """The cluster's alive nodes as ``ray.nodes()`` describes them (NodeID, Resources, ...)."""
    import ray

    return [n for n in ray.nodes() if n.get("Alive")]


def sees_file(path: str) -> bool:
    """Run on a node: does this node see ``path``? (A retry covers NFS attribute caching.)"""
    for _ in range(10):
        if os.path.exists(path):
            return True
        time.sleep(0.3)
    return False


def nodes_missing_storage(root: str, nodes: list[dict[str, Any]]) -> list[str]:
    """Ids of the ``nodes`` that do not see a marker file the driver wrote under ``root``."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    folder = Path(root)
    folder.mkdir(parents=True, exist_ok=True)
    marker = folder / f"{MARKER_PREFIX}{uuid.uuid4().hex}"
    marker.write_text("written by the dmi-tune driver to check that every node sees this folder\n")
    try:
        probe = ray.remote(num_cpus=0, max_retries=0)(sees_file)
        pending = {
            probe.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)).remote(
                str(marker)
            ): n["NodeID"]
            for n in nodes
        }
        ready, not_ready = ray.wait(list(pending), num_returns=len(pending), timeout=PROBE_TIMEOUT_S)
        missing = [pending[ref] for ref in ready if not _answer(ref)]
        return missing + [pending[ref] for ref in not_ready]
    finally:
        marker.unlink(missing_ok=True)


def _answer(ref) -> bool:
    import ray

    try:
        return bool(ray.get(ref))
    except Exception:  # noqa: BLE001 - a node that cannot answer cannot be trusted with checkpoints
        return False


def check_storage(root: str, nodes: list[dict[str, Any]], joined: bool) -> None:
    """Refuse a storage path that some alive node of a multi-node cluster does not see."""
    if is_uri(root):
        return
    if len(nodes) > 1:
        missing = nodes_missing_storage(root, nodes)
        if missing:
            shown = ", ".join(node[:12] for node in missing)
            raise SweepConfigError(
                f"storage: {root} is not the same folder on every node of this {len(nodes)}-node cluster "
                f"(not seen from node {shown}); give a shared filesystem path mounted on every node, "
                "or an object-store URI such as s3://bucket/sweeps"
            )
    elif joined:
        print(
            f"storage: {root} is a local path; nodes that join the cluster later must see it too "
            "(a shared filesystem), or use an object-store URI",
            file=sys.stderr,
        )


def largest_node(nodes: list[dict[str, Any]]) -> tuple[float, float]:
    """(CPUs, GPUs) of the node with the most GPUs, then the most CPUs."""
    sizes = [(n["Resources"].get("GPU", 0.0), n["Resources"].get("CPU", 0.0)) for n in nodes]
    gpus, cpus = max(sizes, default=(0.0, 0.0))
    return cpus, gpus


def trial_fits(cfg: SweepConfig, nodes: list[dict[str, Any]]) -> bool:
    wanted_cpu, wanted_gpu = cfg.trials.cpu, cfg.trials.gpu
    return any(
        n["Resources"].get("CPU", 0.0) >= wanted_cpu and n["Resources"].get("GPU", 0.0) >= wanted_gpu for n in nodes
    )


def check_trial_fits(cfg: SweepConfig, nodes: list[dict[str, Any]]) -> None:
    """A joined cluster where no node can hold one trial: say so (an autoscaler may add one)."""
    if trial_fits(cfg, nodes):
        return
    cpus, gpus = largest_node(nodes)
    print(
        f"trials.resources: each trial asks for {cfg.trials.cpu:g} CPU and {cfg.trials.gpu:g} GPU, but no node "
        f"of the cluster has that now (largest: {cpus:g} CPU, {gpus:g} GPU); trials wait until the autoscaler "
        "adds one (the time budget still applies)",
        file=sys.stderr,
    )


def check_cluster(cfg: SweepConfig, root: str, joined: bool) -> list[dict[str, Any]]:
    """Every check that needs the running cluster; returns its alive nodes."""
    nodes = alive_nodes()
    check_storage(root, nodes, joined)
    if joined:
        check_trial_fits(cfg, nodes)
    return nodes


@contextlib.contextmanager
def trials_start_together(max_concurrent: int | None) -> Iterator[None]:
    """Let Tune create up to ``max_concurrent`` trials at once while the sweep runs.

    With a searcher, Tune creates one trial at a time, each once the last one's actor has
    started: filling N slots of a cluster would take N actor start-ups in a row. An explicit
    TUNE_MAX_PENDING_TRIALS_PG in the environment is left alone.
    """
    key = "TUNE_MAX_PENDING_TRIALS_PG"
    if not max_concurrent or key in os.environ:
        yield
        return
    os.environ[key] = str(max_concurrent)
    try:
        yield
    finally:
        os.environ.pop(key, None)
