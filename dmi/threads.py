"""How many CPU threads torch may use while dmi trains or estimates: one, unless told otherwise.

torch starts with one intra-op thread per core. On an idle 2-core machine a second thread
trains 15–22 % faster. When another process (another terminal, a cron job) keeps a core
busy, a fair-share scheduler gives this session one core, and torch's two threads then
wait on each other: training ran over 100 times slower. One thread holds up.
The figures are in ``benchmarks/results/threads.md``. Trials of a sweep use as many
threads as CPUs Ray gives them (``tune.trainable``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

DEFAULT_THREADS = 1


def check_threads(threads: int | None) -> int:
    """The thread count to use: ``threads``, or ``DEFAULT_THREADS`` for None; refuses < 1."""
    if threads is None:
        return DEFAULT_THREADS
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be a positive integer, got {threads!r}")
    return threads


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
