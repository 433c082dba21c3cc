"""Stale temporary files of killed atomic writes are removed at start; live writers' files are not."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from dmi.tempfiles import STALE_AFTER_S, _host, make_temp, remove_stale


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def touch(folder: Path, name: str, age_s: float = 0.0) -> Path:
    path = folder / name
    path.write_text("partial")
    then = time.time() - age_s
    os.utime(path, (then, then))
    return path


def test_a_temporary_file_is_named_after_its_target_host_and_process(tmp_path):
    fd, name = make_temp(tmp_path / "results.jsonl")
    os.close(fd)
    assert Path(name).name.startswith(f".results.jsonl.{_host()}-{os.getpid()}.") and name.endswith(".tmp")
    assert remove_stale(tmp_path) == []  # this process is alive: its file is in use


def test_only_files_no_live_writer_will_rename_are_removed(tmp_path):
    host = _host()
    killed = touch(tmp_path, f".results.jsonl.{host}-{dead_pid()}.abcd1234.tmp")
    live = touch(tmp_path, f".results.jsonl.{host}-{os.getppid()}.abcd1234.tmp")
    elsewhere = touch(tmp_path, f".results.jsonl.otherhost-{dead_pid()}.abcd1234.tmp")
    elsewhere_old = touch(tmp_path, ".summary.json.otherhost-1.abcd1234.tmp", STALE_AFTER_S + 60)
    old_style = touch(tmp_path, ".model.ckpt.abcd1234.tmp", STALE_AFTER_S + 60)
    old_style_young = touch(tmp_path, ".model.ckpt.efgh5678.tmp")
    not_ours = touch(tmp_path, ".someone-elses.tmp", STALE_AFTER_S + 60)
    target = touch(tmp_path, "results.jsonl")

    removed = remove_stale(tmp_path, tmp_path / "missing-folder")
    assert sorted(removed) == sorted([killed, elsewhere_old, old_style])
    for kept in (live, elsewhere, old_style_young, not_ours, target):
        assert kept.exists(), kept.name
