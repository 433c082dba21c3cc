"""Real processes for the fault suite: sweep drivers, an MLflow server, waiting for them and killing them.

Every process is started in a session of its own (``start_new_session``), so what it starts
(Ray's head processes, trial workers) can be found by session id and ended with it, and
nothing the test did not start is ever touched.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path


def sweep_env() -> dict[str, str]:
    """The caller's environment without a Ray cluster or tracking store to join: each driver starts its own."""
    dropped = ("RAY_ADDRESS", "MLFLOW_TRACKING_URI")
    env = {k: v for k, v in os.environ.items() if k not in dropped}
    env.update(PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    return env


def dmi_tune(*args: str | os.PathLike) -> list[str]:
    """The ``dmi-tune`` console command, run by this interpreter."""
    return [sys.executable, "-m", "tune.cli", *map(str, args)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def session_pids(session: int) -> list[int]:
    """Live processes whose session id is ``session`` (a driver and all that it started)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "
        if int(fields[3]) == session and fields[0] != "Z":
            pids.append(int(entry.name))
    return pids


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def environment(pid: int) -> dict[str, str]:
    """The environment a process was started with (empty if it cannot be read)."""
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    pairs = (item.split(b"=", 1) for item in raw.split(b"\0") if b"=" in item)
    return {k.decode(errors="replace"): v.decode(errors="replace") for k, v in pairs}


def outsider_join(address: str) -> subprocess.Popen:
    """A process without the session's token trying to join the Ray at ``address`` (the GCS)."""
    env = {k: v for k, v in sweep_env().items() if not k.startswith("RAY_AUTH")}
    code = f"import ray; ray.init(address={address!r}); print('JOINED', flush=True)"
    return subprocess.Popen(
        [sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def working_dir(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return ""


def wait_for(condition: Callable[[], object], timeout: float, what: str, process: Process | None = None):
    """Poll ``condition`` until it returns something true; fail naming ``what`` (with the log) if it never does."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if process is not None and process.poll() is not None:
            raise AssertionError(f"{what}: the process ended first (code {process.poll()})\n{process.tail()}")
        if time.monotonic() > deadline:
            tail = process.tail() if process is not None else ""
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}\n{tail}")
        time.sleep(0.05)


class Process:
    """One command in its own session, its output in a log file."""

    def __init__(self, command: list[str], log: Path, cwd: Path, env: dict[str, str] | None = None) -> None:
        self.command, self.log = command, log
        with log.open("w") as out:
            self.popen = subprocess.Popen(
                command,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                env=env or sweep_env(),
                start_new_session=True,
            )
        self.pid = self.popen.pid

    def poll(self) -> int | None:
        return self.popen.poll()

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def tail(self, chars: int = 4000) -> str:
        return f"--- {self.log.name} ---\n{self.text()[-chars:]}"

    def wait(self, timeout: float) -> int:
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{self.command[3:5]} did not end within {timeout:.0f} s\n{self.tail()}") from None

    def kill(self) -> None:
        """The fault: SIGKILL to this one process, as the OOM killer or a lost node would do."""
        os.kill(self.pid, signal.SIGKILL)
        self.popen.wait(timeout=30)

    def end_session(self) -> None:
        """Clean-up: SIGKILL whatever of this session still runs (Ray processes a killed driver left)."""
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(timeout=30)
        for pid in session_pids(self.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


class MlflowServer:
    """``mlflow server`` on 127.0.0.1 with a sqlite store in ``folder``; killed and restarted on one port."""

    def __init__(self, folder: Path, port: int) -> None:
        self.folder, self.port = folder, port
        self.uri = f"http://127.0.0.1:{port}"
        self.database = folder / "server.db"
        self.process: Process | None = None
        self.starts = 0
        folder.mkdir(parents=True, exist_ok=True)

    def start(self, timeout: float = 90) -> None:
        command = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(self.port)]
        command += ["--workers", "1", "--backend-store-uri", f"sqlite:///{self.database}"]
        command += ["--artifacts-destination", str(self.folder / "artifacts")]
        self.starts += 1
        self.process = Process(command, self.folder / f"server-{self.starts}.log", self.folder)
        wait_for(self.healthy, timeout, "the mlflow server to answer", self.process)

    def healthy(self) -> bool:
        try:
            return urllib.request.urlopen(f"{self.uri}/health", timeout=1).status == 200
        except OSError:
            return False

    def kill(self) -> None:
        """The fault: the whole server (gunicorn/uvicorn and its workers) dies at once."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.popen.wait(timeout=30)
        wait_for(lambda: not self.healthy(), 10, "the mlflow server to stop answering")

    def stop(self) -> None:
        if self.process is not None:
            self.process.end_session()


def listening_sockets(pids: list[int]) -> set[tuple[str, int]]:
    """(address, port) of every TCP socket in LISTEN state held by one of ``pids``."""
    inodes: set[str] = set()
    for pid in pids:
        try:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                target = os.readlink(fd) if fd.is_symlink() else ""
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        except OSError:
            continue
    found = set()
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state != "0A" or inode not in inodes:  # 0A: LISTEN
                continue
            address, port = local.split(":")
            found.add((_address(address, width), int(port, 16)))
    return found


def _address(hex_address: str, width: int) -> str:
    import ipaddress

    raw = bytes.fromhex(hex_address)
    if width == 8:
        return str(ipaddress.IPv4Address(raw[::-1]))
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
    address = ipaddress.IPv6Address(words)
    return str(address.ipv4_mapped or address)
