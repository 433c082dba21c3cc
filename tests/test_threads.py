"""Threads are chosen on purpose: one by default, the caller's count when given, restored afterwards."""

from __future__ import annotations

import pytest
import torch

from dmi.threads import DEFAULT_THREADS, check_threads, torch_threads


def test_the_default_is_one_thread_and_bad_counts_are_refused():
    assert DEFAULT_THREADS == 1 and check_threads(None) == 1 and check_threads(3) == 3
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="threads must be a positive integer"):
            check_threads(bad)


def test_threads_are_set_for_the_block_and_restored():
    before = torch.get_num_threads()
    with torch_threads(None) as used:
        assert used == 1 and torch.get_num_threads() == 1
    with torch_threads(2):
        assert torch.get_num_threads() == 2
    assert torch.get_num_threads() == before


def test_the_library_and_the_cli_train_with_the_threads_asked_for(monkeypatch, tmp_path):
    """``torch.set_num_threads`` is watched: what training runs under is what was asked for."""
    import numpy as np

    from dmi.api import DiffusionMI
    from dmi.cli import main

    seen: list[int] = []
    real = torch.set_num_threads
    monkeypatch.setattr(torch, "set_num_threads", lambda n: (seen.append(n), real(n))[1])
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 2))
    DiffusionMI(max_steps=5, model_dim=8, n_blocks=1).estimate(x, x + rng.normal(size=x.shape))
    DiffusionMI(threads=2, max_steps=5, model_dim=8, n_blocks=1).estimate(x, x + rng.normal(size=x.shape))
    np.savez(tmp_path / "s.npz", x=x, y=x + rng.normal(size=x.shape))
    assert main(["estimate", str(tmp_path / "s.npz"), "--max_steps", "5", "--model_dim", "8", "--threads", "2"]) == 0
    assert seen[0] == 1 and 2 in seen[1:]
    assert seen.count(2) >= 2  # the library's and the CLI's
