"""``dmi train``: one complete results line, checkpoints that load and resume, the original's defaults."""

from __future__ import annotations

import math
from pathlib import Path

from cli_helpers import ADDED_FIELDS, ORIGINAL_FIELDS, TINY, files_under, read_lines


def test_train_appends_one_line_with_every_field(workdir: Path, dmi) -> None:
    code, out, err = dmi("train", *TINY, "--max_steps", "30", "--strength", "200")
    assert code == 0, err
    [record] = read_lines(workdir / "results_unified_600.jsonl")  # the original's default name
    for field in (*ORIGINAL_FIELDS, *ADDED_FIELDS):
        assert field in record, field
    assert record["task"] == "multinormal_sparse_200_dim_3"
    assert record["estimator"] == "DiffusionMI_unified" and record["use_moe"] is False
    assert record["task_strength"] == 200 and record["task_dim"] == 3  # the original wrote null
    assert record["train_sample_num"] == 600 and record["test_sample_num"] == 200
    assert record["model_dim"] == 8 and record["max_steps"] == 30 and record["trained_steps"] == 30
    assert record["learning_rate"] == 1e-3 and record["batch_size"] == 128  # dim <= 5 defaults
    assert record["logsnr_range"] == [-12.0, 24.0]
    assert 9 < record["gt_mi"] < 11
    for key in ("mi_estimate", "mi_estimate_orthogonal", "mi_stderr", "mi_orthogonal_stderr"):
        assert math.isfinite(record[key])
    assert Path(record["checkpoint"]).is_file()
    assert record["checkpoint"].startswith("checkpoints/multinormal_sparse_200_dim_3/dmi_unified_")
    # Quiet by default: one readable result line and where it went; no Lightning chatter, no logs.
    assert "multinormal_sparse_200_dim_3: MI" in out and "GPU available" not in out + err
    assert not any(name.startswith("lightning_logs") for name in files_under(workdir))


def test_load_ckpt_estimates_without_training_and_resumes_with_more_epochs(workdir: Path, dmi) -> None:
    args = ("train", *TINY, "--max_epochs", "5", "--seed", "3")
    assert dmi(*args)[0] == 0
    first = read_lines(workdir / "results_unified_600.jsonl")[-1]
    assert first["max_epochs"] == 5 and first["max_steps"] == 5 * (600 // 128)
    ckpt = Path(first["checkpoint"])
    stamp = ckpt.stat().st_mtime_ns

    assert dmi(*args, "--load_ckpt")[0] == 0
    loaded = read_lines(workdir / "results_unified_600.jsonl")[-1]
    assert loaded["checkpoint_action"] == "loaded" and loaded["train_seconds"] == 0.0
    assert loaded["mi_estimate"] == first["mi_estimate"]
    assert loaded["mi_estimate_orthogonal"] == first["mi_estimate_orthogonal"]
    assert ckpt.stat().st_mtime_ns == stamp  # not trained, not rewritten

    assert dmi("train", *TINY, "--max_epochs", "10", "--seed", "3", "--load_ckpt")[0] == 0
    resumed = read_lines(workdir / "results_unified_600.jsonl")[-1]
    assert resumed["checkpoint"] == first["checkpoint"]  # the budget is not part of the name
    assert resumed["checkpoint_action"] == "resumed" and resumed["trained_steps"] == 10 * (600 // 128)
    # Selection continues over all steps seen: a new estimate exactly when a later step was selected.
    moved = resumed["diagnostics"]["selected_step"] != first["diagnostics"]["selected_step"]
    assert (resumed["mi_estimate"] != first["mi_estimate"]) == moved
    assert resumed["diagnostics"]["n_validations"] > first["diagnostics"]["n_validations"]
    assert len(read_lines(workdir / "results_unified_600.jsonl")) == 3


def test_run_all_resolves_defaults_per_configuration_and_skips_completed(workdir: Path, dmi) -> None:
    grid = (
        "--run_all",
        "--dims",
        "3",
        "10",
        "--strengths",
        "200",
        "--task_types",
        "multinormal",
        "half_cube",
    )
    code, out, _ = dmi("train", *TINY, "--max_epochs", "2", *grid)
    assert code == 0
    records = read_lines(workdir / "results_unified_600.jsonl")
    assert [(r["task_dim"], r["task"].split("_")[0]) for r in records] == [
        (3, "multinormal"),
        (3, "half"),
        (10, "multinormal"),
        (10, "half"),
    ]  # the original's order: dim, then strength, then task type
    for r in records:  # the original kept dim 3's values for every later dim
        small = r["task_dim"] <= 5
        assert r["learning_rate"] == (1e-3 if small else 2e-3)
        assert r["batch_size"] == (128 if small else 256)
        assert r["max_steps"] == 2 * (600 // r["batch_size"])
    assert "[4/4]" in out

    code, out, _ = dmi("train", *TINY, "--max_epochs", "2", *grid)
    assert code == 0 and out.count("skipped") == 4
    assert len(read_lines(workdir / "results_unified_600.jsonl")) == 4
    # A larger budget is a different configuration: it runs again.
    grid_one = ("--run_all", "--dims", "3", "--strengths", "200", "--task_types", "multinormal")
    assert dmi("train", *TINY, "--max_epochs", "3", *grid_one)[0] == 0
    assert len(read_lines(workdir / "results_unified_600.jsonl")) == 5


def test_arch_is_a_synonym_of_use_moe(workdir: Path) -> None:
    from dmi.cli import build_parser
    from dmi.commands.train import plan

    parse = build_parser().parse_args
    by_flag = plan(parse(["train", "--use_moe"]))[0]
    by_name = plan(parse(["train", "--arch", "moe"]))[0]
    unified = plan(parse(["train"]))[0]
    assert by_flag.checkpoint == by_name.checkpoint and by_flag.cfg == by_name.cfg
    assert by_flag.cfg.architecture == "moe" and unified.cfg.architecture == "unified"
    assert by_flag.checkpoint.name.startswith("dmi_moe_") and by_flag.digest != unified.digest
    assert files_under(workdir) == set()  # planning writes nothing


def test_original_defaults_follow_the_dimension() -> None:
    from dmi.cli import build_parser
    from dmi.commands.options import resolve_config

    parse = build_parser().parse_args
    cfg, budget = resolve_config(parse(["train"]), 3, 100000, original_defaults=True)
    assert (cfg.learning_rate, cfg.batch_size, budget.max_epochs) == (1e-3, 128, 500)
    assert cfg.max_steps == 500 * (100000 // 128) and cfg.model_dim == 64 and cfg.seed == 42
    assert cfg.members == 1  # the original's one network, whatever the sample size
    assert resolve_config(parse(["estimate", "d.npz"]), 3, 5000, original_defaults=False)[0].members is None
    assert resolve_config(parse(["train", "--members", "auto"]), 3, 1000, original_defaults=True)[0].members is None
    cfg, budget = resolve_config(parse(["train"]), 10, 100000, original_defaults=True)
    assert (cfg.learning_rate, cfg.batch_size, budget.max_epochs) == (2e-3, 256, 750)
    cfg, _ = resolve_config(parse(["train", "--batch_size", "64"]), 3, 100000, original_defaults=True)
    assert cfg.batch_size == 64  # a given value is never overwritten
    cfg, budget = resolve_config(
        parse(["train", "--max_epochs", "9", "--max_steps", "7"]), 3, 1000, original_defaults=True
    )
    assert cfg.max_steps == 7 and budget.max_epochs is None  # --max_steps overrides
    cfg, _ = resolve_config(
        parse(["train", "--n_blocks", "2", "--no-gaussian_base"]), 3, 1000, original_defaults=True
    )
    assert cfg.n_blocks == 2 and cfg.gaussian_base is False  # generated from EstimatorConfig


def test_tensorboard_logging_is_opt_in(workdir: Path, dmi) -> None:
    assert dmi("train", *TINY, "--max_steps", "20", "--tensorboard", "tb")[0] == 0
    events = [name for name in files_under(workdir) if "events.out.tfevents" in name]
    assert events and all(name.startswith("tb/multinormal_sparse_2000_dim_3/") for name in events)
