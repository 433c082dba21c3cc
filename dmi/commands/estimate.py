"""``dmi estimate DATA``: I(X;Y) of the user's own sample, direct and orthogonal, with standard errors.

The sample is split as ``DiffusionMI`` splits it (shuffled by the seed, ``--test_fraction``
held out): the estimator trains on the rest, selects its weights on a validation split of
that rest (``--val_fraction``), and estimates on the held-out part, which selection never
saw. Nothing is written (unless ``--tensorboard``).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

from dmi.commands.options import add_estimator_options, check_common
from dmi.config import TEST_FRACTION
from dmi.errors import EXIT_FAILED, UsageError

HELP = "Estimate I(X;Y) of your own sample from a .npz, .csv or .parquet file."

EPILOG = """\
examples:
  dmi estimate sample.npz                          # arrays x and y
  dmi estimate sample.npz --x inputs --y labels    # other array names
  dmi estimate table.csv --x a b --y c --bits      # columns of a table (.csv or .parquet)
  dmi estimate table.parquet --x a --y b --json    # one JSON object on stdout

Defaults are the library's (EstimatorConfig), not the original benchmark's.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.usage = "dmi estimate DATA [--x NAME ...] [--y NAME ...] [options]   (dmi estimate -h lists them)"
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    parser.add_argument("data", metavar="DATA", help="a .npz, .csv or .parquet file")
    data = parser.add_argument_group("data")
    data.add_argument(
        "--x",
        nargs="+",
        default=None,
        metavar="NAME",
        help="x: one array name (.npz, default 'x') or column names (required for tables)",
    )
    data.add_argument(
        "--y",
        nargs="+",
        default=None,
        metavar="NAME",
        help="y: one array name (.npz, default 'y') or column names (required for tables)",
    )
    data.add_argument(
        "--test_fraction",
        type=float,
        default=TEST_FRACTION,
        metavar="F",
        help="share of the sample held out for the estimate (default %(default)s)",
    )
    data.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    data.add_argument("--bits", action="store_true", help="report bits instead of nats")
    data.add_argument(
        "--spectrum",
        metavar="FILE.png",
        default=None,
        help="also save a plot of the information spectrum (the MI integrand over log-SNR, on the test part)",
    )
    add_estimator_options(parser, original_defaults=False)


def run(args: argparse.Namespace) -> int:
    from dmi.api import DiffusionMI
    from dmi.commands.datafiles import load_sample
    from dmi.commands.options import check_tensorboard, resolve_config
    from dmi.data import validate_sample

    check_common(args)
    if args.spectrum and Path(args.spectrum).suffix.lower() not in (".png", ".pdf", ".svg"):
        raise UsageError(f"--spectrum must name a .png, .pdf or .svg file, got {args.spectrum!r}")
    if not 0.0 < args.test_fraction < 1.0:
        raise UsageError(f"--test_fraction must be in (0, 1), got {args.test_fraction}")
    check_tensorboard(args)
    sample = load_sample(args.data, args.x, args.y)
    x, y = validate_sample(sample.x, sample.y, min_samples=4)
    n_train = len(x) - int(round(len(x) * args.test_fraction))
    cfg, _ = resolve_config(args, x.shape[1], max(n_train, 1), original_defaults=False)
    splitter = DiffusionMI(test_fraction=args.test_fraction, **cfg.as_dict())
    split = splitter.split(x, y)
    x_train, _, x_test, y_test = split

    from dmi.commands.progress import LiveDisplay, quiet
    from dmi.threads import thread_summary, torch_threads

    live = not args.json and sys.stdout.isatty()
    with quiet(args.verbose), torch_threads(args.threads) as threads:
        start = time.perf_counter()
        try:
            if live:
                with LiveDisplay(1) as display:
                    epoch = max(len(x_train) // cfg.batch_size, 1)
                    callbacks = display.start(1, args.data, cfg.max_steps, epoch)
                    module, trainer = _fit(cfg, args, split, [*callbacks, *threads.callbacks])
            else:
                module, trainer = _fit(cfg, args, split, list(threads.callbacks))
        except FloatingPointError as exc:  # not bad input: a failed run (exit 1)
            print(f"dmi: error: {exc}; try a lower --learning_rate", file=sys.stderr)
            return EXIT_FAILED
        train_seconds = time.perf_counter() - start
        used = thread_summary(threads)
        est = module.estimate(x_test, y_test, seed=cfg.seed)
        spectrum = module.spectrum(x_test, y_test, seed=cfg.seed)
    from dmi.diagnostics import diagnose
    from dmi.training import fitted_choices

    diag = diagnose(est, module.selection, spectrum) | fitted_choices(module) | {"threads": used}
    if args.spectrum:
        from dmi.spectrum_plot import plot_spectrum

        base = module.base_spectrum()
        plot_spectrum(spectrum, args.spectrum, [] if base is None else [("Gaussian base", base)], title=str(args.data))
    sizes = (len(x_train), len(x_test))
    print(format_result(args, sample, est, *sizes, trainer.global_step, train_seconds, cfg, diag, spectrum))
    for message in diag["warnings"]:
        print(f"dmi: warning: {message}", file=sys.stderr)
    return 0


def _fit(cfg, args, split, callbacks):
    """Train on the split's training part; selection holds out ``val_fraction`` of it, never the test part."""
    from dmi.commands.options import trainer_kwargs
    from dmi.training import fit

    x_train, y_train, _, _ = split
    return fit(cfg, x_train, y_train, callbacks=callbacks, **trainer_kwargs(args, "estimate"))


def format_result(
    args,
    sample,
    est,
    n_train: int,
    n_test: int,
    steps: int,
    seconds: float,
    cfg,
    diag: dict | None = None,
    spectrum=None,
) -> str:
    """Text for people, or one JSON object with ``--json``; bits with ``--bits``."""
    unit, factor = ("bits", 1 / math.log(2)) if args.bits else ("nats", 1.0)
    values = {
        "mi": est.mi * factor,
        "mi_stderr": est.mi_stderr * factor,
        "mi_orthogonal": est.mi_orthogonal * factor,
        "mi_orthogonal_stderr": est.mi_orthogonal_stderr * factor,
        "mi_cross": est.mi_cross * factor,
        "mi_cross_stderr": est.mi_cross_stderr * factor,
    }
    if args.json:
        return json.dumps(
            {
                "data": str(args.data),
                "unit": unit,
                **values,
                "x": sample.x_names,
                "y": sample.y_names,
                "n_train": n_train,
                "n_test": n_test,
                "trained_steps": steps,
                "train_seconds": seconds,
                "estimator_config": cfg.as_dict(),
                "diagnostics": diag or {},
                "spectrum": None if spectrum is None else spectrum.as_dict(),
            }
        )
    how = ""
    if diag and diag.get("held_out_selection"):
        ending = (
            "stopped early"
            if diag["stopped_early"]
            else ("out of budget, still improving" if diag["still_improving"] else "out of budget")
        )
        how = (
            f"\n  selected step {diag['selected_step']} of {diag['trained_steps']} ({ending}); "
            f"held-out NLL {diag['val_nll']:.3f}, train {diag['train_nll']:.3f} (gap {diag['nll_gap']:+.3f}) nats; "
            f"forms differ by {diag['forms_disagreement_se']:.1f} SE"
        )
    if spectrum is not None:
        how += (
            f"\n  information spectrum: peaks at log-SNR {spectrum.peak_logsnr:.1f}; "
            f"about {spectrum.tail_nats * factor:.3f} {unit} outside the window "
            f"[{spectrum.window[0]:g}, {spectrum.window[1]:g}]"
        )
    return (
        f"I(X;Y) of {args.data} (x: {', '.join(sample.x_names)}; y: {', '.join(sample.y_names)}), "
        f"trained on {n_train}, estimated on {n_test} samples:\n"
        f"  direct      {values['mi']:.4f} ± {values['mi_stderr']:.4f} {unit}\n"
        f"  orthogonal  {values['mi_orthogonal']:.4f} ± {values['mi_orthogonal_stderr']:.4f} {unit}\n"
        f"  cross       {values['mi_cross']:.4f} ± {values['mi_cross_stderr']:.4f} {unit} (the mean of the two)" + how
    )
