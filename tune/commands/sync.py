"""``dmi-tune sync NAME``: replay what a sweep could not record while MLflow was unreachable."""

from __future__ import annotations

import argparse

from dmi.errors import UsageError

HELP = "Replay a sweep's MLflow journal (records queued while the tracking store was down); safe to repeat."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help="sweep name (a multi-task sweep syncs all its experiments)")
    parser.add_argument("--storage", help="results folder or URI the sweep ran in (default ./ray_results)")
    parser.add_argument("--tracking-uri", dest="tracking_uri", help="replay into this store instead")


def run(args: argparse.Namespace) -> int:
    from tune.storage import resolve_storage
    from tune.tracking.sync import pending_journals, sync_journal
    from tune.tracking.uri import absolute_uri, one_line

    journals = pending_journals(resolve_storage(args.storage), args.name)
    if not journals:
        print(f"{args.name}: nothing to sync")
        return 0
    uri = absolute_uri(args.tracking_uri) if args.tracking_uri else None
    for path in journals:
        try:
            count = sync_journal(path, uri)
        except Exception as exc:  # noqa: BLE001 - the journal stays; the user retries later
            raise UsageError(f"{path}: tracking store still unavailable ({one_line(exc)}); journal kept") from None
        print(f"{path}: {count} records replayed into MLflow")
    return 0
