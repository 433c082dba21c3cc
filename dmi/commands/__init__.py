"""Subcommands of ``dmi``; each module has HELP, add_arguments(parser) and run(args).

Modules here import only the standard library and ``dmi.config`` at import time, so
``dmi --help`` stays fast; torch, Lightning and bmi are imported when a command runs.
"""

from dmi.commands import estimate, oracle, train

COMMANDS = {"train": train, "estimate": estimate, "oracle": oracle}
