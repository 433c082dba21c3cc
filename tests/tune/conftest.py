"""Shared set-up of the sweep tests: one local Ray per session and one finished tiny sweep."""

from __future__ import annotations

import logging
import warnings
from types import SimpleNamespace

import pytest
from sweep_helpers import TINY, write_config


@pytest.fixture(scope="session")
def local_ray():
    """One local Ray for the whole session (object store capped); shared if already started."""
    import ray

    if not ray.is_initialized():
        with warnings.catch_warnings():  # Ray's own deprecation notes (pydantic v1, accelerator env)
            warnings.simplefilter("ignore", FutureWarning)
            ray.init(
                num_cpus=2,
                include_dashboard=False,
                object_store_memory=200 * 1024**2,
                logging_level=logging.WARNING,
            )
    yield ray


@pytest.fixture(scope="session")
def finished_sweep(local_ray, tmp_path_factory):
    """TINY run once through ``dmi-tune run``, in process, on the session's Ray."""
    import tune.sweep
    from tune.cli import main

    folder = tmp_path_factory.mktemp("sweep")
    settings = {**TINY, "compare_defaults": True}
    config = write_config(folder, settings)
    storage = folder / "results"
    before_pruning: dict[str, list[str]] = {}  # trial folder: its checkpoints once Tune's run has ended

    def look_then_prune(analysis, *args):
        for trial in storage.glob("*/trial_*"):
            before_pruning[trial.name] = sorted(c.name for c in trial.glob("checkpoint_*"))
        return prune(analysis, *args)

    prune = tune.sweep.prune_finished_trials
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tune.sweep, "prune_finished_trials", look_then_prune)
        code = main(["run", str(config), "--storage", str(storage)])
    return SimpleNamespace(
        code=code,
        config=config,
        storage=storage,
        path=storage / "tiny",
        settings=settings,
        before_pruning=before_pruning,
    )


def pytest_configure(config) -> None:
    # bmi's JAX is imported before Ray forks its helpers; they exec at once and never touch JAX.
    config.addinivalue_line("filterwarnings", r"ignore:os\.fork\(\) was called:RuntimeWarning")
