"""Training throughput of the real Lightning path against a bare torch loop, side by side.

For unified and MoE at dims 3, 10 and 50 (batch 256, default width) it measures train
steps per second of ``dmi.training.fit`` and of a bare loop (forward, loss, backward,
Adam step) over the same network, loss and batch; the ratio is the framework's overhead.
Also: estimation time for 10k test points and peak memory. ``--json``: last line is JSON.

    python benchmarks/throughput.py [--json] [--steps 600] [--dims 3 10 50] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time

import numpy as np
import torch

from dmi.config import EstimatorConfig
from dmi.diffusion import LogSNRProposal
from dmi.estimation import denoising_loss
from dmi.training import build_module, fit


def sample(dim: int, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, dim)).astype(np.float32)
    y = (0.8 * x + 0.6 * rng.normal(size=(n, dim))).astype(np.float32)
    return x, y


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def bare_loop_steps_per_s(
    cfg: EstimatorConfig, x: np.ndarray, y: np.ndarray, steps: int, device: torch.device
) -> float:
    """The same network and loss, trained by hand: no Lightning, no data module."""
    module = build_module(cfg, x, y).to(device)
    denoiser = module.denoiser.train()
    xt, yt = module.preprocess(torch.as_tensor(x), torch.as_tensor(y))
    xt, yt = xt.to(device), yt.to(device)
    proposal = LogSNRProposal(cfg.logsnr_loc, cfg.logsnr_scale, cfg.logsnr_clip)
    # The project's own optimizer (same kind, same settings), without its scheduler.
    optimizers = module.configure_optimizers()
    opt = optimizers["optimizer"] if isinstance(optimizers, dict) else optimizers
    b = cfg.batch_size
    warmup = max(steps // 10, 5)
    for i in range(steps + warmup):
        if i == warmup:
            sync(device)
            start = time.perf_counter()
        idx = torch.randint(0, xt.shape[0], (b,), device=device)
        loss = denoising_loss(denoiser, xt[idx], yt[idx], proposal, cfg.y_drop_prob)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    sync(device)
    return steps / (time.perf_counter() - start)


class StepTimer:
    """A Lightning callback timing steps after a warm-up, without touching the loop."""

    def __init__(self, warmup: int) -> None:
        import lightning.pytorch as pl

        timer = self

        class _Callback(pl.Callback):
            def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
                if trainer.global_step == warmup:
                    sync(pl_module.device)
                    timer.start = time.perf_counter()

            def on_train_end(self, trainer, pl_module):
                sync(pl_module.device)
                timer.end = time.perf_counter()
                timer.steps = trainer.global_step - warmup

        self.callback = _Callback()


def lightning_steps_per_s(
    cfg: EstimatorConfig, x: np.ndarray, y: np.ndarray, steps: int, accelerator: str
) -> float:
    warmup = max(steps // 10, 5)
    timer = StepTimer(warmup)
    cfg = cfg.replace(max_steps=steps + warmup)
    # No validation inside the timed window: the project's loop, not its evaluation.
    fit(cfg, x, y, callbacks=[timer.callback], val_every_n_steps=10**9, accelerator=accelerator)
    return timer.steps / (timer.end - timer.start)


def estimation_seconds(cfg: EstimatorConfig, dim: int, device: torch.device) -> float:
    x, y = sample(dim, 10_000, seed=1)
    module = build_module(cfg, x, y).to(device)
    module.estimate(x[:500], y[:500])  # warm-up
    sync(device)
    start = time.perf_counter()
    module.estimate(x, y)
    sync(device)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--dims", type=int, nargs="+", default=[3, 10, 50])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds; medians are reported")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads, fixed for the whole run (default %(default)s)"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    accelerator = "gpu" if device.type == "cuda" else "cpu"
    rows = []
    print(f"device {device}, torch threads {torch.get_num_threads()}, batch 256, {args.steps} timed steps")
    print(f"{'arch':8} {'dim':>4} {'project st/s':>12} {'bare st/s':>10} {'ratio':>6} {'samples/s':>10}", end="")
    print(f" {'est 10k s':>9}")
    for dim in args.dims:
        for arch in ("unified", "moe"):
            # One network of width 64, as the recorded history measured (members=None would pack four here).
            cfg = EstimatorConfig(architecture=arch, batch_size=256, members=1)
            x, y = sample(dim, 20_000)
            # Alternate the two loops and take medians: a busy machine slows both alike.
            bares, projs = [], []
            for _ in range(args.rounds):
                bares.append(bare_loop_steps_per_s(cfg, x, y, args.steps, device))
                projs.append(lightning_steps_per_s(cfg, x, y, args.steps, accelerator))
            bare, proj = statistics.median(bares), statistics.median(projs)
            est_s = estimation_seconds(cfg, dim, device)
            row = dict(
                arch=arch,
                dim=dim,
                project_steps_per_s=proj,
                bare_steps_per_s=bare,
                ratio=proj / bare,
                samples_per_s=proj * 256,
                estimate_10k_seconds=est_s,
            )
            rows.append(row)
            print(
                f"{arch:8} {dim:>4} {proj:>12.1f} {bare:>10.1f} {proj / bare:>6.2f} {proj * 256:>10.0f} {est_s:>9.3f}"
            )
    for dim in args.dims:
        u = next(r for r in rows if r["dim"] == dim and r["arch"] == "unified")
        m = next(r for r in rows if r["dim"] == dim and r["arch"] == "moe")
        print(
            f"dim {dim}: MoE / unified throughput {m['project_steps_per_s'] / u['project_steps_per_s']:.2f}"
        )
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    peak_cuda_mb = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else None
    print(
        f"peak memory: RSS {peak_rss_mb:.0f} MiB" + (f", CUDA {peak_cuda_mb:.0f} MiB" if peak_cuda_mb else "")
    )
    if args.json:
        print(
            json.dumps(
                {
                    "device": str(device),
                    "rows": rows,
                    "peak_rss_mib": peak_rss_mb,
                    "peak_cuda_mib": peak_cuda_mb,
                }
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
