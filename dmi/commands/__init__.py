"""Subcommands of ``dmi``; each module has HELP, add_arguments(parser) and run(args)."""

from dmi.commands import oracle

COMMANDS = {"oracle": oracle}
