"""Whether more torch threads would now have to wait for cores: a probe of a millisecond when they are free.

Under a fair-share scheduler a session whose cores are shared with another busy session gets
one core; a second torch thread then waits for it at every parallel region. A small matrix
product shows that at once, long before a training step would.
"""

from __future__ import annotations

import time

# A probe: one small matrix product of the default width's shape, fast at any thread count
# unless the threads must wait for a core (then each op takes a scheduler slice, ~100x).
_PROBE_ROWS, _PROBE_IN, _PROBE_OUT = 1024, 64, 256
CONTENDED_RATIO = 4.0


def _probe_seconds(operands: tuple, reps: int) -> float:
    a, w, b = operands
    best = float("inf")
    for _ in range(reps):
        start = time.perf_counter()
        (a @ w).add_(b)
        best = min(best, time.perf_counter() - start)
    return best


def cores_contended(threads: int) -> bool:
    """Whether ``threads`` torch threads would now wait on each other for cores.

    Times a small matrix product at one thread and at ``threads``: free cores run the latter
    about as fast, a core shared with another busy process runs it many times slower. The
    caller's thread count is restored.
    """
    import torch

    before = torch.get_num_threads()
    generator = torch.Generator().manual_seed(0)
    operands = tuple(
        torch.randn(*shape, generator=generator)
        for shape in ((_PROBE_ROWS, _PROBE_IN), (_PROBE_IN, _PROBE_OUT), (_PROBE_ROWS, _PROBE_OUT))
    )
    try:
        torch.set_num_threads(1)
        one = _probe_seconds(operands, reps=3)
        torch.set_num_threads(threads)
        _probe_seconds(operands, reps=1)  # the new threads' first op
        return _probe_seconds(operands, reps=3) >= CONTENDED_RATIO * one
    finally:
        torch.set_num_threads(before)
