"""The define-by-run space: conditional keys only where they apply, bounds respected, picklable."""

from __future__ import annotations

import pickle

import optuna
import pytest
from sweep_helpers import TINY

from tune.config import parse_config
from tune.space import define_search_space


@pytest.fixture()
def space():
    return parse_config(TINY).search


def _sample(space_fn, n: int) -> list[dict]:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    sampled = []
    for _ in range(n):
        trial = study.ask()
        space_fn(trial)
        sampled.append(dict(trial.params))
        study.tell(trial, 0.0)
    return sampled


def test_conditional_keys_follow_their_branch() -> None:
    from tune.space import make_space

    cfg = parse_config(TINY)
    sampled = _sample(make_space(cfg.search.params, cfg.base_estimator()), 60)
    assert {p["architecture"] for p in sampled} == {"unified", "moe"}
    assert {p["use_ema"] for p in sampled} == {False, True}
    for p in sampled:
        assert ("snr_threshold" in p) == (p["architecture"] == "moe"), p
        assert ("ema_decay" in p) == p["use_ema"], p
        assert isinstance(p["model_dim"], int) and 8 <= p["model_dim"] <= 16
        assert 3e-4 <= p["learning_rate"] <= 3e-3


def test_fixed_architecture_always_samples_its_threshold() -> None:
    from tune.space import make_space

    config = {**TINY, "estimator": {**TINY["estimator"], "architecture": "moe"}}
    params = {k: v for k, v in TINY["search"]["params"].items() if k != "architecture"}
    config["search"] = {"num_samples": 3, "params": params}
    cfg = parse_config(config)
    sampled = _sample(make_space(cfg.search.params, cfg.base_estimator()), 10)
    assert all("snr_threshold" in p and "architecture" not in p for p in sampled)


def test_space_survives_pickling_as_a_module_level_function() -> None:
    from tune.space import make_space

    cfg = parse_config(TINY)
    space = pickle.loads(pickle.dumps(make_space(cfg.search.params, cfg.base_estimator())))
    assert space.func is define_search_space
    assert len(_sample(space, 3)) == 3
