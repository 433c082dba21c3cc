"""Run a sweep: plan its experiments, start or join Ray, run or resume each, report the outcome.

A sweep over one data set is one Tune experiment named after the sweep. A sweep over
several benchmark tasks (``data.tasks``) is one experiment per task, run in sequence and
named ``{name}-{task}``, each with its own searcher, best trial and final estimate (the best
hyperparameters of one task say little about another); a small index file in
``<storage>/<name>/`` lists them. Running the same command again resumes what was
interrupted and leaves finished experiments alone.

Exit codes: 0 done, 1 failed (no trial produced a result), 3 time budget ended (results
recorded), 130 interrupted (run the same command again to resume).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import warnings
from collections.abc import Iterator

from tune.budget import BUDGET_FILE, SweepBudget
from tune.cluster import check_cluster, trials_start_together
from tune.config import SweepConfig
from tune.data import load_data
from tune.runner import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_TIME_BUDGET, Planned, run_experiment
from tune.storage import is_uri, join, read_json, resolve_storage, write_json
from tune.summary import CONFIG_FILE, SUMMARY_FILE
from tune.tracking_glue import make_trackers


def plan(cfg: SweepConfig, name: str, storage: str) -> list[Planned]:
    tasks = cfg.data.tasks
    if len(tasks) > 1:
        return [Planned(f"{name}-{t.name}", join(storage, f"{name}-{t.name}"), t) for t in tasks]
    return [Planned(name, join(storage, name), tasks[0] if tasks else None)]


def quiet_libraries() -> None:
    """Our own lines replace Tune's tables; library chatter (Ray, MLflow's migrations) stays out."""
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    # Tune forces an experiment snapshot whenever a trial has saved num_to_keep checkpoints: harmless here.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    warnings.filterwarnings("ignore", category=FutureWarning)
    # bmi's JAX is loaded by the time Ray spawns its processes; they exec at once, JAX is not used there.
    warnings.filterwarnings("ignore", message=r"os\.fork\(\) was called", category=RuntimeWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    for name in ("ray.tune", "ray.train", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)


@contextlib.contextmanager
def ray_session(cfg: SweepConfig, address: str | None) -> Iterator[bool]:
    """Join a cluster (``--address``, RAY_ADDRESS or ray.address) or start a private local Ray.

    Yields whether a cluster was joined. A local Ray's dashboard (if installed) listens on
    127.0.0.1 only, and the local Ray runs with token authentication (``tune.ray_auth``):
    its gRPC servers listen on every interface, so without a token anyone who can reach the
    machine could submit work to it. A joined cluster is left as its operator set it up.
    """
    import ray

    if ray.is_initialized():
        yield False
        return
    address = address or os.environ.get("RAY_ADDRESS") or cfg.ray.address
    if address:
        ray.init(address=address, logging_level=logging.WARNING)
    else:
        if "RAY_AUTH_MODE" not in os.environ:  # ray was imported before tune.ray_auth could turn it on
            print(
                "warning: the local Ray runs without token authentication: anyone who can reach this machine "
                "can submit work to it (set RAY_AUTH_MODE=token and RAY_AUTH_TOKEN before starting)",
                file=sys.stderr,
            )
        ray.init(
            address="local",
            num_cpus=cfg.ray.num_cpus,
            num_gpus=cfg.ray.num_gpus,
            include_dashboard=None,
            dashboard_host="127.0.0.1",
            object_store_memory=cfg.ray.object_store_mb * 1024**2,
            logging_level=logging.WARNING,
        )
        check_resources(cfg, ray.cluster_resources())
    try:
        yield bool(address)
    finally:
        ray.shutdown()


def check_resources(cfg: SweepConfig, available: dict[str, float]) -> None:
    """A trial that asks for more than this machine has would wait for ever: refuse it now."""
    from tune.schema import SweepConfigError

    for key, field in (("CPU", "cpu"), ("GPU", "gpu")):
        wanted = getattr(cfg.trials, field)
        if wanted > available.get(key, 0.0):
            raise SweepConfigError(
                f"trials.resources.{field}: each trial asks for {wanted:g} but this machine has "
                f"{available.get(key, 0.0):g} (set ray.num_{field}s, or join a cluster with --address)"
            )


def run_sweep(
    cfg: SweepConfig,
    *,
    name: str | None = None,
    address: str | None = None,
    storage: str | None = None,
    tracking_uri: str | None = None,
) -> int:
    """Run or resume every experiment of the sweep; returns the exit code."""
    quiet_libraries()
    name = name or cfg.name
    root = resolve_storage(storage or cfg.storage)
    planned = plan(cfg, name, root)
    pending = []
    for p in planned:
        done = read_json(join(p.path, SUMMARY_FILE))
        if done is None:
            pending.append(p)
        else:
            print(f"{p.name}: already finished ({done.get('state')}); results in {join(p.path, SUMMARY_FILE)}")
    if not pending:
        print(f"sweep {name} is finished; `dmi-tune best {name} --storage {root}` shows the result")
        states = [read_json(join(p.path, SUMMARY_FILE))["state"] for p in planned]
        return EXIT_FAILED if "failed" in states else EXIT_OK
    for p in pending:
        check_unchanged(cfg, p)
    remove_stale_writes(root, name, planned)
    data = {p.name: load_data(cfg.data, p.task) for p in pending}
    trackers = make_trackers(cfg, pending, root, tracking_uri)
    codes: list[int] = []
    with ray_session(cfg, address) as joined, trials_start_together(cfg.trials.max_concurrent_trials):
        check_cluster(cfg, root, joined)  # shared storage on several nodes; a trial fits a node
        if len(planned) > 1:
            write_index(cfg, name, root, planned)
        for p in pending:
            # One budget for the whole sweep, across its experiments and its resumptions.
            budget = None
            if cfg.time_budget_s is not None:
                budget = SweepBudget(join(root, name, BUDGET_FILE), cfg.time_budget_s)
            if budget is not None and budget.remaining() <= 0:
                print(f"{p.name}: not started, the time budget is spent")
                codes.append(EXIT_TIME_BUDGET)
                break
            codes.append(run_experiment(cfg, p, data[p.name], trackers.get(p.name), budget))
            if len(planned) > 1:
                write_index(cfg, name, root, planned)
            if codes[-1] == EXIT_INTERRUPTED:
                break
    return max_code(codes)


# Keys that may change between a run and its resumption: where things go, not what is computed.
RESUMABLE_CHANGES = {"source", "description", "storage", "ray", "tracking", "tracking_uri", "model_name"}


def remove_stale_writes(root: str, name: str, planned: list[Planned]) -> None:
    """Temporary files that a killed driver's atomic writes left in the sweep's folders."""
    from dmi.tempfiles import remove_stale

    if is_uri(root):
        return  # an object store has no half-made files: a PUT is whole or absent
    removed = remove_stale(join(root, name), *(p.path for p in planned))
    if removed:
        print(f"removed {len(removed)} stale temporary file(s) of a killed write: {', '.join(map(str, removed))}")


def check_unchanged(cfg: SweepConfig, p: Planned) -> None:
    """Resuming with other data, space or budget would mix two experiments in one: refuse it."""
    from tune.schema import SweepConfigError

    stored = read_json(join(p.path, CONFIG_FILE))
    if stored is None:
        return
    current = cfg.as_dict()
    keys = (current.keys() | stored.keys()) - RESUMABLE_CHANGES
    changed = sorted(k for k in keys if current.get(k) != stored.get(k))
    if changed:
        raise SweepConfigError(
            f"{changed[0]}: differs from the config {p.name} started with ({join(p.path, CONFIG_FILE)}); "
            "resume with that config, or start a new experiment with --name"
        )


def max_code(codes: list[int]) -> int:
    for code in (EXIT_INTERRUPTED, EXIT_FAILED, EXIT_TIME_BUDGET):
        if code in codes:
            return code
    return EXIT_OK


def write_index(cfg: SweepConfig, name: str, root: str, planned: list[Planned]) -> None:
    """The multi-task sweep's index: one entry per task experiment, with its headline result."""
    entries = []
    for p in planned:
        s = read_json(join(p.path, SUMMARY_FILE)) or {}
        entries.append(
            {
                "name": p.name,
                "task": p.task.name if p.task else None,
                "experiment_path": p.path,
                "state": s.get("state", "not finished"),
                **{k: s.get(k) for k in ("true_mi", "abs_error", "final_estimate", "best_config", "best_checkpoint")},
                "fidelity_spearman": (s.get("ranking") or {}).get("spearman"),
                "defaults_abs_error": (s.get("library_defaults") or {}).get("abs_error"),
            }
        )
    states = {e["state"] for e in entries}
    index = {
        "kind": "multi_task",
        "name": name,
        "state": "finished" if states <= {"finished", "time_budget", "failed"} else "not finished",
        "objective": cfg.objective,
        "experiments": entries,
        "config": cfg.as_dict(),
    }
    write_json(join(root, name, SUMMARY_FILE), index)
