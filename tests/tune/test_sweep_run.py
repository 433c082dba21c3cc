"""A real tiny sweep through ``dmi-tune run``: both architectures, conditional keys, best vs reports."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sweep_helpers import tiny_config, write_config

from tune.cli import main


def _trials(path: Path) -> dict[str, dict]:
    """Per trial folder: its config (params.json) and its reports (progress.csv)."""
    trials = {}
    for folder in sorted(path.glob("trial_*")):
        trials[folder.name.removeprefix("trial_")] = {
            "config": json.loads((folder / "params.json").read_text()),
            "reports": pd.read_csv(folder / "progress.csv") if (folder / "progress.csv").exists() else pd.DataFrame(),
            "folder": folder,
        }
    return trials


def _summary(path: Path) -> dict:
    return json.loads((path / "dmi_summary.json").read_text())


def test_sweep_over_both_architectures_finishes(finished_sweep) -> None:
    assert finished_sweep.code == 0
    summary = _summary(finished_sweep.path)
    trials = _trials(finished_sweep.path)
    assert summary["state"] == "finished"
    assert summary["n_trials"] == len(trials) == finished_sweep.settings["search"]["num_samples"]
    assert summary["trial_counts"] == {"TERMINATED": len(trials)}
    assert {t["config"]["architecture"] for t in trials.values()} == {"unified", "moe"}
    for t in trials.values():
        reports = t["reports"]
        assert 1 <= len(reports) <= 4  # 120 steps, a report every 30; ASHA may stop a trial early
        for key in ("val_loss", "mi", "mi_orthogonal", "mi_stderr", "mi_orthogonal_stderr", "abs_error"):
            assert reports[key].notna().all(), key


def test_conditional_keys_are_present_only_on_their_branch(finished_sweep) -> None:
    fixed = set(finished_sweep.settings["estimator"])
    for t in _trials(finished_sweep.path).values():
        config = t["config"]
        assert ("snr_threshold" in config) == (config["architecture"] == "moe"), config
        assert ("ema_decay" in config) == config["use_ema"], config
        assert fixed <= set(config)
        assert 8 <= config["model_dim"] <= 16 and isinstance(config["model_dim"], int)


def test_best_result_agrees_with_reported_metrics(finished_sweep) -> None:
    summary = _summary(finished_sweep.path)
    trials = _trials(finished_sweep.path)
    best_by_trial = {tid: t["reports"]["val_loss"].min() for tid, t in trials.items()}
    best_id = min(best_by_trial, key=best_by_trial.get)
    assert summary["best_trial_id"] == best_id
    assert summary["best_metrics"]["val_loss"] == np.float64(best_by_trial[best_id])
    assert summary["best_config"] == trials[best_id]["config"]
    # The checkpoint used is the one saved with the best report of the best trial.
    reports = trials[best_id]["reports"]
    best_row = reports.loc[reports["val_loss"].idxmin()]
    assert Path(summary["best_checkpoint"]) == trials[best_id]["folder"] / best_row["checkpoint_dir_name"]
    assert Path(summary["best_checkpoint"], "checkpoint.ckpt").is_file()
    # Final estimate on the test set: finite, with the truth and its absolute errors.
    est, truth = summary["final_estimate"], summary["true_mi"]
    assert est["n_points"] == finished_sweep.settings["data"]["n_test"] and est["n_logsnr"] == 32
    assert all(np.isfinite(est[k]) for k in ("mi", "mi_orthogonal", "mi_stderr", "mi_orthogonal_stderr"))
    assert summary["abs_error"] == abs(est["mi"] - truth)
    assert abs(est["mi"] - truth) < 0.5  # multinormal dim 3, MI 1.02: the Gaussian base alone is close
    ranking = summary["ranking"]
    assert ranking["n_trials"] == len(trials) and -1 <= ranking["spearman"] <= 1
    assert ranking["objective"] == "val_loss" and len(ranking["points"]) == len(trials)
    assert "disagreement" in ranking["candidates"]
    # The library defaults, trained on the same rows, are reported beside the pick.
    defaults = summary["library_defaults"]
    assert defaults["abs_error"] == pytest.approx(abs(defaults["mi"] - truth))
    assert defaults["n_points"] == est["n_points"] and defaults["trained_steps"] >= defaults["selected_step"]
    # Every report says how the trial's weights are being selected; the final estimate too.
    for key in ("selected_step", "best_val_loss", "trained_steps", "train_nll", "nll_gap", "early_stopped"):
        assert reports[key].notna().all(), key
    assert (reports["selected_step"] <= reports["trained_steps"]).all()
    diag = summary["final_diagnostics"]
    assert diag["held_out_selection"] and diag["selected_step"] == best_row["trained_steps"]
    assert isinstance(diag["warnings"], list)
    # The final estimate's information spectrum: its integral is the direct MI on a fixed grid.
    spectrum = summary["final_spectrum"]
    assert len(spectrum["logsnr"]) == len(spectrum["gap"]) == 48 and spectrum["n_points"] == est["n_points"]
    assert spectrum["integral"] == pytest.approx(est["mi"], abs=0.1) and diag["window_covers_information"]


def test_tune_deletes_no_checkpoint_while_it_runs_and_finished_trials_keep_their_best_and_latest(
    finished_sweep,
) -> None:
    """A checkpoint deleted mid-run can be the one a restart resumes from (tune.retention): none is."""
    trials = _trials(finished_sweep.path)
    keep = 2  # trials.num_to_keep's default
    pruned = 0
    for trial_id, t in trials.items():
        reports = t["reports"].dropna(subset=["checkpoint_dir_name"])
        reported = sorted(reports["checkpoint_dir_name"])
        assert finished_sweep.before_pruning[f"trial_{trial_id}"] == reported, trial_id
        ranked = reports.sort_values(["val_loss", "training_iteration"], kind="stable")["checkpoint_dir_name"]
        kept = set(ranked[:keep]) | {reports["checkpoint_dir_name"].iloc[-1]}
        assert sorted(c.name for c in t["folder"].glob("checkpoint_*")) == sorted(kept), trial_id
        pruned += len(reported) - len(kept)
    assert pruned > 0  # some trial reported more often than it keeps: Ray's num_to_keep would have pruned it mid-run


def test_the_best_checkpoint_is_the_lowest_finite_objective(tmp_path) -> None:
    from types import SimpleNamespace

    from tune.retention import best_checkpoint, ranked_checkpoints

    def entry(name: str, value: float, iteration: int):
        return SimpleNamespace(path=name), {"val_loss": value, "training_iteration": iteration}

    result = SimpleNamespace(
        best_checkpoints=[entry("nan", float("nan"), 1), entry("b", 0.5, 3), entry("a", 0.5, 2), entry("c", 0.9, 4)]
    )
    assert [c.path for c in ranked_checkpoints(result, "val_loss")] == ["a", "b", "c"]
    assert best_checkpoint(result, "val_loss").path == "a"
    assert best_checkpoint(SimpleNamespace(best_checkpoints=[entry("nan", float("nan"), 1)]), "val_loss") is None


def test_finished_sweep_is_not_run_again(finished_sweep, capsys) -> None:
    before = sorted(p.name for p in finished_sweep.path.iterdir())
    assert main(["run", str(finished_sweep.config), "--storage", str(finished_sweep.storage)]) == 0
    out = capsys.readouterr().out
    assert "already finished" in out and "dmi-tune best tiny" in out
    assert sorted(p.name for p in finished_sweep.path.iterdir()) == before


def test_status_and_best_read_the_summary(finished_sweep, capsys) -> None:
    storage = str(finished_sweep.storage)
    assert main(["status", "tiny", "--storage", storage]) == 0
    assert "tiny: finished; 5 trials (5 TERMINATED)" in capsys.readouterr().out
    assert main(["best", "tiny", "--storage", storage]) == 0
    out = capsys.readouterr().out
    assert "best config:" in out and "direct" in out and "orthogonal" in out
    assert main(["best", "tiny", "--storage", storage, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == _summary(finished_sweep.path)


def test_data_file_sweep_reports_without_truth(local_ray, tmp_path) -> None:
    """A user file: the truth is unknown, so no abs_error and no ranking, but a final estimate."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2500, 2))
    y = x + rng.normal(size=(2500, 2))  # I(X;Y) = log 2 nats
    pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "c": y[:, 0], "d": y[:, 1]}).to_csv(tmp_path / "pairs.csv", index=False)
    config = tiny_config(name="table", search={"num_samples": 2, "points_to_evaluate": []})
    config["data"] = {
        "path": "pairs.csv",
        "x_columns": ["a", "b"],
        "y_columns": ["c", "d"],
        "test_fraction": 0.2,
    }
    assert main(["run", str(write_config(tmp_path, config)), "--storage", str(tmp_path / "results")]) == 0
    summary = _summary(tmp_path / "results" / "table")
    assert summary["true_mi"] is None and summary["ranking"] is None and "abs_error" not in summary
    assert summary["data"]["n_test"] == 500
    assert abs(summary["final_estimate"]["mi"] - np.log(2)) < 0.3
    for t in _trials(tmp_path / "results" / "table").values():
        assert "abs_error" not in t["reports"] and t["reports"]["val_loss"].notna().all()


@pytest.mark.slow  # about 30 s
def test_time_budget_ends_the_search_with_results_recorded(local_ray, tmp_path) -> None:
    config = tiny_config(
        name="budget",
        time_budget_s=20,
        estimator={"max_steps": 480},
        search={"num_samples": 50},
        scheduler={"type": "fifo"},
        trials={"max_concurrent_trials": 1},
    )
    storage = tmp_path / "results"
    assert main(["run", str(write_config(tmp_path, config)), "--storage", str(storage)]) == 3
    summary = _summary(storage / "budget")
    assert summary["state"] == "time_budget" and summary["final_estimate"]["n_points"] == 1000
    assert 1 <= summary["trial_counts"].get("TERMINATED", 0) < 50
