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


def run_subcommand(
    prog: str, args: argparse.Namespace, refused: tuple[type[BaseException], ...], interrupted: str = "interrupted"
) -> int:
    """Run a parsed subcommand with the project's exit codes; shared with dmi-tune.

    Input in ``refused`` (and ``UsageError``): one line ``PROG: error: ...``, exit 2. Diverged
    training: one line, exit 1. Ctrl-C: ``PROG: <interrupted>``, exit 130.
    """
    try:
        return int(args.run(args) or 0)
    except (UsageError, *refused) as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"{prog}: error: {message}", file=sys.stderr)
        return 2
    except FloatingPointError as exc:
        print(f"{prog}: training diverged: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{prog}: {interrupted}", file=sys.stderr)
        return 130


def main(argv: Sequence[str] | None = None) -> int:
    from dmi.config import ConfigError
    from dmi.data import DataError

    args = build_parser().parse_args(argv)
    return run_subcommand("dmi", args, (ConfigError, DataError, FileNotFoundError, ValueError))


if __name__ == "__main__":
    sys.exit(main())
