"""The throughput benchmark runs end to end and its JSON holds every figure it promises."""

from __future__ import annotations

import json

from benchmarks import throughput


def test_tiny_run_prints_one_json_object_with_both_loops_per_arch(capsys) -> None:
    assert throughput.main(["--json", "--steps", "20", "--dims", "3", "--rounds", "1", "--device", "cpu"]) == 0
    figures = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert figures["device"] == "cpu" and figures["peak_rss_mib"] > 0
    assert {(r["arch"], r["dim"]) for r in figures["rows"]} == {("unified", 3), ("moe", 3)}
    for row in figures["rows"]:
        assert row["project_steps_per_s"] > 0 and row["bare_steps_per_s"] > 0
        assert abs(row["ratio"] - row["project_steps_per_s"] / row["bare_steps_per_s"]) < 1e-9
        assert row["samples_per_s"] == row["project_steps_per_s"] * 256
        assert 0 < row["estimate_10k_seconds"] < 120
