"""Steps to accuracy: training steps until the estimate is within 0.3 nats of the truth.

Multinormal dim 3, strength 200 (true 9.904 nats), 100k train / 10k test, the estimate
taken every ``--every`` steps. Arms, all on this code:
  defaults          the project's defaults (range [-12, 24], shared-noise grid, Gaussian base);
  defaults-no-base  the same without the Gaussian base (what the range and grid buy alone);
  original          the original's log-SNR range (loc 2, scale 3, clip 4) and independent
                    draws for the two NLL terms (one per point), no Gaussian base.

    python benchmarks/convergence.py [--max_steps 8000] [--every 500] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import lightning.pytorch as pl
import torch

from dmi.config import EstimatorConfig
from dmi.estimation import estimate_mi, estimate_mi_independent
from dmi.tasks import TaskSpec, sample_task, true_mi
from dmi.training import fit

ARMS = {
    "defaults": ({}, "grid"),
    "defaults-no-base": ({"gaussian_base": False}, "grid"),
    "original": ({"gaussian_base": False, "logsnr_loc": 2.0, "logsnr_scale": 3.0, "logsnr_clip": 4.0}, "independent"),
}


class Probe(pl.Callback):
    """Estimates MI on the test set every ``every`` steps (and at step 0)."""

    def __init__(self, x_test, y_test, every: int, scheme: str) -> None:
        self.x, self.y, self.every, self.scheme = x_test, y_test, every, scheme
        self.curve: list[tuple[int, float]] = []

    def _probe(self, pl_module) -> None:
        was_training = pl_module.training
        pl_module.eval()
        x, y = pl_module.preprocess(torch.as_tensor(self.x), torch.as_tensor(self.y))
        x, y = x.to(pl_module.device), y.to(pl_module.device)
        if self.scheme == "grid":
            est = estimate_mi(pl_module.denoiser, x, y, pl_module.proposal, pl_module.cfg.n_logsnr, seed=0)
        else:
            est = estimate_mi_independent(pl_module.denoiser, x, y, pl_module.proposal, n_draws=1, seed=0)
        self.curve.append((pl_module.global_step, est.mi))
        pl_module.train(was_training)

    def on_train_start(self, trainer, pl_module) -> None:
        self._probe(pl_module)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step % self.every == 0:
            self._probe(pl_module)


def steps_to_within(curve: list[tuple[int, float]], truth: float, tol: float) -> int | None:
    return next((step for step, mi in curve if abs(mi - truth) <= tol), None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max_steps", type=int, default=8000)
    parser.add_argument("--every", type=int, default=500)
    parser.add_argument("--tolerance", type=float, default=0.3)
    parser.add_argument("--n_train", type=int, default=100_000)
    parser.add_argument("--n_test", type=int, default=10_000)
    parser.add_argument("--arms", nargs="+", default=list(ARMS))
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads, fixed for the whole run (default %(default)s)"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    spec = TaskSpec("multinormal", 3, 200)
    truth = true_mi(spec)
    x, y = sample_task(spec, args.n_train + args.n_test, seed=0)
    rows = []
    print(f"{spec.name}, true MI {truth:.3f}; estimate every {args.every} steps; tolerance {args.tolerance} nats")
    for arm in args.arms:
        overrides, scheme = ARMS[arm]
        cfg = EstimatorConfig(max_steps=args.max_steps).replace(**overrides)
        probe = Probe(x[args.n_train :], y[args.n_train :], args.every, scheme)
        start = time.perf_counter()
        fit(cfg, x[: args.n_train], y[: args.n_train], callbacks=[probe], val_every_n_steps=10**9)
        seconds = time.perf_counter() - start
        reached = steps_to_within(probe.curve, truth, args.tolerance)
        rows.append({"arm": arm, "steps_to_within": reached, "curve": probe.curve, "seconds": seconds})
        curve = " ".join(f"{s}:{mi:.2f}" for s, mi in probe.curve)
        shown = reached if reached is not None else f"> {args.max_steps}"
        print(f"{arm:18} steps to within {args.tolerance}: {shown}")
        print(f"{'':18} curve {curve}  ({seconds:.0f} s)", flush=True)
    if args.json:
        print(json.dumps({"task": spec.name, "true_mi": truth, "rows": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
