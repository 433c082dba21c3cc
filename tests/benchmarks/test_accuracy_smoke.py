"""Smoke test of the accuracy benchmark: a tiny real run end to end, the summary arithmetic on
hand-made rows, peers that fail or overrun, tuned-config files, and refused input."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import accuracy, report  # noqa: E402
from benchmarks.peers import PeerRunner, PeerSettings, run_peer  # noqa: E402
from benchmarks.tuned_configs import ConfigFileError, load_configs  # noqa: E402
from dmi.config import EstimatorConfig  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TINY = ["--n_train", "2000", "--n_test", "500", "--max_steps", "100", "--set", "model_dim=16"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("accuracy")
    argv = ["--tasks", "multinormal:3:2", "1v1-normal-0.75", *TINY]
    argv += ["--estimators", "dmi-unified", "cca", "ksg", "--ksg_max_n", "500", "--out", str(out)]
    code = accuracy.main(argv)
    return SimpleNamespace(code=code, out=out, rows=report.read_rows(out / "accuracy.csv"))


def test_tiny_run_writes_one_row_per_task_estimator_and_form(tiny_run):
    assert tiny_run.code == 0
    header = (tiny_run.out / "accuracy.csv").read_text().splitlines()[0].split(",")
    assert tuple(header) == report.COLUMNS
    keys = [(r["task_id"], r["estimator"], r["form"]) for r in tiny_run.rows]
    expected = [
        (task, estimator, form)
        for task in ("multinormal-sparse-3-3-2-2.0", "1v1-normal-0.75")
        for estimator, form in (
            ("dmi-unified", "direct"),
            ("dmi-unified", "orthogonal"),
            ("cca", "point"),
            ("ksg", "point"),
        )
    ]
    assert keys == expected
    assert {r["status"] for r in tiny_run.rows} == {"ok"}
    ksg = [r for r in tiny_run.rows if r["estimator"] == "ksg"]
    assert [r["n_samples"] for r in ksg] == [500, 500]
    dmi = [r for r in tiny_run.rows if r["estimator"] == "dmi-unified"]
    assert all(r["n_samples"] == 2500 and r["steps"] == 100 for r in dmi)
    assert all("estimated on 500" in r["note"] for r in dmi)
    assert [r["n_samples"] for r in tiny_run.rows if r["estimator"] == "cca"] == [2500, 2500]


def test_tiny_run_intervals_errors_and_coverage_follow_from_the_estimates(tiny_run):
    for r in tiny_run.rows:
        assert math.isfinite(r["estimate"])
        assert r["abs_error"] == pytest.approx(abs(r["estimate"] - r["true_mi"]))
        if r["estimator"] == "dmi-unified":
            assert r["stderr"] > 0
            assert r["ci_low"] == pytest.approx(r["estimate"] - 1.96 * r["stderr"], rel=1e-3)
            assert r["ci_high"] == pytest.approx(r["estimate"] + 1.96 * r["stderr"], rel=1e-3)
            assert r["covered"] == (r["ci_low"] <= r["true_mi"] <= r["ci_high"])
        else:
            assert r["stderr"] is None and r["covered"] is None and r["ci_low"] is None


def test_tiny_run_markdown_states_both_fractions_and_png_is_valid(tiny_run):
    text = (tiny_run.out / "accuracy.md").read_text()
    assert "Command: `python benchmarks/accuracy.py --tasks multinormal:3:2" in text
    for s in report.summarize(tiny_run.rows):
        label = report.series_label(s["estimator"], s["form"])
        line = next(x for x in text.splitlines() if x.startswith(f"- {label}:"))
        assert f"|error| ≤ 0.5 nats on {report.fraction(s['within'], s['ok'])}" in line
        if s["estimator"] == "dmi-unified":
            assert f"covers the truth on {report.fraction(s['covered'], s['with_se'])}" in line
        else:
            assert "n/a" in line
    png = (tiny_run.out / "accuracy.png").read_bytes()
    assert png.startswith(PNG_MAGIC)
    import matplotlib.image

    assert matplotlib.image.imread(tiny_run.out / "accuracy.png").shape[0] > 100
    assert not list(tiny_run.out.glob(".*.tmp"))


def _task(label: str, truth: float, family: str = "multinormal"):
    return SimpleNamespace(label=label, task_id=label, family=family, dim_x=3, dim_y=3, true_mi=truth)


def test_summary_arithmetic_on_hand_made_rows(tmp_path):
    t1, t2, t3, t4 = _task("t1", 1.0), _task("t2", 5.0), _task("t3", 10.0, "spiral"), _task("t4", 2.0)
    rows = [
        report.make_row(t1, "dmi", "direct", 1.2, 0.05, 1.0, "ok"),  # |e| 0.2 within; CI [1.10, 1.30] misses
        report.make_row(t2, "dmi", "direct", 5.4, 0.25, 1.0, "ok"),  # |e| 0.4 within; CI [4.91, 5.89] covers
        report.make_row(t3, "dmi", "direct", 3.0, 0.01, 1.0, "ok"),  # |e| 7 outside; misses
        report.make_row(t4, "dmi", "direct", None, None, 1.0, "failed", "FloatingPointError"),
        report.make_row(t1, "ksg", "point", 0.7, None, 1.0, "ok"),  # |e| 0.3 within; no SE
        report.make_row(t2, "ksg", "point", 4.4, None, 1.0, "ok"),  # |e| 0.6 outside
        report.make_row(t3, "ksg", "point", float("nan"), None, 1.0, "ok"),  # non-finite: failed
        report.make_row(t4, "ksg", "point", None, None, 600.0, "skipped", "stopped after 600 s"),
    ]
    path = tmp_path / "crafted.csv"
    path.write_text(report.csv_text(rows))
    back = report.read_rows(path)
    assert [r["covered"] for r in back[:4]] == [False, True, False, None]
    assert back[6]["status"] == "failed" and "non-finite" in back[6]["note"]
    dmi, ksg = report.summarize(back)
    assert (dmi["ok"], dmi["within"], dmi["with_se"], dmi["covered"], dmi["failed"]) == (3, 2, 3, 1, 1)
    assert dmi["frac_within"] == pytest.approx(2 / 3) and dmi["coverage"] == pytest.approx(1 / 3)
    assert (ksg["ok"], ksg["within"], ksg["with_se"], ksg["failed"], ksg["skipped"]) == (2, 1, 0, 1, 1)
    assert ksg["frac_within"] == pytest.approx(0.5) and ksg["coverage"] is None
    text = report.markdown(back, ["# test"])
    assert "- dmi (direct): |error| ≤ 0.5 nats on 2/3 (67 %) tasks with an estimate; " in text
    assert "95 % interval covers the truth on 1/3 (33 %) tasks" in text
    assert "- ksg: |error| ≤ 0.5 nats on 1/2 (50 %) tasks with an estimate; 95 % interval n/a" in text
    assert "| dmi | direct | 2/2 (100 %) | 0/1 (0 %) |" in text  # by family: multinormal, spiral


def test_failing_and_overrunning_peers_are_recorded_not_hidden():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(100, 2)).astype(np.float32), rng.normal(size=(100, 2)).astype(np.float32)
    failed = run_peer("infonce", x, y, PeerSettings(critic_steps=10))  # batch 256 > 50 training points
    assert failed["status"] == "failed" and failed["estimate"] is None
    x_const = np.ones_like(x)  # a constant column: dmi refuses the sample
    rows = accuracy.run_dmi(_task("t", 1.0), "dmi-unified", EstimatorConfig(max_steps=1), x_const, y, 10)
    assert [(r["form"], r["status"]) for r in rows] == [("direct", "failed"), ("orthogonal", "failed")]
    assert all("DataError" in r["note"] and r["estimate"] is None for r in rows)
    runner = PeerRunner(timeout_s=0.01)
    try:
        stopped = runner.run("cca", x, y, PeerSettings())
    finally:
        runner.close()
    assert stopped["status"] == "skipped" and "--peer_timeout" in stopped["note"]


def test_tuned_configs_from_a_sweep_summary_and_from_plain_fields(tmp_path):
    summary = {"kind": "experiment", "name": "night1", "best_estimator_config": {"model_dim": 32, "seed": 3}}
    (tmp_path / "best.json").write_text(json.dumps(summary))
    assert load_configs(tmp_path / "best.json")["night1"].model_dim == 32
    multi = {"kind": "multi_task", "experiments": [{"name": "a", "best_config": {"n_blocks": 2}}]}
    (tmp_path / "multi.json").write_text(json.dumps(multi))
    assert load_configs(tmp_path / "multi.json")["a"].n_blocks == 2
    (tmp_path / "mine.yaml").write_text("architecture: moe\nsnr_threshold: 4.0\n")
    assert load_configs(tmp_path / "mine.yaml")["mine"].architecture == "moe"
    (tmp_path / "bad.yaml").write_text("modle_dim: 32\n")
    with pytest.raises(ConfigFileError, match="modle_dim"):
        load_configs(tmp_path / "bad.yaml")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--tasks", "spiral:2:200"], "spiral needs dim >= 3"),
        (["--tasks", "no-such-task"], "unknown task 'no-such-task'"),
        (["--estimators", "ksg", "kde"], "unknown estimator(s) kde"),
        (["--configs", "/nonexistent/best.json"], "cannot read"),
        (["--set", "model_dim=-1"], "model_dim"),
        (["--n_test", "0"], "--n_test must be a positive integer"),
        (["--shard", "4/4"], "--shard I/K needs 0 <= I < K"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys, argv, message):
    out = tmp_path / "out"
    assert accuracy.main([*argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err
    assert not out.exists()
