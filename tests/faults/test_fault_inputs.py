"""Bad input on every surface: one line naming the problem, exit code 2, nothing written.

Each case is counted in the suite's "bad inputs refused R/A" line once its refusal has been
checked whole.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from fault_helpers import free_port

pytestmark = pytest.mark.faults


def files_under(folder: Path) -> set[Path]:
    return {p.relative_to(folder) for p in folder.rglob("*")}


@pytest.fixture
def samples(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(60, 2)), rng.normal(size=(60, 1))
    np.savez("nan.npz", x=np.where(np.arange(60)[:, None] == 5, np.nan, x), y=y)
    np.savez("uneven.npz", x=x, y=y[:50])
    np.savez("tiny.npz", x=x[:3], y=y[:3])
    np.savez("flat.npz", x=np.column_stack([x[:, 0], np.full(60, 2.0)]), y=y)
    np.savez("good.npz", x=x, y=y)
    return tmp_path


DMI_CASES = [
    (["estimate", "nan.npz"], "x contains NaN (first at row 5"),
    (["estimate", "uneven.npz"], "different numbers of samples: 60 vs 50"),
    (["estimate", "tiny.npz"], "too few samples"),
    (["estimate", "flat.npz"], "x column 1 is constant"),
    (["estimate", "good.npz", "--threads", "0"], "--threads must be a positive integer or 'auto'"),
    (["train", "--train_sample_num", "600", "--test_num", "200", "--max_steps", "-3"], "--max_steps must be > 0"),
]


@pytest.mark.parametrize("args, expected", DMI_CASES, ids=[" ".join(a) for a, _ in DMI_CASES])
def test_dmi_refuses(args, expected, samples, capsys, fault_ledger):
    from dmi.cli import main

    before = files_under(samples)
    fault_ledger.offer("dmi " + args[0])
    code = main([*args, "--max_steps", "5"] if "--max_steps" not in args else args)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("dmi: error: ") and expected in err[0], err
    assert files_under(samples) == before
    fault_ledger.refuse("dmi " + args[0])


def sweep_yaml(folder: Path, **changes) -> Path:
    config = {
        "name": "bad",
        "data": {"task_type": "multinormal", "dim": 2, "strength": 2, "n_train": 500, "n_val": 100, "n_test": 100},
        "estimator": {"max_steps": 20},
        "search": {"num_samples": 1},
        **changes,
    }
    path = folder / "bad.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


TUNE_CASES = [
    ({"time_budget_s": -5}, "time_budget_s"),
    ({"objective": "accuracy"}, "objective"),
    ({"trials": {"max_failures": -2}}, "max_failures"),
    ({"search": {"num_samples": 0}}, "num_samples"),
]


@pytest.mark.parametrize("changes, expected", TUNE_CASES, ids=[next(iter(c)) for c, _ in TUNE_CASES])
def test_dmi_tune_refuses_a_bad_config(changes, expected, tmp_path, capsys, fault_ledger):
    from tune.cli import main

    storage = tmp_path / "results"
    fault_ledger.offer("sweep config")
    code = main(["run", str(sweep_yaml(tmp_path, **changes)), "--storage", str(storage)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("dmi-tune: error: ") and expected in err[0], err
    assert not storage.exists()
    fault_ledger.refuse("sweep config")


def test_dmi_tune_refuses_an_unreachable_tracking_server(tmp_path, capsys, fault_ledger):
    from tune.cli import main

    storage, uri = tmp_path / "results", f"http://127.0.0.1:{free_port()}"
    fault_ledger.offer("tracking server")
    code = main(["run", str(sweep_yaml(tmp_path, tracking=True)), "--storage", str(storage), "--tracking-uri", uri])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and f"tracking store {uri} is unreachable" in err[0], err
    assert not storage.exists()
    fault_ledger.refuse("tracking server")


def test_the_library_refuses_a_bad_thread_count(fault_ledger):
    from dmi.api import DiffusionMI

    fault_ledger.offer("library threads")
    with pytest.raises(ValueError, match="threads must be a positive integer or 'auto', got 0"):
        DiffusionMI(threads=0)
    fault_ledger.refuse("library threads")
