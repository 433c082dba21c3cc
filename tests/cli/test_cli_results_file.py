"""The JSONL results file: whole-file replacement, and tolerance of another tool's broken line."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from dmi.commands.results import append_record, read_records


def test_a_failed_append_leaves_the_old_file_and_no_temporary(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "r.jsonl"
    append_record(path, {"a": 1})
    before = path.read_bytes()

    def crash(*args, **kwargs):
        raise OSError("disk went away")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        append_record(path, {"a": 2})
    assert path.read_bytes() == before
    assert not list(tmp_path.glob("*.tmp"))


def test_a_truncated_line_is_skipped_with_a_warning_and_appends_stay_whole(tmp_path: Path, capsys) -> None:
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps({"a": 1}) + "\n" + '{"a": 2, "b"')  # killed writer of another tool
    assert read_records(path) == [{"a": 1}]
    assert "line 2" in capsys.readouterr().err
    append_record(path, {"a": 3})
    assert read_records(path, warn=False) == [{"a": 1}, {"a": 3}]
    assert path.read_text().endswith('{"a": 3}\n')


def test_append_keeps_the_file_mode(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    path.write_text("")
    os.chmod(path, 0o640)
    append_record(path, {"a": 1})
    assert path.stat().st_mode & 0o777 == 0o640
