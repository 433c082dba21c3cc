"""The ``dmi-tune`` console command: one subcommand per module in ``tune.commands``.

Bad input (config, data, tracking store, unknown sweep) ends with one line
``dmi-tune: error: ...`` and exit code 2, before anything is started or written.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from dmi.cli import subcommand_parser
from tune.commands import COMMANDS


class UsageError(Exception):
    """Input a subcommand refuses; printed as one line, exit code 2."""


def build_parser() -> argparse.ArgumentParser:
    return subcommand_parser("dmi-tune", "Ray Tune + Optuna sweeps of the dmi estimator.", COMMANDS)


def main(argv: Sequence[str] | None = None) -> int:
    from dmi.config import ConfigError
    from dmi.data import DataError
    from tune.schema import SweepConfigError
    from tune.tracking_glue import TrackingError

    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except (UsageError, SweepConfigError, ConfigError, DataError, TrackingError) as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"dmi-tune: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("dmi-tune: interrupted; run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
