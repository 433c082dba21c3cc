"""CLI tests run ``dmi.cli.main`` in-process, in a fresh working directory, with tiny budgets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny models on a shared 2-core machine: one thread is ~20x faster than two under load."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def dmi(capsys: pytest.CaptureFixture):
    """Run ``dmi ARGS...``; returns (exit code, stdout, stderr)."""
    from dmi.cli import main

    def run(*args: str) -> tuple[int, str, str]:
        code = main(list(args))
        out = capsys.readouterr()
        return code, out.out, out.err

    return run


@pytest.fixture(scope="session")
def gaussian_xy() -> tuple[np.ndarray, np.ndarray, float]:
    """x (2 columns), y = x0 + noise: I(X;Y) = ½ log(1 + 1/0.25) ≈ 0.805 nats."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, 2))
    y = x[:, :1] + 0.5 * rng.normal(size=(2000, 1))
    return x, y, 0.5 * float(np.log(1 + 1 / 0.25))
