"""Hostile files: a pickle posing as a checkpoint and a YAML config with a Python tag are refused, not run."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest


class Exploit:
    """Unpickling this creates a file: a safe loader must refuse it instead."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return (Path.touch, (self.target,))


@pytest.mark.faults
def test_a_pickle_posing_as_a_checkpoint_is_refused_by_every_sweep_loader(tmp_path, fault_ledger):
    """``load_module`` (final estimate, registry) and ``fit(ckpt_path=...)`` (a trial resuming) both refuse it."""
    from dmi.config import EstimatorConfig
    from dmi.training import fit, load_module

    exploited = tmp_path / "exploited"
    checkpoint = tmp_path / "checkpoint.ckpt"
    checkpoint.write_bytes(pickle.dumps({"global_step": 1, "state_dict": Exploit(exploited)}, protocol=2))
    x = np.random.default_rng(0).normal(size=(64, 2))
    cfg = EstimatorConfig(model_dim=8, n_blocks=1, max_steps=2, batch_size=32, val_n_logsnr=4)

    fault_ledger.inject("malicious checkpoint", 2)
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        load_module(checkpoint)
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        fit(cfg, x, x + 1.0, ckpt_path=checkpoint)
    assert not exploited.exists()
    fault_ledger.survive("malicious checkpoint")

    pickle.loads(checkpoint.read_bytes())  # the payload is real: plain unpickling runs it
    assert exploited.exists()


@pytest.mark.faults
def test_a_sweep_config_with_a_python_tag_is_refused_with_exit_2(tmp_path, capsys, fault_ledger):
    from tune.cli import main

    exploited = tmp_path / "exploited"
    config = tmp_path / "sweep.yaml"
    config.write_text(f'name: !!python/object/apply:os.system ["touch {exploited}"]\ndata: {{}}\n')
    storage = tmp_path / "results"

    fault_ledger.inject("malicious config")
    assert main(["run", str(config), "--storage", str(storage)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dmi-tune: error: config: not valid YAML") and err.count("\n") == 1
    assert not exploited.exists() and not storage.exists()
    fault_ledger.survive("malicious config")
