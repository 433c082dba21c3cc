"""What ``dmi train`` shows while it works: a live rich display on a terminal, plain lines otherwise.

Either display gets a Lightning callback per configuration that reports the step count
and the latest validation MI. Lightning's own chatter is silenced by ``quiet`` unless
``--verbose``.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import warnings
from collections.abc import Iterator
from typing import Any, TextIO

import lightning.pytorch as pl


@contextlib.contextmanager
def quiet(verbose: bool) -> Iterator[None]:
    """Hide Lightning's info lines and library warnings (the default output stays readable)."""
    if verbose:
        yield
        return
    loggers = [logging.getLogger(name) for name in ("lightning.pytorch", "lightning.fabric")]
    levels = [lg.level for lg in loggers]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for lg in loggers:
            lg.setLevel(logging.WARNING)
        try:
            yield
        finally:
            for lg, level in zip(loggers, levels, strict=True):
                lg.setLevel(level)


class StepReporter(pl.Callback):
    """Forwards the step count and validation MI of one training run to a display."""

    def __init__(self, display: LiveDisplay) -> None:
        self.display = display

    def on_train_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self.display.advance(trainer.global_step)  # a resumed run starts part-way

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        self.display.advance(trainer.global_step)

    def on_validation_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        mi = trainer.callback_metrics.get("mi")
        if mi is not None:
            self.display.set_mi(float(mi))


class PlainDisplay:
    """One line per configuration, written in two parts (start, result) so a log shows what runs."""

    def __init__(self, total: int, out: TextIO | None = None) -> None:
        self.total, self.out = total, out or sys.stdout

    def __enter__(self) -> PlainDisplay:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def start(self, k: int, label: str, max_steps: int, steps_per_epoch: int) -> list[pl.Callback]:
        self.out.write(f"[{k}/{self.total}] {label}: ")
        self.out.flush()
        return []

    def finish(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def line(self, k: int, label: str, text: str) -> None:
        print(f"[{k}/{self.total}] {label}: {text}", file=self.out, flush=True)


class LiveDisplay:
    """A header ``configuration k/N: <task>`` over a step bar with epoch count and the latest MI."""

    def __init__(self, total: int, console: Any = None) -> None:
        from rich.console import Console, Group
        from rich.live import Live
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
        from rich.text import Text

        self.total = total
        self.header = Text()
        self.progress = Progress(
            BarColumn(),
            TextColumn("{task.fields[detail]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
        )
        self.live = Live(Group(self.header, self.progress), console=console or Console(), transient=True)
        self.task = None
        self.steps_per_epoch = self.max_steps = 1
        self.mi: float | None = None
        self.label = ""

    def __enter__(self) -> LiveDisplay:
        self.live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._drop()
        self.live.stop()

    def _drop(self) -> None:
        if self.task is not None:
            self.progress.remove_task(self.task)
            self.task = None
        self.header.plain = ""

    def start(self, k: int, label: str, max_steps: int, steps_per_epoch: int) -> list[pl.Callback]:
        self._drop()
        self.steps_per_epoch, self.mi, self.max_steps = max(steps_per_epoch, 1), None, max_steps
        self.label = f"[{k}/{self.total}] {label}"
        self.header.plain = f"configuration {k}/{self.total}: {label}"
        self.task = self.progress.add_task("", total=max_steps, detail=self._detail(0))
        return [StepReporter(self)]

    def _detail(self, step: int) -> str:
        epochs = -(-self.max_steps // self.steps_per_epoch)
        epoch = min(step // self.steps_per_epoch + 1, epochs)
        text = f"step {step}/{self.max_steps} · epoch {epoch}/{epochs}"
        return text if self.mi is None else f"{text} · MI≈{self.mi:.3f}"

    def advance(self, step: int) -> None:
        if self.task is not None:
            self.progress.update(self.task, completed=step, detail=self._detail(step))

    def set_mi(self, mi: float) -> None:
        self.mi = mi

    def finish(self, text: str) -> None:
        self._drop()
        self.live.console.print(f"{self.label}: {text}", highlight=False, markup=False)

    def line(self, k: int, label: str, text: str) -> None:
        self.live.console.print(f"[{k}/{self.total}] {label}: {text}", highlight=False, markup=False)


def make_display(total: int) -> PlainDisplay | LiveDisplay:
    """Live on a terminal, plain lines when stdout is a file or a pipe."""
    return LiveDisplay(total) if sys.stdout.isatty() else PlainDisplay(total)
