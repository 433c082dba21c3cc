"""Where sweeps live: a local folder (made absolute: trials run in their own folders) or a URI such as ``s3://``."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from dmi.tempfiles import atomic_path

DEFAULT_STORAGE = "./ray_results"


def is_uri(location: str) -> bool:
    return "://" in location


def resolve_storage(location: str | None) -> str:
    location = location or DEFAULT_STORAGE
    return location.rstrip("/") if is_uri(location) else str(Path(location).expanduser().resolve())


def join(root: str, *parts: str) -> str:
    return "/".join([root.rstrip("/"), *parts]) if is_uri(root) else str(Path(root, *parts))


def read_json(location: str) -> dict[str, Any] | None:
    """The JSON object at ``location``, or None if there is none."""
    if not is_uri(location):
        path = Path(location)
        return json.loads(path.read_text()) if path.is_file() else None
    import pyarrow.fs as pafs

    fs, path = pafs.FileSystem.from_uri(location)
    if fs.get_file_info(path).type != pafs.FileType.File:
        return None
    with fs.open_input_stream(path) as stream:
        return json.loads(stream.read().decode())


def write_json(location: str, value: dict[str, Any]) -> None:
    """Atomic locally (temp file + rename), one PUT on an object store; numpy scalars as numbers, the rest as text."""
    text = json.dumps(value, indent=2, default=lambda v: v.item() if hasattr(v, "item") else str(v)) + "\n"
    if not is_uri(location):
        with atomic_path(location) as tmp:
            tmp.write_text(text)
        return
    import pyarrow.fs as pafs

    fs, path = pafs.FileSystem.from_uri(location)
    fs.create_dir(os.path.dirname(path), recursive=True)
    with fs.open_output_stream(path) as stream:
        stream.write(text.encode())
