"""How many CPU threads torch may use while dmi trains or estimates: one, unless told otherwise.

torch starts with one intra-op thread per core. On an idle machine a second thread trains
somewhat faster. When another process (another terminal, a cron job) keeps a core busy, a
fair-share scheduler gives this session one core, and torch's two threads then wait on each
other: training slows to a crawl. One thread holds up either way. The figures are in
``benchmarks/results/threads.md``. Trials of a sweep use as many threads as CPUs Ray gives
them (``tune.trainable``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from dmi.checks import positive_int_problem, require

DEFAULT_THREADS = 1


def check_threads(threads: int | None) -> int:
    """The thread count to use: ``threads``, or ``DEFAULT_THREADS`` for None; refuses < 1 (``ConfigError``)."""
    if threads is None:
        return DEFAULT_THREADS
    return require("threads", threads, positive_int_problem)


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[int]:
    """Run the block with torch's intra-op threads set to ``threads`` (None: the default), then restore."""
    import torch

    wanted = check_threads(threads)
    before = torch.get_num_threads()
    torch.set_num_threads(wanted)
    try:
        yield wanted
    finally:
        torch.set_num_threads(before)
