"""Atomic writes, file locks, and the clean-up of temporary files a killed process left behind.

Every atomic write here goes to ``.{name}.{host}-{pid}.{random}.tmp`` beside its target,
then renames. A process killed between the two leaves that file behind. Commands remove
such files when they start, before they write: a file whose writer on this host is no
longer running, or one of any writer older than ``STALE_AFTER_S``. That age allows for
another host on a shared filesystem, whose processes cannot be seen from here. A live
writer's file is never touched. Neither is a file that only looks like ours.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

STALE_AFTER_S = 3600.0
# .{target}.{host}-{pid}.{mkstemp's 8 characters}.tmp; older releases wrote .{target}.{8 characters}.tmp
OURS = re.compile(r"^\.(?P<target>.+?)\.(?:(?P<host>[A-Za-z0-9_-]*)-(?P<pid>\d+)\.)?[a-z0-9_]{8}\.tmp$")


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname().split(".")[0]) or "localhost"


def make_temp(path: str | os.PathLike) -> tuple[int, str]:
    """(fd, name) of a new temporary file beside ``path``, named after this host and process."""
    path = Path(path)
    return tempfile.mkstemp(prefix=f".{path.name}.{_host()}-{os.getpid()}.", suffix=".tmp", dir=path.parent)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def is_stale(path: Path, now: float | None = None) -> bool:
    """Whether ``path`` is a temporary file of ours that no live writer will rename."""
    match = OURS.match(path.name)
    if match is None:
        return False
    try:
        age = (time.time() if now is None else now) - path.stat().st_mtime
    except FileNotFoundError:
        return False
    if age > STALE_AFTER_S:
        return True
    pid = match.group("pid")
    return pid is not None and match.group("host") == _host() and int(pid) != os.getpid() and not _running(int(pid))


def remove_stale(*folders: str | os.PathLike) -> list[Path]:
    """Remove the stale temporary files directly in ``folders`` (missing folders are skipped)."""
    removed = []
    for folder in folders:
        folder = Path(folder)
        if not folder.is_dir():
            continue
        for path in folder.glob(".*.tmp"):
            if is_stale(path):
                try:
                    path.unlink()
                    removed.append(path)
                except FileNotFoundError:
                    pass  # another process cleaned it first
    return removed


def new_file_mode() -> int:
    """The mode a plain ``open`` would give a new file (0o666 less the umask); temporaries are 0o600."""
    current = os.umask(0)
    os.umask(current)
    return 0o666 & ~current


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, mode: int | None = None) -> Iterator[Path]:
    """A temporary path beside ``path`` to write; renamed onto ``path`` only if the block succeeds.

    The temporary file is private (0o600); ``mode`` sets the final file's mode.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = make_temp(path)
    os.close(fd)
    try:
        yield Path(tmp)
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@contextlib.contextmanager
def locked(path: str | os.PathLike) -> Iterator[None]:
    """An exclusive lock on ``path``'s lock file ``.{name}.lock`` (POSIX; elsewhere no lock)."""
    try:
        import fcntl
    except ImportError:  # not POSIX: renames alone still keep every write whole
        yield
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(f".{path.name}.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
