"""One experiment's data: train / validation / test, disjoint, loaded once by the driver.

A benchmark task is sampled (truth known), a user file shuffled by the seed and split (truth unknown). The
trials get the training and validation rows through Ray's object store; the test rows stay with the driver.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dmi.data import DataError, validate_sample
from dmi.tasks import TaskSpec, sample_task, true_mi
from tune.config import DataConfig


@dataclass(frozen=True)
class SweepData:
    label: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    true_mi: float | None

    def describe(self) -> dict:
        dims = {"dim_x": int(self.x_train.shape[1]), "dim_y": int(self.y_train.shape[1])}
        sizes = {f"n_{part}": len(getattr(self, f"x_{part}")) for part in ("train", "val", "test")}
        return {"label": self.label, **dims, **sizes, "true_mi": self.true_mi}


def load_data(data: DataConfig, task: TaskSpec | None) -> SweepData:
    """``task`` for a benchmark sweep, else ``data.path``; a task's samples stay float32, a file's float64."""
    if task is not None:
        x, y = sample_task(task, data.n_train + data.n_val + data.n_test, seed=data.seed)
        label, cut, truth, dtype = task.name, np.cumsum([data.n_train, data.n_val]), true_mi(task), np.float32
    else:
        path = Path(data.path)
        x, y = validate_sample(*read_arrays(data, path), min_samples=6)
        order = np.random.default_rng(data.seed).permutation(len(x))
        x, y = x[order], y[order]
        n_test, n_val = round(len(x) * data.test_fraction), round(len(x) * data.val_fraction)
        if min(n_test, n_val, len(x) - n_test - n_val) < 2:
            raise DataError(f"{path.name}: {len(x)} samples are too few to split into train, validation and test")
        label, cut, truth, dtype = path.stem, np.cumsum([len(x) - n_val - n_test, n_val]), None, np.float64
    parts = []
    for name, xs, ys in zip(("train", "val", "test"), np.split(x, cut), np.split(y, cut), strict=True):
        try:
            xs, ys = validate_sample(xs, ys, min_samples=2)
        except DataError as exc:
            raise DataError(f"{label} {name} set: {exc}") from None
        parts += [xs.astype(dtype), ys.astype(dtype)]
    return SweepData(label, *parts, truth)


def read_arrays(data: DataConfig, path: Path) -> tuple[np.ndarray, np.ndarray]:
    if path.suffix.lower() == ".npz":
        with np.load(path, allow_pickle=False) as arrays:
            for key in (data.x_key, data.y_key):
                if key not in arrays:
                    raise DataError(f"{path.name} has no array {key!r} (arrays: {', '.join(arrays.files)})")
            return arrays[data.x_key], arrays[data.y_key]
    import pandas as pd

    try:
        frame = pd.read_csv(path) if path.suffix.lower() == ".csv" else pd.read_parquet(path)
    except Exception as exc:  # noqa: BLE001 - any reader failure is bad input
        raise DataError(f"{path.name} could not be read: {str(exc).splitlines()[0]}") from None
    missing = [c for c in (*data.x_columns, *data.y_columns) if c not in frame.columns]
    if missing:
        raise DataError(f"{path.name} has no column {missing[0]!r}")
    try:
        return frame[list(data.x_columns)].to_numpy(np.float64), frame[list(data.y_columns)].to_numpy(np.float64)
    except (TypeError, ValueError):
        raise DataError(f"{path.name}: the x and y columns must be numeric") from None
