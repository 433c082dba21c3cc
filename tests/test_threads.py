"""Threads are chosen on purpose: ``auto`` by default (one, more only while it pays), a count when given."""

from __future__ import annotations

import pytest
import torch

import dmi.adaptive_threads as adaptive
import dmi.core_probe as core_probe
import dmi.threads as threads_module
from dmi.adaptive_threads import FIRST_WAIT, SETTLE_STEPS, WARMUP_STEPS, WINDOW_STEPS, AdaptiveThreads
from dmi.core_probe import cores_contended
from dmi.threads import DEFAULT_THREADS, check_threads, thread_summary, torch_threads


def test_the_default_is_auto_and_bad_counts_are_refused():
    assert DEFAULT_THREADS == "auto" and check_threads(None) == "auto" and check_threads(3) == 3
    for bad in (0, -1, 1.5, True, "2", "fast"):
        with pytest.raises(ValueError, match="threads must be a positive integer or 'auto'"):
            check_threads(bad)


def test_threads_are_set_for_the_block_and_restored(monkeypatch):
    monkeypatch.setattr(threads_module, "available_cores", lambda: 2)
    before = torch.get_num_threads()
    with torch_threads(None) as control:
        assert torch.get_num_threads() == 1
        assert [type(c) for c in control.callbacks] == [AdaptiveThreads] and control.callbacks[0].most == 2
    with torch_threads(2) as control:
        assert torch.get_num_threads() == 2 and control.callbacks == ()
        assert thread_summary(control)["final"] == 2
    assert torch.get_num_threads() == before
    monkeypatch.setattr(threads_module, "available_cores", lambda: 1)
    with torch_threads("auto") as control:  # one core: nothing to adapt
        assert control.callbacks == () and thread_summary(control)["final"] == 1


def run_steps(callback: AdaptiveThreads, seconds: float, n: int) -> None:
    for _ in range(n):
        callback.observe(seconds)


@pytest.fixture
def free_cores(monkeypatch):
    """The probe's answer, set by the test; the calls it got are counted."""
    state = {"contended": False, "probes": 0}

    def probe(threads: int) -> bool:
        state["probes"] += 1
        return state["contended"]

    monkeypatch.setattr(adaptive, "cores_contended", probe)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield state
    torch.set_num_threads(before)


def test_more_threads_are_kept_while_faster_and_dropped_at_the_first_slow_step(free_cores):
    callback = AdaptiveThreads(2)
    run_steps(callback, 0.010, WARMUP_STEPS + WINDOW_STEPS)  # the one-thread window
    assert torch.get_num_threads() == 2 and free_cores["probes"] == 1  # cores free: tried
    run_steps(callback, 0.007, SETTLE_STEPS + WINDOW_STEPS)  # faster: kept
    assert callback.summary() == {"requested": "auto", "final": 2, "switches": 1, "drops": 0}
    run_steps(callback, 0.008, 50)
    assert torch.get_num_threads() == 2
    callback.observe(0.100)  # a hiccup: the cores are still free
    assert torch.get_num_threads() == 2 and free_cores["probes"] == 2
    free_cores["contended"] = True
    callback.observe(0.100)  # another process took a core
    free_cores["contended"] = False
    assert torch.get_num_threads() == 1 and callback.summary()["drops"] == 1
    run_steps(callback, 0.010, SETTLE_STEPS + FIRST_WAIT + WINDOW_STEPS - 1)  # settle, wait, a one-thread window
    assert torch.get_num_threads() == 1 and free_cores["probes"] == 3
    callback.observe(0.010)  # then tried again
    assert torch.get_num_threads() == 2 and free_cores["probes"] == 4


def test_more_threads_that_do_not_pay_are_given_back_and_tried_less_often(free_cores):
    callback = AdaptiveThreads(2)
    run_steps(callback, 0.010, WARMUP_STEPS + WINDOW_STEPS)
    run_steps(callback, 0.00985, SETTLE_STEPS + WINDOW_STEPS)  # not 3 % faster
    assert torch.get_num_threads() == 1 and callback.summary()["final"] == 1
    run_steps(callback, 0.010, FIRST_WAIT + WINDOW_STEPS)
    assert torch.get_num_threads() == 2 and free_cores["probes"] == 2
    run_steps(callback, 0.011, SETTLE_STEPS + WINDOW_STEPS)
    run_steps(callback, 0.010, 2 * FIRST_WAIT + WINDOW_STEPS - 1)  # the wait has doubled
    assert torch.get_num_threads() == 1 and free_cores["probes"] == 2
    callback.observe(0.010)
    assert free_cores["probes"] == 3


def test_a_contended_machine_stays_at_one_thread(free_cores):
    free_cores["contended"] = True
    callback = AdaptiveThreads(4)
    assert callback.ladder == [1, 2, 4]
    run_steps(callback, 0.010, WARMUP_STEPS + WINDOW_STEPS + 10 * FIRST_WAIT)
    assert torch.get_num_threads() == 1 and callback.summary()["switches"] == 0
    assert free_cores["probes"] <= 4  # the waits between probes double


def test_the_ladder_climbs_while_each_step_pays(free_cores):
    callback = AdaptiveThreads(4)
    run_steps(callback, 0.010, WARMUP_STEPS + WINDOW_STEPS)
    run_steps(callback, 0.007, SETTLE_STEPS + WINDOW_STEPS)
    assert torch.get_num_threads() == 4
    run_steps(callback, 0.0069, SETTLE_STEPS + WINDOW_STEPS)  # 4 no better than 2
    assert torch.get_num_threads() == 2 and callback.summary()["final"] == 2


def test_training_ends_at_one_thread_if_the_cores_are_taken_by_then(free_cores):
    callback = AdaptiveThreads(2)
    callback.active = True
    run_steps(callback, 0.010, WARMUP_STEPS + WINDOW_STEPS)
    run_steps(callback, 0.007, SETTLE_STEPS + WINDOW_STEPS)
    free_cores["contended"] = True
    callback.on_train_end(None, None)
    assert torch.get_num_threads() == 1 and callback.summary()["final"] == 1


class _Probe:
    """Probe timings: 1 ms at one thread, ``slow`` ms at more."""

    def __init__(self, slow: float) -> None:
        self.slow = slow

    def __call__(self, operands, reps: int) -> float:
        return 1e-3 if torch.get_num_threads() == 1 else self.slow * 1e-3


def test_the_probe_calls_cores_contended_when_more_threads_run_many_times_slower(monkeypatch):
    before = torch.get_num_threads()
    monkeypatch.setattr(core_probe, "_probe_seconds", _Probe(20.0))
    assert cores_contended(2) is True
    monkeypatch.setattr(core_probe, "_probe_seconds", _Probe(0.8))
    assert cores_contended(2) is False
    assert torch.get_num_threads() == before
    monkeypatch.undo()
    assert isinstance(cores_contended(2), bool) and torch.get_num_threads() == before  # the real one runs


def test_auto_trains_and_says_what_it_ran_under():
    import numpy as np

    from dmi.api import DiffusionMI

    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 2))
    before = torch.get_num_threads()
    estimator = DiffusionMI(max_steps=60, model_dim=8, n_blocks=1, patience=10**6)
    estimator.fit_and_estimate(x, x + rng.normal(size=x.shape))  # estimate_with_info's threads come from here
    assert estimator.threads_used["requested"] == "auto" and estimator.threads_used["final"] in (1, 2, 4)
    assert torch.get_num_threads() == before


def test_the_library_and_the_cli_train_with_the_threads_asked_for(monkeypatch, tmp_path):
    """``torch.set_num_threads`` is watched: what training runs under is what was asked for."""
    import numpy as np

    import dmi.commands.estimate as estimate_command
    from dmi.api import DiffusionMI
    from dmi.cli import main

    seen: list[int] = []
    real = torch.set_num_threads
    monkeypatch.setattr(torch, "set_num_threads", lambda n: (seen.append(n), real(n))[1])
    reported: list[dict] = []
    real_format = estimate_command.format_result
    monkeypatch.setattr(
        estimate_command, "format_result", lambda *a, **k: (reported.append(a[8]["threads"]), real_format(*a, **k))[1]
    )
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 2))
    DiffusionMI(max_steps=5, model_dim=8, n_blocks=1).estimate(x, x + rng.normal(size=x.shape))
    DiffusionMI(threads=2, max_steps=5, model_dim=8, n_blocks=1).estimate(x, x + rng.normal(size=x.shape))
    np.savez(tmp_path / "s.npz", x=x, y=x + rng.normal(size=x.shape))
    sample = str(tmp_path / "s.npz")
    assert main(["estimate", sample, "--max_steps", "5", "--model_dim", "8", "--threads", "2"]) == 0
    assert seen[0] == 1 and 2 in seen[1:]
    assert seen.count(2) >= 2  # the library's and the CLI's
    assert main(["estimate", sample, "--max_steps", "5", "--model_dim", "8", "--threads", "auto"]) == 0
    assert reported[0]["requested"] == 2 and reported[1]["requested"] == "auto"


@pytest.mark.parametrize("bad", ["0", "two", "-1"])
def test_the_cli_refuses_a_bad_thread_count_in_one_line(bad, tmp_path, capsys):
    import numpy as np

    from dmi.cli import main

    np.savez(tmp_path / "s.npz", x=np.arange(40.0).reshape(20, 2), y=np.arange(40.0).reshape(20, 2) ** 2)
    assert main(["estimate", str(tmp_path / "s.npz"), "--threads", bad]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--threads must be a positive integer or 'auto'" in err
