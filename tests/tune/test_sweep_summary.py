"""Summary pieces without Ray: trial rows (errored, never run), label-free ranking, atomic writing."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pandas as pd

from tune.results import trial_rows
from tune.storage import write_json
from tune.summary import ranking_quality


def _result(trial_id, val_losses, error=None):
    frame = pd.DataFrame({"val_loss": val_losses, "mi": [1.0] * len(val_losses)})
    frame["training_iteration"] = range(1, len(val_losses) + 1)
    return SimpleNamespace(
        metrics={"trial_id": trial_id} if val_losses else {},
        metrics_dataframe=frame if val_losses else None,
        error=error,
        config={"model_dim": 8},
        path=f"/x/trial_{trial_id}",
    )


def test_rows_take_each_trial_at_its_best_report_and_mark_failures() -> None:
    rows = trial_rows(
        [_result("a", [3.0, 1.5, 2.0]), _result("b", [], error=RuntimeError()), _result("c", [])], "val_loss"
    )
    by_id = {r["trial_id"]: r for r in rows}
    assert by_id["a"]["objective"] == 1.5 and by_id["a"]["best_report"] == 2 and by_id["a"]["status"] == "TERMINATED"
    assert by_id["trial_b"]["status"] == "ERROR" and by_id["trial_b"]["objective"] is None
    assert by_id["trial_c"]["status"] == "NOT_RUN" and by_id["trial_c"]["reports"] == 0


def test_ranking_measures_how_val_loss_orders_true_error() -> None:
    agree = ranking_quality([(v, 0.1 * v) for v in (1.0, 2.0, 3.0, 4.0)])
    assert agree["spearman"] == 1.0 and agree["regret"] == 0.0
    reverse = ranking_quality([(v, 1.0 / v) for v in (1.0, 2.0, 3.0, 4.0)])
    assert reverse["spearman"] == -1.0 and np.isclose(reverse["regret"], 0.75)
    assert ranking_quality([(1.0, 0.2), (float("nan"), 0.1)])["spearman"] is None


def test_summary_is_written_whole_or_not_at_all(tmp_path) -> None:
    path = tmp_path / "dmi_summary.json"
    write_json(str(path), {"state": "finished", "mi": np.float64(1.5)})
    assert json.loads(path.read_text()) == {"state": "finished", "mi": 1.5}
    assert [p.name for p in tmp_path.iterdir()] == ["dmi_summary.json"]
