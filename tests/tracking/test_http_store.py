"""The same recording against an ``mlflow server`` (the cluster set-up): http store, proxied artifacts."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pandas as pd
import pytest
import tiny_sweep
from mlflow import MlflowClient

from tune.tracking.tracker import SweepTracker


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def mlflow_server(tmp_path):
    port = free_port()
    command = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port)]
    command += ["--workers", "1", "--backend-store-uri", f"sqlite:///{tmp_path}/server.db"]
    command += ["--artifacts-destination", str(tmp_path / "artifacts")]
    quiet = dict(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server = subprocess.Popen(command, start_new_session=True, **quiet)
    uri = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                if urllib.request.urlopen(f"{uri}/health", timeout=1).status == 200:
                    break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("mlflow server did not start")
        yield uri
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


@pytest.mark.slow
def test_sweep_recorded_on_an_mlflow_server(recorded, mlflow_server, task_data, monkeypatch):
    import mlflow

    tracker = SweepTracker.create(
        mlflow_server, str(recorded.storage), "dmi-http", "http", recorded.config, **tiny_sweep.same_task(recorded)
    )
    tracker.start(resumed=False)
    outcome = tracker.finish(recorded.summary, recorded.grid, recorded.checkpoint_dir, "FINISHED")
    client = MlflowClient(mlflow_server)
    artifacts = {a.path for a in client.list_artifacts(tracker.parent_run_id)}
    assert {"sweep_config.yaml", "results.csv", "plots", "estimator"} <= artifacts
    assert outcome["champion_version"] == outcome["model_version"] == "1"

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    model = mlflow.pyfunc.load_model(f"models:/{outcome['model_name']}@champion")
    sample = np.hstack([task_data["x_test"], task_data["y_test"]])
    frame = pd.DataFrame(sample, columns=["x0", "x1", "y0", "y1"])
    final = recorded.summary["final_estimate"]
    assert abs(model.predict(frame)["mi"][0] - final["mi"]) <= final["mi_stderr"]
