"""The Ray a sweep runs on: a private local one with token authentication, or a joined cluster, checked.

Ray's servers listen on every interface and its token authentication is off by default: a private Ray gets
a fresh token, in the process environment only, before anything imports ``ray`` (a joined cluster decides for
itself). On several nodes a storage path must be a folder every node sees, and a trial must fit one node.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import sys
import time
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dmi.errors import SweepConfigError
from tune.storage import is_uri

if TYPE_CHECKING:  # the storage probe imports this module on every node: keep it light
    from tune.config import SweepConfig

MARKER_PREFIX = ".dmi-storage-probe-"
PROBE_TIMEOUT_S = 60.0
PENDING_TRIALS = "TUNE_MAX_PENDING_TRIALS_PG"


def enable_for_private_ray(address: str | None) -> bool:
    """Turn token authentication on for a local Ray this process will start; True if it is on."""
    mode = os.environ.get("RAY_AUTH_MODE")
    if address or os.environ.get("RAY_ADDRESS"):
        return mode == "token"  # joining: the cluster decides
    if mode is not None:
        if mode != "token":
            print(
                f"warning: RAY_AUTH_MODE={mode}: the local Ray accepts work from anyone who can reach this machine",
                file=sys.stderr,
            )
        return mode == "token"
    if "ray" in sys.modules:  # too late: Ray has read its configuration already
        return False
    os.environ.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32))
    os.environ.pop("RAY_AUTH_TOKEN_PATH", None)
    return True


def quiet_libraries() -> None:
    """Our own lines replace Tune's tables; library chatter (Ray, MLflow's migrations) stays out."""
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    # Named third-party deprecations: torch's, raised by Lightning 2.6, and equinox 0.10's under bmi's JAX.
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)", category=FutureWarning)
    warnings.filterwarnings("ignore", message=r"jax\.core\.pp_eqn_rules is deprecated", category=DeprecationWarning)
    # bmi's JAX is loaded by the time Ray spawns its processes; they exec at once, JAX is not used there.
    warnings.filterwarnings("ignore", message=r"os\.fork\(\) was called", category=RuntimeWarning)
    for name in ("ray.tune", "ray.train", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)


@contextlib.contextmanager
def ray_session(cfg: SweepConfig, address: str | None) -> Iterator[bool]:
    """Join a cluster (``--address``, RAY_ADDRESS, ray.address) or start a local Ray (dashboard on 127.0.0.1).

    Meanwhile Tune may create up to ``max_concurrent_trials`` trials at once, not one at a time.
    """
    import ray

    own = not ray.is_initialized()
    address = address or os.environ.get("RAY_ADDRESS") or cfg.ray.address
    if own and address:
        ray.init(address=address, logging_level=logging.WARNING)
    elif own:
        if "RAY_AUTH_MODE" not in os.environ:  # ray was imported before enable_for_private_ray could run
            print(
                "warning: the local Ray runs without token authentication: anyone who can reach this machine "
                "can submit work to it (set RAY_AUTH_MODE=token and RAY_AUTH_TOKEN before starting)",
                file=sys.stderr,
            )
        ray.init(
            address="local",
            num_cpus=cfg.ray.num_cpus,
            num_gpus=cfg.ray.num_gpus,
            dashboard_host="127.0.0.1",
            object_store_memory=cfg.ray.object_store_mb * 1024**2,
            logging_level=logging.WARNING,
        )
    pending = bool(cfg.trials.max_concurrent_trials) and PENDING_TRIALS not in os.environ  # else the user's
    if pending:
        os.environ[PENDING_TRIALS] = str(cfg.trials.max_concurrent_trials)
    try:
        if own and not address:
            check_resources(cfg, ray.cluster_resources())
        yield own and bool(address)
    finally:
        if pending:
            os.environ.pop(PENDING_TRIALS, None)
        if own:
            ray.shutdown()


def check_resources(cfg: SweepConfig, available: dict[str, float]) -> None:
    """A trial that asks for more than this machine has would wait for ever: refuse it now."""
    for key, field in (("CPU", "cpu"), ("GPU", "gpu")):
        wanted, has = getattr(cfg.trials, field), available.get(key, 0.0)
        if wanted > has:
            raise SweepConfigError(
                f"trials.resources.{field}: each trial asks for {wanted:g} but this machine has {has:g} "
                f"(set ray.num_{field}s, or join a cluster with --address)"
            )


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
    marker.write_text("written by dmi-tune to check that every node sees this folder\n")
    probe = ray.remote(num_cpus=0, max_retries=0)(sees_file)

    def answer(ref: Any) -> bool:
        try:
            return bool(ray.get(ref))
        except Exception:  # noqa: BLE001 - a node that cannot answer cannot be trusted with checkpoints
            return False

    try:
        pending = {}
        for n in nodes:
            on_node = probe.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False))
            pending[on_node.remote(str(marker))] = n["NodeID"]
        ready, not_ready = ray.wait(list(pending), num_returns=len(pending), timeout=PROBE_TIMEOUT_S)
        return [pending[ref] for ref in ready if not answer(ref)] + [pending[ref] for ref in not_ready]
    finally:
        marker.unlink(missing_ok=True)


def check_storage(root: str, nodes: list[dict[str, Any]], joined: bool) -> None:
    """Refuse a storage path that some alive node of a multi-node cluster does not see."""
    if is_uri(root):
        return
    missing = nodes_missing_storage(root, nodes) if len(nodes) > 1 else []
    if missing:
        raise SweepConfigError(
            f"storage: {root} is not the same folder on every node of this {len(nodes)}-node cluster "
            f"(not seen from node {', '.join(node[:12] for node in missing)}); give a shared filesystem path "
            "mounted on every node, or an object-store URI such as s3://bucket/sweeps"
        )
    if len(nodes) <= 1 and joined:
        print(
            f"storage: {root} is a local path; nodes that join the cluster later must see it too "
            "(a shared filesystem), or use an object-store URI",
            file=sys.stderr,
        )


def check_trial_fits(cfg: SweepConfig, nodes: list[dict[str, Any]]) -> None:
    """A joined cluster where no node can hold one trial: say so (an autoscaler may add one)."""
    sizes = [(n["Resources"].get("GPU", 0.0), n["Resources"].get("CPU", 0.0)) for n in nodes]
    if any(cpus >= cfg.trials.cpu and gpus >= cfg.trials.gpu for gpus, cpus in sizes):
        return
    gpus, cpus = max(sizes, default=(0.0, 0.0))
    print(
        f"trials.resources: each trial asks for {cfg.trials.cpu:g} CPU and {cfg.trials.gpu:g} GPU, but no node "
        f"of the cluster has that now (largest: {cpus:g} CPU, {gpus:g} GPU); trials wait until the autoscaler "
        "adds one (the time budget still applies)",
        file=sys.stderr,
    )


def check_cluster(cfg: SweepConfig, root: str, joined: bool) -> None:
    """Every check that needs the running cluster: shared storage, and (joined) a node that fits a trial."""
    nodes = alive_nodes()
    check_storage(root, nodes, joined)
    if joined:
        check_trial_fits(cfg, nodes)
