"""``dmi-tune best NAME``: the best hyperparameters and the final MI estimates of a finished sweep."""

from __future__ import annotations

import argparse
import json

from dmi.errors import UsageError
from tune.storage import join, read_json, resolve_storage
from tune.summary import SUMMARY_FILE

HELP = "Print the best config and final MI estimates of a finished sweep (--json for the whole summary)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help="sweep (experiment) name")
    parser.add_argument("--storage", help="results folder or URI (default ./ray_results)")
    parser.add_argument("--json", action="store_true", help="print the summary as one JSON document")


def run(args: argparse.Namespace) -> int:
    from tune.console import print_final

    root = resolve_storage(args.storage)
    summary = read_json(join(root, args.name, SUMMARY_FILE))
    if summary is None:
        raise UsageError(f"no finished sweep {args.name!r} under {root} (see `dmi-tune status {args.name}`)")
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    entries = summary["experiments"] if summary.get("kind") == "multi_task" else [summary]
    for entry in entries:
        print(f"{entry['name']}: {entry.get('state')}")
        if entry.get("best_config") is None:
            continue
        config = ", ".join(f"{k}={v}" for k, v in sorted(entry["best_config"].items()))
        print(f"  best config: {config}")
        print_final(entry)
    return 0
