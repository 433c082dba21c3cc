"""Every estimate says how it was obtained, and its bad signs are warnings, never silence."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from dmi.api import DiffusionMI
from dmi.diagnostics import EstimateWarning, diagnose, emit
from dmi.diffusion import MIEstimate
from dmi.selection import SelectionReport


def estimate(mi: float, se: float, orth: float, orth_se: float) -> MIEstimate:
    return MIEstimate(mi, orth, se, orth_se, 3.0, 3.0 - mi, 500, 32)


def report(**changes) -> SelectionReport:
    values = dict(selected_step=800, trained_steps=2800, max_steps=30000, stopped_early=True, best_val_loss=5.0)
    values["val_history"] = [(0, 5.5), (800, 5.0), (2800, 5.2)]
    return SelectionReport(**(values | changes))


def test_a_clean_estimate_has_no_warnings() -> None:
    diag = diagnose(estimate(1.0, 0.05, 1.02, 0.04), report())
    assert diag["warnings"] == []
    assert diag["forms_disagreement_se"] == pytest.approx(0.02 / math.hypot(0.05, 0.04))
    assert diag["selected_step"] == 800 and diag["stopped_early"] and not diag["still_improving"]


def test_negative_beyond_two_standard_errors_warns() -> None:
    diag = diagnose(estimate(-0.5, 0.1, 0.2, 0.05), report())
    assert any("below zero by 5.0 SE" in m for m in diag["warnings"])
    assert not any("below zero" in m for m in diagnose(estimate(-0.1, 0.1, 0.0, 0.05), report())["warnings"])


def test_forms_disagreeing_by_many_standard_errors_warns() -> None:
    diag = diagnose(estimate(1.0, 0.03, 1.5, 0.03), report())
    assert any("disagree by 11.8 combined SE" in m for m in diag["warnings"])


def test_still_improving_at_the_cap_warns_and_a_rise_is_reported() -> None:
    capped = report(stopped_early=False, selected_step=2800, trained_steps=2800, best_val_loss=5.2)
    assert any("still improving" in m for m in diagnose(estimate(1.0, 0.05, 1.0, 0.05), capped)["warnings"])
    diag = diagnose(estimate(1.0, 0.05, 1.0, 0.05), report())
    assert diag["heldout_nll_rise"] == pytest.approx(0.2) and not diag["kept_untrained_model"]
    # Keeping the Gaussian base is reported, not warned about: on Gaussian data it is the right answer.
    kept = diagnose(estimate(1.0, 0.05, 1.0, 0.05), report(selected_step=0, best_val_loss=5.5))
    assert kept["kept_untrained_model"] and kept["warnings"] == []


def test_emit_raises_each_warning_as_estimate_warning() -> None:
    diag = diagnose(estimate(-0.5, 0.1, 1.5, 0.05), report())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        emit(diag)
    messages = [str(w.message) for w in caught if w.category is EstimateWarning]
    assert len(messages) == 2 and all(m.startswith("dmi: ") for m in messages)


def test_estimate_with_info_reports_how_the_estimate_was_obtained() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1500, 2))
    y = x + rng.normal(size=(1500, 2))
    est = DiffusionMI(max_steps=300, val_interval=50, model_dim=16, n_blocks=1)
    info = est.estimate_with_info(x, y).additional_information
    for key in (
        "selected_step",
        "trained_steps",
        "stopped_early",
        "still_improving",
        "train_nll",
        "val_nll",
        "nll_gap",
        "forms_disagreement_se",
        "warnings",
    ):
        assert key in info, key
    assert 0 <= info["selected_step"] <= info["trained_steps"] <= 300
    assert info["nll_gap"] == pytest.approx(info["val_nll"] - info["train_nll"])
    assert info["n_points"] == 450  # the test split; validation came out of the other 1050 rows
