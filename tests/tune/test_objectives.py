"""Label-free sweep objectives: their definitions, the trainable's reporting, the config, the ranking."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pandas as pd
import pytest
import torch

from tune.config import OBJECTIVES, parse_config
from tune.objectives import CANDIDATES, DEFAULT_OBJECTIVE, disagreement, score, stability, trial_scores
from tune.results import label_free_ranking
from tune.trainable import REPORTED, ObjectiveReport


def _report(val_loss: float, mi: float, mi_orth: float, cond: float = 1.0) -> dict[str, float]:
    return {
        "val_loss": val_loss,
        "val_nll_x": val_loss - cond,
        "val_nll_x_given_y": cond,
        "mi": mi,
        "mi_orthogonal": mi_orth,
        "mi_stderr": 0.03,
        "mi_orthogonal_stderr": 0.04,
    }


def test_candidates_score_the_latest_report_from_the_history() -> None:
    history = [_report(3.0, 1.0, 1.2), _report(2.5, 1.4, 1.3), _report(2.4, 1.1, 1.1)]
    assert disagreement(history[0]) == pytest.approx(0.2)
    assert score(history, "val_loss") == 2.4
    assert score(history, "disagreement_se") == pytest.approx(0.0)
    assert math.isnan(stability(history[:2]))  # undefined before the window is full
    assert stability(history) == pytest.approx(0.4)
    assert score(history, "val_loss_plus_disagreement") == pytest.approx(2.4)
    assert math.isnan(score([], "val_loss"))
    assert set(CANDIDATES) >= {"val_loss", "val_nll_x_given_y", "disagreement", "stability"}
    assert DEFAULT_OBJECTIVE in CANDIDATES


def test_trial_scores_take_the_lowest_finite_score() -> None:
    reports = [_report(3.0, 1.0, 1.5), _report(2.0, 1.0, 1.6), _report(2.5, 1.0, 1.0)]
    value, best = trial_scores(reports, "val_loss")
    assert value == 2.0 and best is reports[1]
    value, best = trial_scores(reports, "disagreement")
    assert value == 0.0 and best is reports[2]
    assert trial_scores(reports[:2], "stability") is None  # never defined on two reports


def test_trainable_reports_every_candidate_and_keeps_its_history_in_checkpoints() -> None:
    assert set(CANDIDATES) <= set(REPORTED)
    callback = ObjectiveReport()
    trainer = SimpleNamespace(sanity_checking=False, callback_metrics={})
    for rep in (_report(3.0, 1.0, 1.2), _report(2.5, 1.4, 1.3), _report(2.4, 1.1, 1.1)):
        trainer.callback_metrics = {k: torch.tensor(v) for k, v in rep.items()}
        callback.on_validation_end(trainer, None)
    metrics = trainer.callback_metrics
    assert float(metrics["stability"]) == pytest.approx(0.4)
    assert float(metrics["val_loss_plus_disagreement"]) == pytest.approx(2.4)
    restored = ObjectiveReport()
    restored.load_state_dict(callback.state_dict())
    trainer.callback_metrics = {k: torch.tensor(v) for k, v in _report(2.3, 1.2, 1.2).items()}
    restored.on_validation_end(trainer, None)
    assert float(trainer.callback_metrics["stability"]) == pytest.approx(0.3)  # over reports 2..4


@pytest.mark.parametrize("name", OBJECTIVES[:-1])
def test_every_candidate_is_a_valid_objective(name) -> None:
    raw = {"name": "x", "objective": name, "data": {"task_type": "multinormal", "dim": 2, "strength": 1.0}}
    raw["data"].update(n_train=100, n_val=50, n_test=50)
    raw["search"] = {"num_samples": 1, "params": {"model_dim": {"low": 8, "high": 16}}}
    assert parse_config(raw).objective == name
    raw.pop("objective")
    assert parse_config(raw).objective == DEFAULT_OBJECTIVE
    assert parse_config(raw).compare_defaults  # a benchmark task: the defaults are compared


def _trial(trial_id: str, arch: str, reports: list[dict[str, float]], errors: list[float]) -> SimpleNamespace:
    frame = pd.DataFrame([{**r, "abs_error": e} for r, e in zip(reports, errors, strict=True)])
    for name in CANDIDATES:
        frame[name] = [score(reports[: i + 1], name) for i in range(len(reports))]
    frame["training_iteration"] = range(1, len(reports) + 1)
    return SimpleNamespace(
        metrics={"trial_id": trial_id}, metrics_dataframe=frame, config={"architecture": arch}, path=f"/x/{trial_id}"
    )


def test_ranking_scores_the_objective_and_every_candidate() -> None:
    grid = [
        _trial("a", "unified", [_report(3.0, 1.0, 1.5), _report(2.0, 1.2, 1.5)], [0.5, 0.3]),
        _trial("b", "moe", [_report(2.5, 1.0, 1.0), _report(2.6, 1.0, 1.0)], [0.1, 0.1]),
        _trial("c", "unified", [_report(1.5, 0.5, 1.5)], [0.9]),
    ]
    ranking = label_free_ranking(grid, "val_loss")
    assert ranking["objective"] == "val_loss" and ranking["n_trials"] == 3
    assert ranking["pick_abs_error"] == 0.9 and ranking["regret"] == pytest.approx(0.8)
    assert ranking["spearman"] == pytest.approx(-1.0)
    assert {p["trial_id"] for p in ranking["points"]} == {"a", "b", "c"}
    by_disagreement = ranking["candidates"]["disagreement"]
    assert by_disagreement["pick_abs_error"] == 0.1 and by_disagreement["regret"] == 0.0
