"""``dmi-tune report NAME``: the sweep's summary as recorded in MLflow, and how to open the UI."""

from __future__ import annotations

import argparse
import json

from dmi.errors import SweepNotFound, TrackingUnavailable, UsageError

HELP = "Print a sweep's summary from MLflow (best trial, MI estimates, trial counts) and the UI command."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help="sweep name (the experiment of one task, or a whole multi-task sweep)")
    parser.add_argument("--storage", help="results folder or URI the sweep ran in (default ./ray_results)")
    parser.add_argument("--tracking-uri", dest="tracking_uri", help="MLflow store (default: the sweep's own)")
    parser.add_argument("--json", action="store_true", help="print the summary as one JSON document")


def run(args: argparse.Namespace) -> int:
    from tune.tracking.report import format_summary, sweep_summaries, sweep_tracking_uri
    from tune.tracking.uri import check_store_exists

    try:
        uri = sweep_tracking_uri(args.name, args.storage, args.tracking_uri)
        check_store_exists(uri)
        summaries = sweep_summaries(uri, args.name)
    except (TrackingUnavailable, SweepNotFound) as exc:
        raise UsageError(str(exc)) from None
    if args.json:
        print(json.dumps(summaries if len(summaries) > 1 else summaries[0], indent=2))
    else:
        print("\n\n".join(format_summary(s) for s in summaries))
    return 0
