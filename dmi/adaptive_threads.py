"""A Lightning callback that gives training more torch threads only while they pay, and takes them back at once.

Step times are the evidence. A higher count is tried only when ``dmi.core_probe.cores_contended``
finds free cores, and kept only when the median step of a window at it beats that of the
window just before, at the count in use. Any later step several times slower than the
one-thread median is checked by the probe at once: if another process now has a core,
training drops to one thread on the next step. Failed tries are retried after a wait that
doubles, so a loaded machine pays almost nothing.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import lightning.pytorch as pl
import torch

from dmi.core_probe import cores_contended

WARMUP_STEPS = 5  # first steps carry allocation and autograd set-up
WINDOW_STEPS = 16
SETTLE_STEPS = 2  # untimed steps after a switch: the new threads start
KEEP_RATIO = 0.97  # a higher count stays if its median step is at least 3 % faster
DROP_RATIO = 5.0  # a step this many times slower than the one-thread median means lost cores (a busy core: ~100x)
FIRST_WAIT, LONGEST_WAIT = 50, 5000  # steps before trying more threads again


class AdaptiveThreads(pl.Callback):
    """Raise torch's intra-op threads from one up to ``most`` while steps get faster; drop to one under load.

    Only on CPU. Validation is not timed. Each ``fit`` starts afresh (one instance may serve
    several, as in ``dmi train``); ``summary()`` says what the latest settled on.
    """

    def __init__(self, most: int) -> None:
        self.most = most
        self.ladder = [n for n in (1, 2, 4, 8, 16) if n < most] + [most]
        self._reset()

    def _reset(self) -> None:
        self.level = 0  # index into ladder: the count in use
        self.active = False
        self.base: float | None = None  # median one-thread step (s): the drop rule's yardstick
        self.reference: float | None = None  # median step at the count in use, just before a try
        self.phase: str | None = "reference"  # the window being timed: "reference", "trial" or none
        self.times: list[float] = []
        self.trying: int | None = None  # ladder index under trial
        self.skip = WARMUP_STEPS
        self.wait = 0
        self.next_wait = FIRST_WAIT
        self.switches = 0
        self.drops = 0
        self._started: float | None = None

    @property
    def threads(self) -> int:
        return self.ladder[self.trying if self.trying is not None else self.level]

    def summary(self) -> dict[str, Any]:
        return {"requested": "auto", "final": self.ladder[self.level], "switches": self.switches, "drops": self.drops}

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._reset()
        self.active = trainer.strategy.root_device.type == "cpu"
        if self.active:
            torch.set_num_threads(self.threads)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.active:
            self._started = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if not self.active or self._started is None:
            return
        self.observe(time.perf_counter() - self._started)
        self._started = None

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Estimation follows: keep a higher count only if the cores are still free."""
        if self.active:
            self.trying = None
            if self.ladder[self.level] > 1 and cores_contended(self.ladder[self.level]):
                self._drop()
            torch.set_num_threads(self.threads)

    def observe(self, seconds: float) -> None:
        """One training step took ``seconds``: the whole schedule, apart from Lightning's hooks.

        A try is a window at the count in use then, if the probe finds free cores, a window at
        the next count: the two are compared side by side, so slow drift cancels.
        """
        if self.base is not None and self.threads > 1 and seconds > DROP_RATIO * self.base:
            if cores_contended(self.threads):  # not a passing hiccup
                self._drop()
            return
        if self.skip:  # warm-up, or settling after a switch
            self.skip -= 1
            return
        if self.phase is not None:
            self.times.append(seconds)
            if len(self.times) == WINDOW_STEPS:
                median, self.times = statistics.median(self.times), []
                if self.phase == "reference":
                    self.reference = median
                    self.base = median if self.level == 0 else self.base
                    self._try(self.level + 1)
                else:
                    self._judge_trial(median)
            return
        if self.level + 1 < len(self.ladder):
            self.wait -= 1
            if self.wait <= 0:
                self.phase = "reference"

    def _try(self, candidate: int) -> None:
        if cores_contended(self.ladder[candidate]):
            self._give_up_try()
            return
        self.trying, self.phase, self.skip = candidate, "trial", SETTLE_STEPS
        torch.set_num_threads(self.ladder[candidate])

    def _judge_trial(self, median: float) -> None:
        if median >= KEEP_RATIO * self.reference:
            self._give_up_try()
            return
        self.level, self.trying, self.reference = self.trying, None, median
        self.switches += 1
        self.next_wait = FIRST_WAIT
        if self.level + 1 < len(self.ladder):
            self._try(self.level + 1)
        else:
            self.phase = None

    def _give_up_try(self) -> None:
        self.trying, self.phase, self.times = None, None, []
        torch.set_num_threads(self.ladder[self.level])
        self._wait_longer()

    def _drop(self) -> None:
        """Back to one thread: another process has a core."""
        self.drops += 1
        self.level, self.trying, self.phase, self.times, self.skip = 0, None, None, [], SETTLE_STEPS
        torch.set_num_threads(1)
        self._wait_longer()

    def _wait_longer(self) -> None:
        self.wait, self.next_wait = self.next_wait, min(2 * self.next_wait, LONGEST_WAIT)
