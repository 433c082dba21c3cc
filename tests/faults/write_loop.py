"""Writes results lines and checkpoints in a tight loop, in forked children the fault test kills.

Run as ``python write_loop.py FOLDER``. Torch and Lightning are imported and a tiny trainer
is fitted once; then each ``go`` line on stdin forks a child that alternates
``dmi.commands.results.append_record`` and ``dmi.training.save_checkpoint`` for ever,
acknowledging each write on stdout only after it returned (``appended ID`` /
``saved NAME``). The test SIGKILLs the child at a random moment and checks the files.
Protocol lines: ``ready``, ``child PID``, ``ended PID``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

RESULTS_NAME = "results.jsonl"
CHECKPOINT_NAMES = ("a.ckpt", "b.ckpt")


def say(line: str) -> None:
    os.write(1, (line + "\n").encode())  # unbuffered: a forked child shares the pipe


def tiny_trainer():
    import logging
    import warnings

    import numpy as np
    import torch

    from dmi.config import EstimatorConfig
    from dmi.training import fit

    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    x = np.random.default_rng(0).normal(size=(300, 3))
    y = x + np.random.default_rng(1).normal(size=(300, 3))
    cfg = EstimatorConfig(model_dim=8, n_blocks=1, max_steps=2, batch_size=64, val_n_logsnr=4)
    return fit(cfg, x, y)[1]


def write_forever(folder: Path, trainer, first_id: int) -> None:
    from dmi.commands.results import append_record
    from dmi.training import save_checkpoint

    record_id = first_id
    while True:
        append_record(folder / RESULTS_NAME, {"id": record_id, "task": "multinormal", "padding": "x" * 300})
        say(f"appended {record_id}")
        name = CHECKPOINT_NAMES[record_id % len(CHECKPOINT_NAMES)]
        save_checkpoint(trainer, folder / name)
        say(f"saved {name}")
        record_id += 1


def main() -> None:
    folder = Path(sys.argv[1])
    trainer = tiny_trainer()
    say("ready")
    generation = 0
    for line in sys.stdin:
        if line.strip() != "go":
            break
        generation += 1
        pid = os.fork()
        if pid == 0:
            try:
                write_forever(folder, trainer, first_id=generation * 1_000_000)
            finally:
                os._exit(1)
        say(f"child {pid}")
        os.waitpid(pid, 0)
        say(f"ended {pid}")


if __name__ == "__main__":
    main()
