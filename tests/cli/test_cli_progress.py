"""The live display: configuration k of N and epoch progress, driven by a Lightning callback."""

from __future__ import annotations

import io

import numpy as np


def test_live_display_follows_training() -> None:
    from rich.console import Console

    from dmi.commands.progress import LiveDisplay, quiet
    from dmi.config import EstimatorConfig
    from dmi.training import fit

    screen = io.StringIO()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 2))
    y = x + rng.normal(size=(400, 2))
    cfg = EstimatorConfig(max_steps=20, model_dim=8, batch_size=100)
    console = Console(file=screen, force_terminal=True, width=120)
    with quiet(verbose=False), LiveDisplay(5, console) as display:
        callbacks = display.start(2, "some_task", cfg.max_steps, steps_per_epoch=4)
        assert display.header.plain == "configuration 2/5: some_task"
        fit(cfg, x[:300], y[:300], x[300:], y[300:], callbacks=callbacks, val_every_n_steps=10)
        [task] = display.progress.tasks
        assert task.completed == 20 and task.total == 20
        assert "epoch 5/5" in task.fields["detail"] and "MI≈" in task.fields["detail"]
        display.finish("done here")
    assert "[2/5] some_task: done here" in screen.getvalue()
