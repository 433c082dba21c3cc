"""The ``dmi`` console command: one subcommand per module in ``dmi.commands``.

Bad input of any kind ends with a one-line ``dmi: error: ...`` and exit code 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from types import ModuleType

from dmi.commands import estimate, oracle, train
from dmi.errors import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_INTERRUPTED, DMIError, first_line

COMMANDS = {"train": train, "estimate": estimate, "oracle": oracle}


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


def run_subcommand(prog: str, args: argparse.Namespace, interrupted: str = "interrupted") -> int:
    """Run a parsed subcommand with the project's exit codes; shared with dmi-tune.

    Refused input (``DMIError``): one line ``PROG: error: ...``, exit 2. Diverged training:
    one line, exit 1. Ctrl-C: ``PROG: <interrupted>``, exit 130. Anything else is a bug and
    keeps its traceback.
    """
    try:
        return int(args.run(args) or 0)
    except DMIError as exc:
        print(f"{prog}: error: {first_line(exc)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except FloatingPointError as exc:
        print(f"{prog}: training diverged: {first_line(exc)}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print(f"{prog}: {interrupted}", file=sys.stderr)
        return EXIT_INTERRUPTED


def main(argv: Sequence[str] | None = None) -> int:
    return run_subcommand("dmi", build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
