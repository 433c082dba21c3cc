"""One tiny real sweep per test session, recorded in a temporary sqlite MLflow store."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest
import tiny_sweep


@pytest.fixture(autouse=True)
def no_ambient_tracking_uri(monkeypatch):
    """Each test names its store; a tracking URI in the caller's environment must not leak in."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


@pytest.fixture(scope="session")
def ray_session():
    """Ray for the whole session, shared with other test folders that may have started it."""
    import ray
    import ray.cloudpickle

    # The trainable lives in this test folder, which Ray's workers cannot import.
    ray.cloudpickle.register_pickle_by_value(tiny_sweep)
    if not ray.is_initialized():
        ray.init(
            num_cpus=2,
            include_dashboard=False,
            object_store_memory=200 * 1024**2,
            logging_level=logging.WARNING,
            log_to_driver=False,
        )
    yield ray


@pytest.fixture(scope="session")
def task_data():
    return tiny_sweep.task_data()


@pytest.fixture(scope="session")
def recorded(ray_session, task_data, tmp_path_factory):
    """The sweep run through Tune with the tracker's callback, then ``finish``-ed."""
    from tune.tracking.tracker import SweepTracker

    storage = tmp_path_factory.mktemp("storage")
    name = "tiny"
    config = tiny_sweep.sweep_config(name)
    tracker = SweepTracker.create(
        None, str(storage), "dmi-tiny", name, config, task=tiny_sweep.task(), true_mi=task_data["truth"]
    )
    tracker.start(resumed=False)
    grid = tiny_sweep.run_tuner(storage, name, [tracker.tune_callback()], task_data)
    summary, checkpoint_dir = tiny_sweep.driver_summary(grid, task_data, config)
    outcome = tracker.finish(summary, grid, checkpoint_dir, "FINISHED")
    return SimpleNamespace(
        tracker=tracker,
        grid=grid,
        summary=summary,
        outcome=outcome,
        storage=storage,
        name=name,
        config=config,
        checkpoint_dir=checkpoint_dir,
    )
