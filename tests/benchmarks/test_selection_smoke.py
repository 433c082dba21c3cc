"""Smoke test of the selection-fidelity benchmark: tiny real trials, every candidate scored, the files."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import selection  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TASK = selection.PanelTask("tiny", "dmi", "multinormal/2/2", 1_200, 200, 300, "test")
TRIAL = {"model_dim": 8, "n_blocks": 1, "batch_size": 128, "max_steps": 80, "patience": 1000, "seed": 0}


@pytest.fixture(scope="module")
def rows():
    configs = [("defaults", {"max_steps": 80, "val_interval": 20, "seed": 0})]
    configs += [(f"t{i:02d}", {**TRIAL, "learning_rate": lr}) for i, lr in enumerate((3e-4, 1e-3, 3e-3))]
    return [selection.run_job(TASK, trial, config, val_every=20) for trial, config in configs]


def test_every_report_keeps_label_free_metrics_and_the_test_split_error(rows) -> None:
    trials = [r for r in rows if r["trial"] != "defaults"]
    assert all(r["status"] == "ok" for r in rows)
    for row in trials:
        assert [rep["step"] for rep in row["reports"]] == [20, 40, 60, 80]
        for rep in row["reports"]:
            assert {"val_loss", "val_nll_x_given_y", "mi", "mi_orthogonal", "test_mi"} <= set(rep)
    assert rows[0]["selected"]["trained_steps"] == 80  # the defaults run, under its own selection


def test_candidates_are_scored_as_a_sweep_scores_them_and_written(rows, tmp_path) -> None:
    summary = selection.summarise(rows)
    assert summary["tasks"] == []  # "tiny" is not a task of the PANEL
    per = selection.score_task(rows, "val_loss")
    # The defaults are one of the trials: every shipped sweep enqueues them (points_to_evaluate).
    assert per["n_trials"] == 4 and per["regret"] >= 0 and per["pick_abs_error"] >= per["best_abs_error"]
    without_defaults = selection.score_task(rows[1:], "val_loss")
    assert without_defaults["n_trials"] == 3 and without_defaults["best_abs_error"] >= per["best_abs_error"]
    value, report = selection.trial_scores(rows[1]["reports"], "cond_nll_plus_disagreement")
    assert value == pytest.approx(report["val_nll_x_given_y"] + abs(report["mi"] - report["mi_orthogonal"]))
    assert selection.score_task(rows, selection.SELECTED)["n_trials"] == 4
    assert selection.defaults_error(rows) == pytest.approx(abs(rows[0]["selected"]["mi"] - rows[0]["true_mi"]))


def test_report_and_plot_cover_the_panel(rows, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(selection, "PANEL", (TASK,))
    text = selection.report(rows)
    assert "| tiny |" in text and "`val_nll_x_given_y` (default)" in text
    selection.plot(rows, tmp_path / "fidelity.png")
    assert (tmp_path / "fidelity.png").read_bytes()[:8] == PNG_MAGIC


def test_bad_arguments_exit_2(tmp_path, capsys) -> None:
    assert selection.main(["--tasks", "no such task", "--out", str(tmp_path)]) == 2
    assert "selection: error:" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())
