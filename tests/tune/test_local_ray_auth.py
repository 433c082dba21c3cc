"""The private local Ray of ``dmi-tune run`` lets no one in: every listener is on loopback or behind Ray's token.

A real sweep is started as a user starts it (its own process and session, no ``--address``).
While a trial trains, the test lists every TCP socket that the driver's processes listen on.
Each one that is not on loopback must be guarded. Ray's C++ servers (GCS, raylet) must have
started with token authentication. An HTTP server (Ray's agents) must answer 401 without the
token. The rest must be the gRPC servers of Ray's own workers and of the driver, which Ray
configures from that same environment. Then a process without the token tries to join the
cluster, and must be refused.
"""

from __future__ import annotations

import http.client
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "faults"))
from fault_helpers import cmdline, environment, listening_sockets, outsider_join, session_pids, sweep_env  # noqa: E402

LOOPBACK = {"127.0.0.1", "::1"}
CONFIG = {
    "name": "auth",
    "data": {"task_type": "multinormal", "dim": 2, "strength": 2, "n_train": 1000, "n_val": 200, "n_test": 200},
    "estimator": {"max_steps": 100000, "patience": 100000, "model_dim": 8, "n_blocks": 1, "val_n_logsnr": 4},
    "search": {"num_samples": 1, "points_to_evaluate": []},
    "scheduler": {"type": "fifo"},
    "trials": {"val_every_n_steps": 1000, "resources": {"cpu": 1}},
    "ray": {"num_cpus": 1, "object_store_mb": 100},
    "tracking": False,
}


def http_status(address: str, port: int) -> int | None:
    """The HTTP status of a bare POST without a token, or None if the port does not speak HTTP/1.1."""
    host = "127.0.0.1" if address in ("0.0.0.0", "::") else address
    request = urllib.request.Request(f"http://{host}:{port}/", method="POST", data=b"")
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return answer.status
    except urllib.error.HTTPError as error:
        return error.code
    except (OSError, http.client.HTTPException):
        return None


def gcs_address(listening: dict[int, set[tuple[str, int]]]) -> str | None:
    """Where the GCS listens (its port is chosen at start: the command line says 0)."""
    for pid, sockets in listening.items():
        if cmdline(pid).split()[0].endswith("gcs_server") and sockets:
            return f"127.0.0.1:{min(port for _, port in sockets)}"
    return None


def training(pids: list[int]) -> bool:
    return any(cmdline(pid).startswith("ray::ImplicitFunc.train") for pid in pids)


def test_the_private_local_ray_has_no_unauthenticated_open_listener(tmp_path):
    config = tmp_path / "auth.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    command = [sys.executable, "-m", "tune.cli", "run", str(config), "--storage", str(tmp_path / "results")]
    env = {k: v for k, v in sweep_env().items() if not k.startswith("RAY_AUTH")}
    token_file = Path.home() / ".ray" / "auth_token"
    had_token_file = token_file.exists()
    with (tmp_path / "driver.log").open("w") as log:
        driver = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while not training(session_pids(driver.pid)):
            assert driver.poll() is None and time.monotonic() < deadline, (tmp_path / "driver.log").read_text()
            time.sleep(0.5)
        pids = session_pids(driver.pid)
        listening = {pid: listening_sockets([pid]) for pid in pids}
        open_to_all = {pid: s for pid, s in listening.items() if any(address not in LOOPBACK for address, _ in s)}
        assert open_to_all, "Ray's gRPC servers listen on every interface; the test would check nothing"
        checked = {"environment": 0, "http": 0}
        for pid, sockets in open_to_all.items():
            name = cmdline(pid)
            binary = name.split()[0].rsplit("/", 1)[-1]
            if binary in ("gcs_server", "raylet"):
                # Ray's C++ servers; /proc shows the environment they started with.
                started_with = environment(pid)
                assert started_with.get("RAY_AUTH_MODE") == "token" and started_with.get("RAY_AUTH_TOKEN"), name[:80]
                checked["environment"] += 1
                continue
            for address, port in sockets:
                status = http_status(address, port)
                if status is not None:  # an HTTP server (Ray's agents): no token, no entry
                    assert status == 401, (name[:60], address, port, status)
                    checked["http"] += 1
            # Otherwise a gRPC server of a Ray worker or of the driver, configured from the same
            # environment (retitled "ray::..." processes no longer show theirs in /proc).
            assert pid == driver.pid or name.startswith("ray::"), name[:80]
        assert checked["environment"] == 2, checked  # the GCS and the raylet
        address = gcs_address(listening)
        assert address, [cmdline(p)[:60] for p in pids]
        outsider = outsider_join(address)
        output, _ = outsider.communicate(timeout=180)
        assert driver.poll() is None, "the sweep ended before the outsider was answered"
        assert outsider.returncode != 0 and "JOINED" not in output, output[-2000:]
        assert "token" in output.lower() or "authenticat" in output.lower(), output[-2000:]
        assert token_file.exists() == had_token_file  # the token stayed in memory, not in ~/.ray
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
        driver.wait(timeout=60)
        for pid in session_pids(driver.pid):  # Ray's processes of that session
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
