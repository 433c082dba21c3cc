"""The domain check: a trained estimator knows when a sample is unlike its training data."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dmi.config import EstimatorConfig
from dmi.domain import DOMAIN_LIMIT, MIN_ROWS
from dmi.tasks import TaskSpec, sample_task
from dmi.training import fit, load_module, save_checkpoint

SPEC = TaskSpec("multinormal", 3, 2.0)
CFG = dict(model_dim=16, n_blocks=1, max_steps=300, val_interval=100, batch_size=256, patience=100)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    x, y = sample_task(SPEC, 3000, seed=0)
    module, trainer = fit(EstimatorConfig(**CFG), np.array(x), np.array(y))
    path = save_checkpoint(trainer, tmp_path_factory.mktemp("ckpt") / "model.ckpt")
    return module, path


def fresh(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    x, y = sample_task(SPEC, n, seed=seed)
    return np.array(x), np.array(y)


def test_a_fresh_sample_of_the_training_distribution_is_in_domain(trained):
    module, _ = trained
    for seed in (11, 12, 13):
        check = module.check_domain(*fresh(1000, seed))
        assert check.in_domain is True, check
        assert check.domain_score < DOMAIN_LIMIT / 2 and check.tail_share < 0.05


def test_independent_columns_are_out_of_domain(trained):
    """Same marginals, no dependence (true MI 0): only the joint tells them apart."""
    module, _ = trained
    x, y = fresh(1000, 21)
    y = y[np.random.default_rng(0).permutation(len(y))]
    check = module.check_domain(x, y)
    assert check.in_domain is False and check.domain_score > 2 * DOMAIN_LIMIT, check
    assert "data unlike the estimator's training data" in check.message()


def test_a_moved_column_is_named(trained):
    module, _ = trained
    x, y = fresh(1000, 31)
    y[:, 1] = y[:, 1] * 4.0 + 3.0
    check = module.check_domain(x, y)
    assert check.in_domain is False and check.worst_column == "y1", check
    assert "column y1" in check.message()


def test_too_few_rows_are_not_judged(trained):
    module, _ = trained
    check = module.check_domain(*fresh(MIN_ROWS - 1, 41))
    assert check.in_domain is None and math.isfinite(check.domain_score)
    assert "too few" in check.message()


def test_the_reference_travels_in_the_checkpoint(trained):
    module, path = trained
    loaded = load_module(path)
    assert loaded.domain_reference == module.domain_reference
    x, y = fresh(500, 51)
    assert loaded.check_domain(x, y).domain_score == pytest.approx(module.check_domain(x, y).domain_score)


def test_without_held_out_rows_there_is_no_reference():
    x, y = fresh(600, 61)
    module, _ = fit(EstimatorConfig(**{**CFG, "max_steps": 20, "val_fraction": 0.0}), x, y)
    check = module.check_domain(x, y)
    assert check.in_domain is None and math.isnan(check.domain_score)
    assert "no domain reference" in check.message()
