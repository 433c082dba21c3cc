"""Subcommands of ``dmi-tune``: each module has HELP, add_arguments(parser) and run(args) -> int.

``report`` and ``sync`` read MLflow through ``tune.tracking``; the others need only the results folder.
"""

from __future__ import annotations

from tune.commands import best, report, run, status, sync

COMMANDS = {"run": run, "status": status, "best": best, "report": report, "sync": sync}
