"""The ``dmi-tune`` console command: one subcommand per module in ``tune.commands``.

Bad input (config, data, tracking store, unknown sweep) ends with one line
``dmi-tune: error: ...`` and exit code 2, before anything is started or written.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from dmi.cli import UsageError, run_subcommand, subcommand_parser
from tune.commands import COMMANDS

__all__ = ["UsageError", "build_parser", "main"]  # UsageError: the one dmi.cli defines


def build_parser() -> argparse.ArgumentParser:
    return subcommand_parser("dmi-tune", "Ray Tune + Optuna sweeps of the dmi estimator.", COMMANDS)


def main(argv: Sequence[str] | None = None) -> int:
    from dmi.config import ConfigError
    from dmi.data import DataError
    from tune.schema import SweepConfigError
    from tune.tracking_glue import TrackingError

    args = build_parser().parse_args(argv)
    return run_subcommand(
        "dmi-tune",
        args,
        (SweepConfigError, ConfigError, DataError, TrackingError),
        interrupted="interrupted; run the same command again to resume",
    )


if __name__ == "__main__":
    sys.exit(main())
