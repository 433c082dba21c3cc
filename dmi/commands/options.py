"""Hyperparameter options shared by ``dmi train`` and ``dmi estimate``, and their resolution.

The original ``main.py`` names are kept. Options left unset are resolved per configuration
(per task dimension and training-set size), never written back into ``args``: the original
did that in ``--run_all``, so every dimension after the first kept dim 3's defaults.
Fields of ``EstimatorConfig`` without a named option here get one generated from the
dataclass, so a new field reaches the command line without touching this file. Every
field's option help starts with the field's ``metadata["help"]`` (``field_option_help``).
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass

from dmi.checks import positive_number_problem
from dmi.config import EstimatorConfig, field_help
from dmi.errors import ConfigError, UsageError
from dmi.threads import DEFAULT_THREADS, check_threads

# Fields with a hand-written option below (original names); the rest are generated.
NAMED_FIELDS = frozenset(
    {
        "architecture",
        "snr_threshold",
        "model_dim",
        "learning_rate",
        "batch_size",
        "max_steps",
        "logsnr_loc",
        "logsnr_scale",
        "logsnr_clip",
        "use_ema",
        "ema_decay",
        "preprocess",
        "seed",
        "val_interval",
        "members",
    }
)
ORIGINAL_MODEL_DIM = 64
ORIGINAL_MEMBERS = 1  # the original trains one network whatever the sample size


def field_option_help(name: str, default: str = "%(default)s", note: str = "") -> str:
    """The help of a field's option: its ``metadata["help"]``, then ``note``, then its default in brackets.

    ``default`` and ``note`` are argparse help text (``%(default)s`` expands, ``%%`` is a percent sign).
    """
    text = field_help(name).replace("%", "%%")
    return f"{text}{'; ' + note if note else ''} (default {default})"


@dataclass(frozen=True)
class Budget:
    """The training length of one configuration: steps, and epochs when given in epochs."""

    max_steps: int
    max_epochs: int | None
    steps_per_epoch: int


def add_estimator_options(parser: argparse.ArgumentParser, *, original_defaults: bool) -> None:
    """Add the estimator and training options; ``original_defaults`` picks main.py's defaults.

    ``dmi train`` reproduces the original (model_dim 64, dimension-dependent lr, batch size
    and epochs); ``dmi estimate`` on a user's own data uses the library's defaults.
    """
    lib = EstimatorConfig()
    est = parser.add_argument_group("estimator")
    est.add_argument(
        "--arch",
        default=None,
        metavar="unified|moe",
        help=field_option_help("architecture", lib.architecture, "a clearer synonym of --use_moe"),
    )
    est.add_argument("--use_moe", action="store_true", help="mixture of experts split at --snr_threshold")
    est.add_argument(
        "--snr_threshold",
        type=float,
        metavar="A",
        default=lib.snr_threshold,
        help=field_option_help("snr_threshold"),
    )
    model_dim = ORIGINAL_MODEL_DIM if original_defaults else lib.model_dim
    est.add_argument("--model_dim", type=int, metavar="N", default=model_dim, help=field_option_help("model_dim"))
    est.add_argument(
        "--members",
        metavar="N|auto",
        default=ORIGINAL_MEMBERS if original_defaults else "auto",
        help=field_option_help("members", note="'auto' is None"),
    )
    est.add_argument(
        "--logsnr_loc",
        type=float,
        metavar="A",
        default=lib.logsnr_loc,
        help=field_option_help("logsnr_loc", note="the original's was 2"),
    )
    est.add_argument(
        "--logsnr_scale",
        type=float,
        metavar="S",
        default=lib.logsnr_scale,
        help=field_option_help("logsnr_scale", note="the original's was 3"),
    )
    est.add_argument(
        "--logsnr_clip",
        type=float,
        metavar="C",
        default=lib.logsnr_clip,
        help=field_option_help(
            "logsnr_clip",
            f"%(default)s: {default_range()}",
            "the original's 2/3/4 gives [-10, 14] and loses up to 0.98 nats at 14.5 nats, see `dmi oracle`",
        ),
    )
    est.add_argument(
        "--preprocess",
        default=lib.preprocess,
        metavar="rescale|rank_gauss|none",
        help=field_option_help("preprocess"),
    )
    est.add_argument(
        "--seed",
        type=int,
        metavar="N",
        default=lib.seed,
        help=field_option_help("seed"),
    )

    tr = parser.add_argument_group("training")
    if original_defaults:
        lr_help = field_option_help("learning_rate", "1e-3 if dim <= 5 else 2e-3, the original's")
        batch_help = field_option_help("batch_size", "128 if dim <= 5 else 256, the original's")
        epochs_help = "default: 500 if dim <= 5 else 750 (the original's)"
        steps_default = "--max_epochs × training steps per epoch"
    else:
        lr_help = field_option_help("learning_rate", f"{lib.learning_rate:g}")
        batch_help = field_option_help("batch_size", f"{lib.batch_size}")
        epochs_help = f"default: --max_steps {lib.max_steps}"
        steps_default = f"{lib.max_steps}"
    tr.add_argument("--learning_rate", type=float, metavar="LR", default=None, help=lr_help)
    tr.add_argument("--batch_size", type=int, metavar="N", default=None, help=batch_help)
    tr.add_argument(
        "--max_epochs",
        type=int,
        metavar="N",
        default=None,
        help=f"passes over the training set, converted to steps; {epochs_help}",
    )
    tr.add_argument(
        "--max_steps",
        type=int,
        metavar="N",
        default=None,
        help=field_option_help("max_steps", steps_default, "overrides --max_epochs"),
    )
    tr.add_argument(
        "--val_interval",
        "--mi_estimation_interval",
        dest="val_interval",
        type=int,
        metavar="N",
        default=None,
        help=field_option_help(
            "val_interval",
            "200, raised where evaluation would cost over 10 %% of training",
            f"evaluated (with MI on a cheap {lib.val_n_logsnr}-node grid) on the validation split of the "
            "training set, never the test set",
        ),
    )
    tr.add_argument(
        "--test_batch_size",
        type=int,
        metavar="N",
        default=1000,
        help="accepted for compatibility; estimation sizes its own chunks (default %(default)s)",
    )
    tr.add_argument("--use_ema", action="store_true", help=field_option_help("use_ema", "off"))
    tr.add_argument("--ema_decay", type=float, metavar="D", default=lib.ema_decay, help=field_option_help("ema_decay"))
    tr.add_argument(
        "--tensorboard",
        default=None,
        metavar="DIR",
        help="log training curves to TensorBoard under DIR (off by default)",
    )
    tr.add_argument(
        "--threads",
        metavar="N|auto",
        default=DEFAULT_THREADS,
        help="CPU threads for torch (default %(default)s: start at 1, take more while the cores are free "
        "and steps get faster, back to 1 as soon as another process keeps a core busy)",
    )
    tr.add_argument("--verbose", action="store_true", help="show Lightning's own messages and warnings")

    adv = parser.add_argument_group("advanced (other EstimatorConfig fields)")
    for field in dataclasses.fields(EstimatorConfig):
        if field.name in NAMED_FIELDS:
            continue
        default = getattr(lib, field.name)
        option = f"--{field.name}"
        if isinstance(default, bool):
            adv.add_argument(
                option,
                action=argparse.BooleanOptionalAction,
                default=None,
                help=field_option_help(field.name, "on" if default else "off"),
            )
        else:
            metavar = {int: "N", float: "X"}.get(type(default), "VALUE")
            adv.add_argument(
                option,
                type=type(default),
                default=None,
                metavar=metavar,
                help=field_option_help(field.name, f"{default!r}".replace("%", "%%")),
            )


def default_range() -> str:
    """The library's default log-SNR range, e.g. ``[-12, 24]`` (read, never copied)."""
    low, high = EstimatorConfig().logsnr_range
    return f"[{low:g}, {high:g}]"


def architecture(args: argparse.Namespace) -> str:
    """``--arch`` or ``--use_moe``; contradicting each other is an error."""

    if args.arch is None:
        return "moe" if args.use_moe else "unified"
    if args.arch not in ("unified", "moe"):
        raise UsageError(f"--arch must be 'unified' or 'moe', got {args.arch!r}")
    if args.use_moe and args.arch != "moe":
        raise UsageError(f"--use_moe contradicts --arch {args.arch}")
    return args.arch


def check_positive(args: argparse.Namespace, *names: str) -> None:
    """Sizes and counts must be > 0 (None means unset and is allowed)."""

    for name in names:
        value = getattr(args, name)
        if value is not None and positive_number_problem(value):
            raise UsageError(f"--{name} must be > 0, got {value}")


def check_common(args: argparse.Namespace) -> None:
    check_positive(
        args,
        "model_dim",
        "learning_rate",
        "batch_size",
        "max_epochs",
        "max_steps",
        "val_interval",
        "test_batch_size",
    )
    args.threads = parse_threads(args.threads)
    args.members = parse_members(args.members)


def parse_members(text: str | int | None) -> int | None:
    """``--members``: ``auto`` (None) or a positive integer (``UsageError`` otherwise)."""
    if text is None or text == "auto":
        return None
    if str(text).isdigit() and int(text) > 0:
        return int(text)
    raise UsageError(f"--members must be a positive integer or 'auto', got {text!r}")


def parse_threads(text: str | int) -> int | str:
    """``--threads``: ``auto`` or a positive integer (``UsageError`` otherwise)."""
    try:
        return check_threads(int(text) if str(text).isdigit() else text)
    except ConfigError:
        raise UsageError(f"--threads must be a positive integer or 'auto', got {text!r}") from None


def resolve_config(
    args: argparse.Namespace, dim: int, n_train: int, *, original_defaults: bool
) -> tuple[EstimatorConfig, Budget]:
    """The ``EstimatorConfig`` and training budget of one configuration.

    Original rules when unset: dim <= 5 → lr 1e-3, batch 128, 500 epochs; else lr 2e-3,
    batch 256, 750 epochs. Each unset value is resolved on its own (the original also
    overwrote a given --batch_size whenever --learning_rate was unset). An epoch is
    ``n_train // batch_size`` steps, as the training batches drop the last partial one.
    """
    lib = EstimatorConfig()
    small = dim <= 5
    if original_defaults:
        lr = args.learning_rate or (1e-3 if small else 2e-3)
        batch = args.batch_size or (128 if small else 256)
        default_epochs: int | None = 500 if small else 750
    else:
        lr = args.learning_rate or lib.learning_rate
        batch = args.batch_size or lib.batch_size
        default_epochs = None
    steps_per_epoch = max(n_train // min(batch, n_train), 1)
    epochs = args.max_epochs or default_epochs
    if args.max_steps is not None:
        budget = Budget(args.max_steps, None, steps_per_epoch)
    elif epochs is not None:
        budget = Budget(epochs * steps_per_epoch, epochs, steps_per_epoch)
    else:
        budget = Budget(lib.max_steps, None, steps_per_epoch)
    values = {
        "architecture": architecture(args),
        "snr_threshold": args.snr_threshold,
        "model_dim": args.model_dim,
        "members": parse_members(args.members),
        "learning_rate": lr,
        "batch_size": batch,
        "max_steps": budget.max_steps,
        "logsnr_loc": args.logsnr_loc,
        "logsnr_scale": args.logsnr_scale,
        "logsnr_clip": args.logsnr_clip,
        "use_ema": args.use_ema,
        "ema_decay": args.ema_decay,
        "preprocess": args.preprocess,
        "seed": args.seed,
    }
    if args.val_interval is not None:
        values["val_interval"] = args.val_interval
    for field in dataclasses.fields(EstimatorConfig):
        if field.name not in NAMED_FIELDS and getattr(args, field.name, None) is not None:
            values[field.name] = getattr(args, field.name)
    return EstimatorConfig.from_dict(values), budget


def trainer_kwargs(args: argparse.Namespace, run_name: str) -> dict:
    """Lightning Trainer options: a TensorBoard logger when ``--tensorboard DIR`` asks for one."""
    if not args.tensorboard:
        return {}
    from lightning.pytorch.loggers import TensorBoardLogger

    return {"logger": TensorBoardLogger(args.tensorboard, name=run_name)}


def check_tensorboard(args: argparse.Namespace) -> None:
    """Refuse ``--tensorboard`` up front when neither tensorboard nor tensorboardX is installed."""

    if not args.tensorboard:
        return
    import importlib.util

    if not any(importlib.util.find_spec(name) for name in ("tensorboard", "tensorboardX")):
        raise UsageError("--tensorboard needs the tensorboard or tensorboardX package installed")
