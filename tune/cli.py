"""The ``dmi-tune`` command, one subcommand per module in ``tune.commands``; bad input: one error line, exit 2."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from dmi.cli import run_subcommand, subcommand_parser
from tune.commands import best, report, run, status, sync

COMMANDS = {"run": run, "status": status, "best": best, "report": report, "sync": sync}


def main(argv: Sequence[str] | None = None) -> int:
    args = subcommand_parser("dmi-tune", "Ray Tune + Optuna sweeps of the dmi estimator.", COMMANDS).parse_args(argv)
    return run_subcommand("dmi-tune", args, interrupted="interrupted; run the same command again to resume")


if __name__ == "__main__":
    sys.exit(main())
