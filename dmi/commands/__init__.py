"""Subcommands of ``dmi``; each module has HELP, add_arguments(parser) and run(args).

Modules here import only the standard library, ``dmi.config`` and ``dmi.errors`` at import
time, so ``dmi --help`` loads no torch; torch, Lightning and bmi load when a command runs.
"""
