"""The JSONL results file: one JSON object per line, each append atomic.

An append writes the whole new content (existing bytes + one complete line) to a
temporary file in the same directory and renames it over the old one. A rename is atomic
on POSIX file systems, so a process killed at any instant leaves either the old file or
the new one, never half a line. Concurrent writers are serialised by an advisory lock
on a ``.lock`` file beside it. A broken line written by some other tool is skipped on
reading, with a warning.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from dmi.errors import UsageError
from dmi.tempfiles import atomic_path, locked, new_file_mode


def check_writable(path: Path) -> None:
    """Refuse a results path that cannot be written, before anything else is."""

    if path.exists() and not path.is_file():
        raise UsageError(f"results file {path} exists and is not a regular file")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise UsageError(f"results file directory {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise UsageError(f"results file directory {parent} is not writable")


def read_records(path: Path, warn: bool = True) -> list[dict[str, Any]]:
    """Every well-formed JSON object line of ``path`` (none if it does not exist)."""
    if not path.exists():
        return []
    records = []
    with open(path, encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                record = None
            if isinstance(record, dict):
                records.append(record)
            elif warn:
                print(f"dmi: warning: {path} line {number} is not a JSON object; skipped", file=sys.stderr)
    return records


def append_record(path: Path, record: dict[str, Any]) -> None:
    """Append ``record`` as one line; the file is replaced whole, never left half written."""
    line = (json.dumps(record, allow_nan=True) + "\n").encode("utf-8")
    path = Path(path)
    with locked(path):
        old = path.read_bytes() if path.exists() else b""
        if old and not old.endswith(b"\n"):
            old += b"\n"  # keep another tool's truncated line apart from ours
        mode = path.stat().st_mode & 0o777 if path.exists() else new_file_mode()
        with atomic_path(path, mode=mode) as tmp, open(tmp, "wb") as handle:
            handle.write(old + line)
            handle.flush()
            os.fsync(handle.fileno())
