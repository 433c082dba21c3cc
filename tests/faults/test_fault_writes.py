"""SIGKILL in the middle of writing results and checkpoints never leaves half a line or half a checkpoint."""

from __future__ import annotations

import json
import os
import queue
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from fault_helpers import sweep_env

KILLS = 12
HELPER = Path(__file__).with_name("write_loop.py")


class Writer:
    """``write_loop.py`` with its acknowledgements read on a thread."""

    def __init__(self, folder: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(HELPER), str(folder)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=sweep_env(),
            start_new_session=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.put(line.strip())

    def next_line(self, timeout: float = 120) -> str:
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"write_loop.py said nothing for {timeout:.0f} s") from None

    def send(self, line: str) -> None:
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def close(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)


def whole_lines(path: Path) -> list[dict]:
    """Every line of the results file parsed; a cut line fails here."""
    text = path.read_text()
    assert text.endswith("\n"), "the results file ends inside a line"
    return [json.loads(line) for line in text.splitlines()]


@pytest.mark.faults
def test_sigkill_during_writes_leaves_whole_lines_and_whole_checkpoints(tmp_path, fault_ledger):
    """After each kill, the clean-up a command runs at its start removes the killed write's files."""
    from dmi.tempfiles import remove_stale
    from dmi.training import load_module

    writer = Writer(tmp_path)
    rng = random.Random(8)
    acknowledged: set[int] = set()
    saved: set[str] = set()
    mid_write = 0

    def take(line: str) -> str:
        """Note one acknowledged write; returns its kind."""
        kind, value = line.split()
        if kind == "appended":
            acknowledged.add(int(value))
        else:
            saved.add(value)
        return kind

    try:
        assert writer.next_line() == "ready"
        for kill in range(1, KILLS + 1):
            writer.send("go")
            line = writer.next_line()
            assert line.startswith("child "), line
            child = int(line.split()[1])
            began = time.monotonic()
            while take(writer.next_line()) != "appended":  # the child is writing
                pass
            time.sleep(rng.uniform(0.0, 0.25))
            os.kill(child, signal.SIGKILL)
            fault_ledger.inject("SIGKILL while writing")
            while (line := writer.next_line()) != f"ended {child}":
                take(line)
            assert time.monotonic() - began < 30

            records = whole_lines(tmp_path / "results.jsonl")
            ids = [r["id"] for r in records]
            fault_ledger.lose(len(acknowledged - set(ids)))
            assert acknowledged <= set(ids), "an acknowledged results line is missing"
            # Besides the acknowledged ones, at most the line in flight at each kill.
            assert len(ids) == len(set(ids)) and len(set(ids) - acknowledged) <= kill
            for name in ("a.ckpt", "b.ckpt"):
                path = tmp_path / name
                assert path.exists() or name not in saved, f"acknowledged checkpoint {name} is gone"
                if path.exists():
                    module = load_module(path)  # a half-written file would not load
                    assert (module.cfg.members, module.cfg.model_dim) == (4, 4)  # width 8 packed: few rows
            leftovers = list(tmp_path.glob(".*.tmp"))
            mid_write += bool(leftovers)  # killed between the temporary file and the rename
            # What every command does when it starts: the killed writer's files go, no other.
            assert sorted(remove_stale(tmp_path)) == sorted(leftovers)
            assert not list(tmp_path.glob(".*.tmp"))
            fault_ledger.survive("SIGKILL while writing", 1)
    finally:
        writer.close()
    assert len(acknowledged) > KILLS and saved == {"a.ckpt", "b.ckpt"}
    print(f"{KILLS} kills, {mid_write} inside a write, {len(acknowledged)} lines acknowledged")
    assert mid_write >= 1, "no kill landed inside a write: the test did not exercise the atomic path"
