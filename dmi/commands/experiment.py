"""One benchmark configuration of ``dmi train``: plan it, train or load it, estimate, make its record.

Planning does every check and touches no file, so a bad configuration is refused before
anything is written. Running samples the task exactly as the original did (one draw of
train_sample_num + test_num rows with the seed; train = the first rows).
"""

from __future__ import annotations

import argparse
import datetime
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dmi.commands.options import Budget, resolve_config
from dmi.config import EstimatorConfig
from dmi.tasks import TaskSpec


@dataclass
class Experiment:
    spec: TaskSpec
    cfg: EstimatorConfig
    budget: Budget
    train_sample_num: int
    test_num: int
    digest: str
    checkpoint: Path
    checkpoint_steps: int | None = None  # steps in an existing checkpoint, read when --load_ckpt
    checkpoint_selection: Any = None  # its held-out selection (a SelectionReport), read when --load_ckpt

    def matches(self, record: dict[str, Any]) -> bool:
        """Whether a stored result is this configuration with this budget and estimation grid."""
        return (
            record.get("config_hash") == self.digest
            and record.get("max_steps") == self.cfg.max_steps
            and record.get("n_logsnr") == self.cfg.n_logsnr
        )


def plan_experiment(args: argparse.Namespace, task_type: str, dim: int, strength: float) -> Experiment:
    """Validate one configuration and name its checkpoint; reads nothing but a checkpoint's step count."""
    from dmi.commands.checkpoints import checkpoint_path, config_hash

    spec = TaskSpec(task_type, dim, strength)  # refuses a bad task with a ConfigError (exit 2)
    cfg, budget = resolve_config(args, dim, args.train_sample_num, original_defaults=True)
    data = {"task": spec.name, "train_sample_num": args.train_sample_num, "test_num": args.test_num}
    digest = config_hash(cfg, data)
    path = checkpoint_path(args.checkpoint_dir, spec.name, cfg.architecture, digest)
    return Experiment(spec, cfg, budget, args.train_sample_num, args.test_num, digest, path)


def run_experiment(
    exp: Experiment, args: argparse.Namespace, callbacks: Sequence[Any] = ()
) -> dict[str, Any]:
    """Train (or resume, or only load) one configuration and return its results record."""
    import numpy as np

    from dmi.commands.checkpoints import PeriodicCheckpoint
    from dmi.commands.options import trainer_kwargs
    from dmi.tasks import sample_task, true_mi
    from dmi.training import MIN_VAL_INTERVAL, fit, load_module, save_checkpoint

    cfg, n_train = exp.cfg, exp.train_sample_num
    x, y = sample_task(exp.spec, n_train + exp.test_num, seed=cfg.seed)
    x, y = np.array(x), np.array(y)  # writable copies
    x_train, y_train, x_test, y_test = x[:n_train], y[:n_train], x[n_train:], y[n_train:]

    start = time.perf_counter()
    steps, stored = exp.checkpoint_steps, exp.checkpoint_selection
    finished = stored is not None and stored.stopped_early
    if steps is not None and (steps >= cfg.max_steps or finished):
        module, action, trained, selection = load_module(exp.checkpoint), "loaded", steps, stored
    else:
        resume = exp.checkpoint if steps is not None else None
        # Selection holds out cfg.val_fraction of the training rows; the test rows are never seen.
        module, trainer = fit(
            cfg,
            x_train,
            y_train,
            callbacks=[*callbacks, PeriodicCheckpoint(exp.checkpoint, cfg.val_interval or MIN_VAL_INTERVAL)],
            ckpt_path=resume,
            **trainer_kwargs(args, exp.spec.name),
        )
        save_checkpoint(trainer, exp.checkpoint, selected=module)
        action, trained, selection = ("resumed" if resume else "trained"), trainer.global_step, module.selection
    train_seconds = time.perf_counter() - start if action != "loaded" else 0.0
    est = module.estimate(x_test, y_test, n_logsnr=cfg.n_logsnr, seed=cfg.seed)
    from dmi.diagnostics import diagnose
    from dmi.training import fitted_choices

    diag = diagnose(est, selection) | fitted_choices(module)
    domain = module.check_domain(x_test, y_test, seed=cfg.seed)
    diag["domain"] = domain.as_dict()
    if domain.in_domain is False:  # a loaded checkpoint trained on other data
        diag["warnings"] = [*diag["warnings"], domain.message()]
    return make_record(exp, est, train_seconds, action, trained, true_mi(exp.spec), diag)


def make_record(
    exp: Experiment, est, train_seconds: float, action: str, trained: int, gt_mi: float, diag: dict | None = None
) -> dict:
    """The original's fields (same names), then what this implementation adds."""
    import dmi

    cfg, spec = exp.cfg, exp.spec
    strength = int(spec.strength) if float(spec.strength).is_integer() else spec.strength
    return {
        "task": spec.name,
        "gt_mi": gt_mi,
        "mi_estimate": est.mi,
        "mi_estimate_orthogonal": est.mi_orthogonal,
        "estimator": f"DiffusionMI_{cfg.architecture}",
        "use_moe": cfg.architecture == "moe",
        "snr_threshold": cfg.snr_threshold,
        "seed": cfg.seed,
        "learning_rate": cfg.learning_rate,
        "batch_size": cfg.batch_size,
        "train_sample_num": exp.train_sample_num,
        "test_sample_num": exp.test_num,
        "max_epochs": exp.budget.max_epochs,
        "model_dim": cfg.model_dim,
        "task_dim": spec.dim,
        "task_strength": strength,
        "preprocessing": cfg.preprocess,
        "use_ema": cfg.use_ema,
        # added here
        "ema_decay": cfg.ema_decay,
        "mi_stderr": est.mi_stderr,
        "mi_orthogonal_stderr": est.mi_orthogonal_stderr,
        "mi_estimate_cross": est.mi_cross,
        "mi_cross_stderr": est.mi_cross_stderr,
        "train_seconds": train_seconds,
        "checkpoint": str(exp.checkpoint),
        "checkpoint_action": action,
        "task_type": spec.task_type,
        "architecture": cfg.architecture,
        "max_steps": cfg.max_steps,
        "trained_steps": trained,
        "n_logsnr": cfg.n_logsnr,
        "logsnr_range": list(cfg.logsnr_range),
        "nll_x": est.nll_x,
        "nll_x_given_y": est.nll_x_given_y,
        "diagnostics": diag or {},
        "config_hash": exp.digest,
        "estimator_config": cfg.as_dict(),
        "dmi_version": dmi.__version__,
        "finished_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
