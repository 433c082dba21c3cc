"""Sweeps on a Ray cluster: fractional GPUs over several nodes, a lost node, the shared-storage rule.

The simulated 3-node cluster (``ray.cluster_utils.Cluster``, GPUs declared but absent) runs in
its own process (tests/tune/cluster_sweep.py) so that it does not meet the session's Ray.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest
import yaml
from sweep_helpers import tiny_config, write_config

import tune.cluster
import tune.config
from tune.cli import main
from tune.config import parse_config

SCRIPT = Path(__file__).with_name("cluster_sweep.py")


def run_cluster_sweep(folder: Path, *args: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    done = subprocess.run(
        [sys.executable, str(SCRIPT), str(folder), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=folder,
        timeout=420,
    )
    log = f"{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    assert done.returncode == 0 and (folder / "observed.json").exists(), log
    observed = json.loads((folder / "observed.json").read_text())
    observed["log"] = log
    return observed


def sessions(observed: dict) -> list[dict]:
    """One entry per run of a trial on a node (a retried trial has several), from its reports."""
    runs: dict[tuple, dict] = {}
    for trial_id, rows in observed["reports"].items():
        for row in rows:
            key = (trial_id, row["started_at"])
            run = runs.setdefault(key, {"trial": trial_id, "node": row["node_id"], "gpus": row["gpu_ids"], "rows": []})
            assert (row["node_id"], row["gpu_ids"]) == (run["node"], run["gpus"]), "a trial run moved mid-way"
            run["rows"].append(row)
    for run in runs.values():
        run["start"], run["end"] = run["rows"][0]["started_at"], run["rows"][-1]["reported_at"]
    return list(runs.values())


def peak_gpu_use(runs: list[dict], share: float) -> tuple[dict[str, float], dict[tuple[str, str], float]]:
    """Largest GPU share in use at once, per node and per (node, GPU id), over the trial runs."""
    per_node: dict[str, float] = defaultdict(float)
    per_gpu: dict[tuple[str, str], float] = defaultdict(float)
    for moment in (r["start"] for r in runs):
        live = [r for r in runs if r["start"] <= moment <= r["end"]]
        node_use: dict[str, float] = defaultdict(float)
        gpu_use: dict[tuple[str, str], float] = defaultdict(float)
        for r in live:
            node_use[r["node"]] += share
            gpu_use[(r["node"], r["gpus"])] += share
        for k, v in node_use.items():
            per_node[k] = max(per_node[k], v)
        for k, v in gpu_use.items():
            per_gpu[k] = max(per_gpu[k], v)
    return per_node, per_gpu


def check_placement(observed: dict) -> list[dict]:
    """Every trial ran with a GPU share Ray gave it, on the CPU, never more GPU than its node declares."""
    declared, share = observed["declared_gpus"], observed["trial_gpu"]
    assert observed["code"] == 0, observed["log"]
    summary = observed["summary"]
    assert summary["state"] == "finished" and summary["final_estimate"]["n_points"] > 0
    assert summary["trial_counts"] == {"TERMINATED": observed["trials"]} == {"TERMINATED": len(observed["reports"])}
    runs = sessions(observed)
    for r in runs:
        assert r["node"] in declared
        assert r["gpus"] and int(r["gpus"]) < declared[r["node"]], r  # one GPU id of that node, as a share
        assert {row["device"] for row in r["rows"]} == {"cpu"}  # declared GPUs do not exist: CPU fallback
    for rows in observed["reports"].values():
        assert rows[-1]["training_iteration"] == observed["reports_per_trial"]
    assert len({r["node"] for r in runs}) >= 2, "all trials ran on one node"
    per_node, per_gpu = peak_gpu_use(runs, share)
    for node, peak in per_node.items():
        assert peak <= declared[node], (node, peak, declared[node])
    assert max(per_gpu.values()) <= 1.0
    return runs


@pytest.mark.slow  # 45-50 s: three simulated nodes start; it kept the default run at the edge of 10 minutes
def test_fractional_gpu_trials_spread_over_nodes(tmp_path) -> None:
    observed = run_cluster_sweep(tmp_path, "--reports", "3")
    check_placement(observed)


@pytest.mark.slow  # 65-75 s on 2 busy cores: a longer sweep, and Ray noticing the lost node
def test_lost_node_trial_resumes_from_checkpoint_elsewhere(tmp_path) -> None:
    observed = run_cluster_sweep(tmp_path, "--reports", "8", "--remove-node")
    removed = observed["removed"]
    assert removed, "no trial of the node to remove had checkpointed in time\n" + observed["log"]
    runs = check_placement(observed)
    lost = removed["node_id"]
    assert all(r["end"] < removed["gone_at"] for r in runs if r["node"] == lost)  # nothing ran there after
    retried = sorted((r for r in runs if r["trial"] == removed["trial_id"]), key=lambda r: r["start"])
    assert len(retried) >= 2 and retried[0]["node"] == lost and retried[-1]["node"] != lost
    first_row = retried[-1]["rows"][0]
    # Resumed from a checkpoint, not from scratch: the report count goes on, and so does the training clock.
    assert 1 < first_row["training_iteration"] and first_row["iterations_since_restore"] == 1
    before = {row["training_iteration"]: row for row in retried[0]["rows"]}
    restored_from = first_row["training_iteration"] - 1
    assert restored_from in before
    assert first_row["train_seconds"] > before[restored_from]["train_seconds"]


FAKE_NODES = [
    {"NodeID": "a" * 56, "Alive": True, "Resources": {"CPU": 8.0, "GPU": 1.0}},
    {"NodeID": "b" * 56, "Alive": True, "Resources": {"CPU": 8.0, "GPU": 2.0}},
    {"NodeID": "c" * 56, "Alive": True, "Resources": {"CPU": 4.0}},
]


def test_local_path_not_shared_by_every_node_exits_2_before_anything_runs(local_ray, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(tune.cluster, "alive_nodes", lambda: FAKE_NODES)
    monkeypatch.setattr(tune.cluster, "nodes_missing_storage", lambda root, nodes: [nodes[2]["NodeID"]])
    storage = tmp_path / "results"
    config = write_config(tmp_path, tiny_config(name="unshared"))
    assert main(["run", str(config), "--storage", str(storage)]) == 2
    err = capsys.readouterr().err
    assert f"storage: {storage} is not the same folder on every node of this 3-node cluster" in err
    assert "cccccccccccc" in err and "s3://" in err and len(err.strip().splitlines()) == 1
    assert not (storage / "unshared").exists()


def test_storage_rules(local_ray, tmp_path, monkeypatch, capsys) -> None:
    # The real probe on this one-node Ray: the node sees the folder, and no marker is left behind.
    assert tune.cluster.nodes_missing_storage(str(tmp_path), tune.cluster.alive_nodes()) == []
    assert list(tmp_path.iterdir()) == []
    # A URI is taken as shared without a probe; a single node needs none either.
    monkeypatch.setattr(tune.cluster, "nodes_missing_storage", lambda *a: pytest.fail("probed"))
    tune.cluster.check_storage("s3://bucket/sweeps", FAKE_NODES, joined=True)
    tune.cluster.check_storage(str(tmp_path), FAKE_NODES[:1], joined=False)
    assert capsys.readouterr().err == ""
    tune.cluster.check_storage(str(tmp_path), FAKE_NODES[:1], joined=True)
    assert "nodes that join the cluster later must see it too" in capsys.readouterr().err


def test_trial_too_large_for_any_node_is_a_warning_on_a_joined_cluster(capsys) -> None:
    fits = parse_config(tiny_config(trials={"resources": {"cpu": 4, "gpu": 0.25}}))
    tune.cluster.check_trial_fits(fits, FAKE_NODES)
    assert capsys.readouterr().err == ""
    too_big = parse_config(tiny_config(trials={"resources": {"cpu": 4, "gpu": 4}}))
    tune.cluster.check_trial_fits(too_big, FAKE_NODES)
    err = capsys.readouterr().err
    assert "asks for 4 CPU and 4 GPU" in err and "largest: 8 CPU, 2 GPU" in err


# -- configs/cluster: they cannot run here; they must parse and agree with each other ------------
CLUSTER = Path(__file__).resolve().parents[2] / "configs" / "cluster"


def _documents(name: str) -> dict[str, dict]:
    docs = [d for d in yaml.safe_load_all((CLUSTER / name).read_text()) if d]
    return {f"{d['kind']}/{d['metadata']['name']}": d for d in docs}


def test_cluster_launcher_config_is_valid_for_this_ray() -> None:
    import ray
    from ray.autoscaler._private.util import prepare_config, validate_config

    raw = yaml.safe_load((CLUSTER / "ray-cluster-aws.yaml").read_text())
    validate_config(prepare_config(raw))  # Ray's own schema, with the provider's defaults filled in
    head, worker = raw["available_node_types"][raw["head_node_type"]], raw["available_node_types"]["gpu_worker"]
    assert head["resources"] == {"CPU": 0} and worker["node_config"]["InstanceType"].startswith("g5.")
    assert raw["file_mounts"] == {"/home/ubuntu/dmi": "."}
    setup = " ".join(raw["setup_commands"])
    assert f'"ray[default,tune]=={ray.__version__}" -e ~/dmi' in setup
    assert "--dashboard-host=127.0.0.1" in " ".join(raw["head_start_ray_commands"])


def test_rayjob_runs_the_overnight_sweep_on_gpu_workers() -> None:
    import ray

    docs = _documents("kuberay-rayjob.yaml")
    job = docs["RayJob/dmi-overnight"]
    assert job["apiVersion"] == "ray.io/v1" and job["spec"]["rayClusterSpec"]["rayVersion"] == ray.__version__
    entry = job["spec"]["entrypoint"]
    for part in ("dmi-tune run /etc/dmi/overnight.yaml", "--address auto", "--nightly", "--storage s3://"):
        assert part in entry
    assert "--tracking-uri http://mlflow.mlflow.svc.cluster.local:5000" in entry and "[ $? -eq 3 ]" in entry
    cluster = job["spec"]["rayClusterSpec"]
    head = cluster["headGroupSpec"]["template"]["spec"]
    assert cluster["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    mounts = {m["name"]: m["mountPath"] for m in head["containers"][0]["volumeMounts"]}
    (gpu_group,) = cluster["workerGroupSpecs"]
    limits = gpu_group["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert int(limits["nvidia.com/gpu"]) >= 1

    # The sweep it runs: valid, the repository's overnight sweep, with a study kept on the head's volume.
    sweep = parse_config(yaml.safe_load(docs["ConfigMap/dmi-overnight-sweep"]["data"]["overnight.yaml"]))
    shipped = tune.config.load_config(CLUSTER.parent / "sweep" / "overnight.yaml")
    for section in ("data", "estimator", "scheduler", "objective", "time_budget_s"):
        assert getattr(sweep, section) == getattr(shipped, section), section
    assert sweep.search.params == shipped.search.params and sweep.trials == shipped.trials
    assert mounts["sweep"] == "/etc/dmi"
    assert sweep.search.study_name and sweep.search.optuna_storage == f"sqlite:///{mounts['optuna']}/optuna.db"
    # One node holds its share of trials: CPUs and GPUs of a worker pod cover whole trials.
    per_gpu = round(1 / sweep.trials.gpu)
    assert int(limits["cpu"]) >= per_gpu * int(limits["nvidia.com/gpu"]) * sweep.trials.cpu


def test_mlflow_server_has_a_database_and_an_artifact_store() -> None:
    docs = _documents("mlflow-server.yaml")
    server = docs["Deployment/mlflow"]["spec"]["template"]["spec"]["containers"][0]
    command = " ".join(server["args"])
    for part in (
        "mlflow server",
        '--backend-store-uri "postgresql://mlflow:${POSTGRES_PASSWORD}@mlflow-postgres:5432/mlflow"',
        "--serve-artifacts",
        "--artifacts-destination s3://",
        "--host 0.0.0.0 --port 5000",
        "mlflow.mlflow.svc.cluster.local:5000",
    ):
        assert part in command, part
    service = docs["Service/mlflow"]["spec"]
    assert service["type"] == "ClusterIP" and service["ports"][0]["port"] == 5000
    assert docs["Service/mlflow-postgres"]["spec"]["ports"][0]["port"] == 5432
    assert "StatefulSet/mlflow-postgres" in docs and "NetworkPolicy/mlflow-from-ray-pods" in docs


def test_image_uses_the_ray_of_the_project() -> None:
    import ray

    assert f"FROM rayproject/ray:{ray.__version__}-py311-gpu" in (CLUSTER / "Dockerfile").read_text()
