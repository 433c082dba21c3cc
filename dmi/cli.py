"""The ``dmi`` console command: one subcommand per module in ``dmi.commands``.

Bad input of any kind ends with a one-line ``dmi: error: ...`` and exit code 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from types import ModuleType

from dmi.commands import COMMANDS


class UsageError(Exception):
    """Raised by a subcommand for input it refuses; printed as one line, exit code 2."""


def subcommand_parser(prog: str, description: str, commands: dict[str, ModuleType]) -> argparse.ArgumentParser:
    """A parser with one subcommand per module (HELP, add_arguments, run); shared with dmi-tune."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module in commands.items():
        command = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(command)
        command.set_defaults(run=module.run)
    return parser


def build_parser() -> argparse.ArgumentParser:
    return subcommand_parser("dmi", "Diffusion (I-MMSE) mutual-information estimation.", COMMANDS)


def main(argv: Sequence[str] | None = None) -> int:
    from dmi.config import ConfigError
    from dmi.data import DataError

    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except (UsageError, ConfigError, DataError, FileNotFoundError, ValueError) as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"dmi: error: {message}", file=sys.stderr)
        return 2
    except FloatingPointError as exc:
        print(f"dmi: training diverged: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("dmi: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
