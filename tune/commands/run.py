"""``dmi-tune run CONFIG``: start a sweep, or resume it if an unfinished one of that name exists."""

from __future__ import annotations

import argparse

from dmi.errors import UsageError

HELP = "Run (or resume) the sweep described by a YAML config; the same command resumes after a crash."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="sweep YAML, e.g. configs/sweep/quick.yaml")
    parser.add_argument("--name", help="experiment name (default: the config's name)")
    parser.add_argument("--address", help="join a Ray cluster: auto or HOST:PORT (default: RAY_ADDRESS, else local)")
    parser.add_argument("--storage", help="results folder or URI (default: the config's storage, else ./ray_results)")
    parser.add_argument("--tracking-uri", dest="tracking_uri", help="MLflow tracking URI (default: the config's)")
    parser.add_argument(
        "--nightly",
        action="store_true",
        help="name the experiment {name}-YYYY-MM-DD after the evening the night began (the day turns at noon)",
    )


def run(args: argparse.Namespace) -> int:
    from tune.cluster import enable_for_private_ray
    from tune.config import NAME_PATTERN, load_config

    cfg = load_config(args.config)
    enable_for_private_ray(args.address or cfg.ray.address)  # before anything imports ray

    from tune.overnight import nightly_name, open_study_storage
    from tune.sweep import run_sweep

    if args.name is not None and not NAME_PATTERN.match(args.name):
        raise UsageError(f"--name: must be letters, digits, _ . - (got {args.name!r})")
    if cfg.search.optuna_storage:  # a bad study database is bad input: refuse it before Ray starts
        open_study_storage(cfg.search.optuna_storage)
    name = nightly_name(args.name or cfg.name) if args.nightly else args.name
    return run_sweep(cfg, name=name, address=args.address, storage=args.storage, tracking_uri=args.tracking_uri)
