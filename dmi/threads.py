"""How many CPU threads torch may use while dmi trains or estimates: chosen as it trains, by default.

torch starts with one intra-op thread per core. On an idle machine a second thread trains
somewhat faster. When another process (another terminal, a cron job) keeps a core busy, a
fair-share scheduler gives this session one core, and torch's two threads then wait on each
other: training slows to a crawl. So the default, ``"auto"``, starts at one thread and lets
``dmi.adaptive_threads.AdaptiveThreads`` take more only while the cores are free and it pays,
dropping back to one the moment a step says otherwise. A fixed count is taken as given. The
figures are in ``benchmarks/results/threads.md``. Trials of a sweep use as many threads as
CPUs Ray gives them (``tune.trainable``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Iterator
from typing import Any, Literal

from dmi.checks import positive_int_problem
from dmi.errors import ConfigError

AUTO = "auto"
DEFAULT_THREADS = AUTO
MOST_AUTO_THREADS = 4  # past this, the default width gains nothing

Threads = int | Literal["auto"]


def check_threads(threads: Any) -> Threads:
    """``threads`` as given (a positive int or ``"auto"``; None: the default); else ``ConfigError``."""
    if threads is None:
        return DEFAULT_THREADS
    if threads == AUTO or positive_int_problem(threads) is None:
        return threads
    raise ConfigError(f"threads must be a positive integer or 'auto', got {threads!r}")


def available_cores() -> int:
    """The cores this process may run on (its affinity mask, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


@dataclasses.dataclass(frozen=True)
class ThreadControl:
    """What ``torch_threads`` set: the request, and the callbacks that training should add for it."""

    requested: Threads
    callbacks: tuple = ()


@contextlib.contextmanager
def torch_threads(threads: Any) -> Iterator[ThreadControl]:
    """Run the block under ``threads`` (None: the default), then restore the caller's count.

    A count is set as given. ``"auto"`` sets one thread and yields, in ``.callbacks``, the
    Lightning callback that may raise it during training; pass those to the Trainer.
    """
    import torch

    wanted = check_threads(threads)
    before = torch.get_num_threads()
    callbacks: tuple = ()
    if wanted == AUTO:
        torch.set_num_threads(1)
        most = min(available_cores(), MOST_AUTO_THREADS)
        if most > 1:
            from dmi.adaptive_threads import AdaptiveThreads

            callbacks = (AdaptiveThreads(most),)
    else:
        torch.set_num_threads(wanted)
    try:
        yield ThreadControl(wanted, callbacks)
    finally:
        torch.set_num_threads(before)


def thread_summary(control: ThreadControl) -> dict[str, Any]:
    """What training ran under: ``{"requested": N}``, or for ``"auto"`` what its callback settled on."""
    if control.callbacks:
        return control.callbacks[0].summary()
    final = 1 if control.requested == AUTO else control.requested  # auto on one core: one thread
    return {"requested": control.requested, "final": final, "switches": 0, "drops": 0}
