"""Bad input: one line on stderr naming the problem, exit code 2, no traceback, nothing written."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from cli_helpers import TINY, files_under

TRAIN_CASES = [
    (["--task_type", "circle"], "unknown task type 'circle'"),
    (["--task_type", "spiral", "--dim", "2"], "spiral needs dim >= 3"),
    (["--run_all", "--dims", "3", "2", "--task_types", "spiral"], "spiral needs dim >= 3"),
    (["--dim", "0"], "--dim must be > 0"),
    (["--strength", "-5"], "--strength must be > 0"),
    (["--train_sample_num", "-5"], "--train_sample_num must be > 0"),
    (["--test_num", "0"], "--test_num must be > 0"),
    (["--test_num", "1"], "too few samples to split"),
    (["--batch_size", "0"], "--batch_size must be > 0"),
    (["--model_dim", "-1"], "--model_dim must be > 0"),
    (["--members", "0"], "--members must be a positive integer or 'auto'"),
    (["--max_epochs", "0"], "--max_epochs must be > 0"),
    (["--max_steps", "-3"], "--max_steps must be > 0"),
    (["--run_all", "--dims", "0"], "--dims values must be > 0"),
    (["--dims", "3"], "--dims needs --run_all"),
    (["--arch", "mixture"], "--arch must be 'unified' or 'moe'"),
    (["--use_moe", "--arch", "unified"], "--use_moe contradicts --arch unified"),
    (["--preprocess", "whiten"], "preprocess"),
    (["--use_moe", "--snr_threshold", "50"], "snr_threshold"),
    (["--ema_decay", "1.5"], "ema_decay"),
    (["--load_ckpt"], "no checkpoint for this configuration"),
    (["--results_file", "missing_dir/r.jsonl"], "does not exist"),
]


def check_refused(code: int, err: str, expected: str) -> None:
    lines = err.strip().splitlines()
    assert code == 2
    assert len(lines) == 1 and lines[0].startswith("dmi: error: "), err
    assert expected in lines[0]
    assert "Traceback" not in err


@pytest.mark.parametrize("args, expected", TRAIN_CASES, ids=[" ".join(a) for a, _ in TRAIN_CASES])
def test_train_refuses(args: list[str], expected: str, workdir: Path, dmi) -> None:
    code, out, err = dmi("train", *TINY, "--max_steps", "5", *args)
    check_refused(code, err, expected)
    assert files_under(workdir) == set()


@pytest.fixture
def data_files(workdir: Path) -> Path:
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(50, 2)), rng.normal(size=(50, 1))
    np.savez("good.npz", x=x, y=y)
    np.savez("uneven.npz", x=x, y=y[:40])
    np.savez("tiny.npz", x=x[:3], y=y[:3])
    np.savez("flat.npz", x=np.column_stack([x[:, 0], np.ones(50)]), y=y)
    np.savez("nan.npz", x=np.where(np.arange(50)[:, None] == 7, np.nan, x), y=y)
    np.save("objects.npy", np.array([1]))  # any other suffix
    table = pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "c": y[:, 0], "word": ["w"] * 50})
    table.to_csv("good.csv", index=False)
    table.to_parquet("good.parquet")
    table.assign(b=np.where(np.arange(50) == 4, np.inf, table.b)).to_csv("inf.csv", index=False)
    table.assign(c=np.where(np.arange(50) == 9, np.nan, table.c)).to_parquet("nan.parquet")
    table.assign(c=3.0).to_csv("flat.csv", index=False)
    return workdir


ESTIMATE_CASES = [
    (["absent.npz"], "data file not found: absent.npz"),
    (["objects.npy"], "unsupported data file type '.npy'"),
    (["uneven.npz"], "different numbers of samples: 50 vs 40"),
    (["tiny.npz"], "too few samples"),
    (["flat.npz"], "x column 1 is constant"),
    (["nan.npz"], "x contains NaN (first at row 7"),
    (["good.npz", "--x", "inputs"], "good.npz has no array 'inputs'"),
    (["good.csv"], "--x and --y column lists are required"),
    (["good.csv", "--x", "a", "zz", "--y", "c"], "column 'zz' not in good.csv"),
    (["good.parquet", "--x", "a", "--y", "nope"], "column 'nope' not in good.parquet"),
    (["good.csv", "--x", "a", "word", "--y", "c"], "column 'word' is not numeric"),
    (["good.csv", "--x", "a", "--y", "a"], "column 'a' is in both --x and --y"),
    (["inf.csv", "--x", "a", "b", "--y", "c"], "column 'b' contains inf (first at row 4)"),
    (["nan.parquet", "--x", "a", "--y", "c"], "column 'c' contains NaN (first at row 9)"),
    (["flat.csv", "--x", "a", "--y", "c"], "column 'c' is constant"),
    (["good.npz", "--test_fraction", "1.5"], "--test_fraction must be in (0, 1)"),
    (["good.npz", "--batch_size", "-2"], "--batch_size must be > 0"),
    (["good.npz", "--model_dim", "0"], "--model_dim must be > 0"),
    (["good.npz", "--members", "many"], "--members must be a positive integer or 'auto'"),
]


@pytest.mark.parametrize("args, expected", ESTIMATE_CASES, ids=[" ".join(a) for a, _ in ESTIMATE_CASES])
def test_estimate_refuses(args: list[str], expected: str, data_files: Path, dmi) -> None:
    before = files_under(data_files)
    code, out, err = dmi("estimate", *args, "--max_steps", "5")
    check_refused(code, err, expected)
    assert out == "" and files_under(data_files) == before


class Exploit:
    """Unpickling this would create a file: loading must refuse it instead."""

    def __reduce__(self):
        return (Path.touch, (Path("exploited"),))


def test_an_unsafe_checkpoint_is_refused_not_unpickled(workdir: Path, dmi) -> None:
    from dmi.cli import build_parser
    from dmi.commands.train import plan

    args = ["train", *TINY, "--max_steps", "5"]
    path = plan(build_parser().parse_args(args))[0].checkpoint
    path.parent.mkdir(parents=True)
    payload = pickle.dumps({"global_step": 1, "state_dict": Exploit()}, protocol=2)
    path.write_bytes(payload)
    before = files_under(workdir)
    code, _, err = dmi(*args, "--load_ckpt")
    check_refused(code, err, "cannot load checkpoint")
    assert not Path("exploited").exists() and files_under(workdir) == before
    pickle.loads(payload)  # the payload is real: plain unpickling runs it
    assert Path("exploited").exists()


def test_argparse_errors_also_exit_2(workdir: Path, capsys) -> None:
    from dmi.cli import main

    with pytest.raises(SystemExit) as stop:
        main(["train", "--dim", "three"])
    assert stop.value.code == 2
    assert "argument --dim: invalid int value" in capsys.readouterr().err
    assert files_under(workdir) == set()
