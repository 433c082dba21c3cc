"""Where the store is: resolution order, absolute paths, and a clear refusal when it cannot be used."""

from __future__ import annotations

import argparse
import socket
import time
from pathlib import Path

import pytest

from dmi.errors import TrackingUnavailable, UsageError
from tune.tracking.tracker import SweepTracker
from tune.tracking.uri import resolve_tracking_uri


def test_resolution_order_explicit_then_config_then_environment_then_storage(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    storage = tmp_path / "results"
    assert resolve_tracking_uri(None, {}, storage) == f"sqlite:///{storage}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5001")
    assert resolve_tracking_uri(None, {"tracking_uri": None}, storage) == "http://127.0.0.1:5001"
    assert (
        resolve_tracking_uri(None, {"tracking_uri": "sqlite:///rel/c.db"}, storage)
        == f"sqlite:///{tmp_path}/rel/c.db"
    )
    assert resolve_tracking_uri("sqlite:///x.db", {"tracking_uri": "sqlite:///c.db"}, storage) == (
        f"sqlite:///{tmp_path}/x.db"
    )
    assert resolve_tracking_uri("mlruns", {}, storage) == (tmp_path / "mlruns").as_uri()
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    assert resolve_tracking_uri(None, {}, "s3://bucket/sweeps") == f"sqlite:///{tmp_path}/mlflow.db"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_server_is_refused_at_once_in_one_line(tmp_path):
    uri = f"http://127.0.0.1:{free_port()}"
    began = time.monotonic()
    with pytest.raises(TrackingUnavailable) as caught:
        SweepTracker.create(uri, str(tmp_path), "e", "s", {})
    assert time.monotonic() - began < 20
    message = str(caught.value)
    assert uri in message and "\n" not in message


def test_a_sqlite_store_that_cannot_be_created_is_refused(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    uri = f"sqlite:///{blocker}/sub/mlflow.db"
    with pytest.raises(TrackingUnavailable, match="cannot create"):
        SweepTracker.create(uri, str(tmp_path), "e", "s", {})
    assert not Path(f"{blocker}/sub").exists()


def test_report_on_a_store_without_the_sweep_is_a_usage_error(tmp_path, monkeypatch):
    from tune.commands import report

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    parser = argparse.ArgumentParser()
    report.add_arguments(parser)
    with pytest.raises(UsageError, match="no MLflow database"):
        report.run(parser.parse_args(["nope", "--storage", str(tmp_path)]))
    assert not (tmp_path / "mlflow.db").exists()  # reading never creates a store
