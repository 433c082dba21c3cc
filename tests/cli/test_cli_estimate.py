"""``dmi estimate DATA``: .npz, .csv and .parquet, text or --json, nats or --bits."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
from cli_helpers import files_under

FAST = ["--max_steps", "40", "--model_dim", "8", "--mi_estimation_interval", "20"]


def test_npz_text_output(workdir: Path, dmi, gaussian_xy) -> None:
    x, y, true_mi = gaussian_xy
    np.savez("sample.npz", x=x, y=y)
    code, out, err = dmi("estimate", "sample.npz", *FAST)
    assert code == 0, err
    lines = out.strip().splitlines()
    assert "x: x; y: y" in lines[0] and "trained on 1400, estimated on 600" in lines[0]
    direct, orthogonal = lines[1].split(), lines[2].split()
    assert direct[0] == "direct" and orthogonal[0] == "orthogonal" and direct[-1] == "nats"
    # The fitted Gaussian base already carries this linear-Gaussian MI: a wrong column
    # assignment or a broken split would not land near it.
    assert abs(float(direct[1]) - true_mi) < 4 * float(direct[3]) + 0.1
    assert abs(float(orthogonal[1]) - true_mi) < 4 * float(orthogonal[3]) + 0.1
    assert files_under(workdir) == {"sample.npz"}  # estimate writes nothing


def test_csv_json_in_bits_matches_nats(workdir: Path, dmi, gaussian_xy) -> None:
    x, y, _ = gaussian_xy
    pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "c": y[:, 0]}).to_csv("t.csv", index=False)
    args = ("estimate", "t.csv", "--x", "a", "b", "--y", "c", *FAST, "--json")
    nats = json.loads(dmi(*args)[1])
    bits = json.loads(dmi(*args, "--bits")[1])
    assert nats["unit"] == "nats" and bits["unit"] == "bits"
    assert nats["x"] == ["a", "b"] and nats["y"] == ["c"] and nats["n_test"] == 600
    for key in ("mi", "mi_stderr", "mi_orthogonal", "mi_orthogonal_stderr", "mi_cross", "mi_cross_stderr"):
        assert math.isclose(bits[key] * math.log(2), nats[key], rel_tol=1e-6), key
    assert nats["estimator_config"]["model_dim"] == 8 and nats["trained_steps"] == 40


def test_parquet_and_named_npz_arrays_give_the_same_sample(workdir: Path, dmi, gaussian_xy) -> None:
    x, y, _ = gaussian_xy
    pd.DataFrame({"p": x[:, 0], "q": x[:, 1], "r": y[:, 0]}).to_parquet("t.parquet")
    np.savez("named.npz", inputs=x, target=y)
    from_table = json.loads(dmi("estimate", "t.parquet", "--x", "p", "q", "--y", "r", *FAST, "--json")[1])
    from_npz = json.loads(dmi("estimate", "named.npz", "--x", "inputs", "--y", "target", *FAST, "--json")[1])
    assert from_npz["x"] == ["inputs"] and from_npz["y"] == ["target"]
    assert math.isclose(from_table["mi"], from_npz["mi"], rel_tol=1e-6)


def test_estimate_takes_the_train_options(workdir: Path, dmi, gaussian_xy) -> None:
    x, y, _ = gaussian_xy
    np.savez("s.npz", x=x[:600], y=y[:600])
    out = json.loads(
        dmi(
            "estimate",
            "s.npz",
            "--arch",
            "moe",
            "--max_epochs",
            "2",
            "--batch_size",
            "90",
            "--model_dim",
            "8",
            "--use_ema",
            "--json",
        )[1]
    )
    cfg = out["estimator_config"]
    assert cfg["architecture"] == "moe" and cfg["use_ema"] is True and cfg["batch_size"] == 90
    assert out["trained_steps"] == 2 * (420 // 90)  # epochs over the training part (600 − 30 % test)


def test_json_says_how_the_estimate_was_obtained_and_warnings_reach_stderr(workdir: Path, dmi, gaussian_xy) -> None:
    x, y, _ = gaussian_xy
    np.savez("s.npz", x=x, y=y)
    # No Gaussian base and 60 steps: the network is still learning at the cap, and that is said.
    args = ("--max_steps", "60", "--model_dim", "8", "--val_interval", "20", "--no-gaussian_base")
    code, out, err = dmi("estimate", "s.npz", *args, "--json")
    assert code == 0, err
    diag = json.loads(out)["diagnostics"]
    for key in ("selected_step", "trained_steps", "stopped_early", "still_improving", "nll_gap", "preprocessing"):
        assert key in diag, key
    assert diag["held_out_selection"] and diag["trained_steps"] == 60
    assert diag["selected_step"] == 60 and diag["still_improving"]
    # Every warning of the record is printed, one line each.
    assert err.count("dmi: warning:") == len(diag["warnings"]) >= 1
    assert "still improving at the step cap" in err


def test_spectrum_plot_is_written_and_reported(workdir: Path, dmi, gaussian_xy) -> None:
    x, y, _ = gaussian_xy
    np.savez("s.npz", x=x, y=y)
    code, out, err = dmi("estimate", "s.npz", *FAST, "--json", "--spectrum", "plots/spectrum.png")
    assert code == 0, err
    result = json.loads(out)
    spectrum = result["spectrum"]
    assert Path("plots/spectrum.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from dmi.tempfiles import new_file_mode

    assert Path("plots/spectrum.png").stat().st_mode & 0o777 == new_file_mode()  # not the temporary's 0o600
    assert spectrum["n_points"] == result["n_test"] and len(spectrum["gap"]) == len(spectrum["logsnr"])
    assert math.isclose(spectrum["integral"], result["mi"], abs_tol=0.1)
    assert result["diagnostics"]["window_covers_information"] is True
    assert files_under(workdir) - {"plots"} == {"s.npz", "plots/spectrum.png"}  # no temporary file left


def test_spectrum_needs_an_image_suffix(workdir: Path, dmi, gaussian_xy) -> None:
    x, y, _ = gaussian_xy
    np.savez("s.npz", x=x, y=y)
    code, out, err = dmi("estimate", "s.npz", *FAST, "--spectrum", "spectrum.txt")
    assert code == 2 and "--spectrum" in err and len(err.strip().splitlines()) == 1
    assert files_under(workdir) == {"s.npz"}
