"""``dmi oracle``: the exact Gaussian denoisers through the estimator, to see what a range loses."""

from __future__ import annotations

import argparse
import json

from dmi.errors import UsageError

HELP = "Estimate MI of a multinormal task with the exact (oracle) denoisers: the range's own bias."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from dmi.commands.options import field_option_help
    from dmi.config import EstimatorConfig

    d = EstimatorConfig()
    parser.add_argument(
        "--task_type", default="multinormal", help="only multinormal has a closed-form oracle"
    )
    parser.add_argument("--dim", type=int, default=3)
    parser.add_argument("--strength", type=float, default=2000)
    parser.add_argument("--logsnr_loc", type=float, default=d.logsnr_loc, help=field_option_help("logsnr_loc"))
    parser.add_argument("--logsnr_scale", type=float, default=d.logsnr_scale, help=field_option_help("logsnr_scale"))
    parser.add_argument(
        "--clip",
        type=float,
        default=d.logsnr_clip,
        help=field_option_help("logsnr_clip", note="range = loc ± clip·scale"),
    )
    parser.add_argument("--n_logsnr", type=int, default=d.n_logsnr, help=field_option_help("n_logsnr"))
    parser.add_argument("--test_num", type=int, default=10000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from dmi.config import EstimatorConfig
    from dmi.denoisers import GaussianDenoiser
    from dmi.estimation import estimate_mi
    from dmi.tasks import TaskSpec, gaussian_covariance

    if args.task_type != "multinormal":
        raise UsageError(f"the oracle needs a Gaussian task: --task_type multinormal, got {args.task_type!r}")
    if args.test_num < 2 or args.n_logsnr < 1:
        raise UsageError("--test_num must be >= 2 and --n_logsnr >= 1")
    spec = TaskSpec(args.task_type, args.dim, args.strength)
    # The range's checks and formula are the config's; a bad value is a ConfigError (exit 2).
    proposal = EstimatorConfig(
        logsnr_loc=args.logsnr_loc, logsnr_scale=args.logsnr_scale, logsnr_clip=args.clip
    ).proposal()
    cov = gaussian_covariance(spec)
    # Float64 sampling from the exact covariance: bmi's float32 sampler shifts the
    # empirical MI of nearly singular tasks by a few hundredths of a nat.
    xy = np.random.default_rng(args.seed).multivariate_normal(np.zeros(len(cov)), cov, size=args.test_num)
    x, y = torch.as_tensor(xy[:, : spec.dim]).float(), torch.as_tensor(xy[:, spec.dim :]).float()
    denoiser = GaussianDenoiser(cov, spec.dim)
    est = estimate_mi(denoiser, x, y, proposal, args.n_logsnr, seed=args.seed)
    gt = float(denoiser.gaussian_mi)
    result = {
        "task": spec.name,
        "gt_mi": gt,
        "mi_estimate": est.mi,
        "mi_estimate_orthogonal": est.mi_orthogonal,
        "mi_stderr": est.mi_stderr,
        "mi_orthogonal_stderr": est.mi_orthogonal_stderr,
        "mi_estimate_cross": est.mi_cross,
        "mi_cross_stderr": est.mi_cross_stderr,
        "logsnr_range": [proposal.low, proposal.high],
    }
    if args.json:
        print(json.dumps(result))
    else:
        lo, hi = proposal.low, proposal.high
        print(f"{spec.name}: true MI {gt:.4f} nats; log-SNR range [{lo:g}, {hi:g}], {args.n_logsnr} nodes")
        print(f"  direct      {est.mi:.4f} ± {est.mi_stderr:.4f}  (error {est.mi - gt:+.4f})")
        err = est.mi_orthogonal - gt
        print(f"  orthogonal  {est.mi_orthogonal:.4f} ± {est.mi_orthogonal_stderr:.4f}  (error {err:+.4f})")
        print(f"  cross       {est.mi_cross:.4f} ± {est.mi_cross_stderr:.4f}  (error {est.mi_cross - gt:+.4f})")
    return 0
