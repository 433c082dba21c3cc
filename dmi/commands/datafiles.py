"""Read a user's joint sample (x, y) from .npz, .csv or .parquet, refusing bad data by name.

Table problems (unknown, non-numeric, non-finite or constant columns) are reported with
the column's name; .npz arrays go through ``dmi.data.validate_sample``, which reports
positions. Arrays are loaded with ``allow_pickle=False``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dmi.errors import UsageError

TABLE_SUFFIXES = (".csv", ".parquet")
SUFFIXES = (".npz", *TABLE_SUFFIXES)


@dataclass
class Sample:
    x: np.ndarray
    y: np.ndarray
    x_names: list[str]
    y_names: list[str]


def _error(message: str) -> Exception:

    return UsageError(message)


def load_sample(path: str | Path, x_names: Sequence[str] | None, y_names: Sequence[str] | None) -> Sample:
    """The (x, y) sample of ``path``; for tables ``x_names``/``y_names`` are required column lists."""
    from dmi.data import DataError

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise _error(f"unsupported data file type {suffix or path.name!r}: use .npz, .csv or .parquet")
    if not path.exists():
        raise _error(f"data file not found: {path}")
    if not path.is_file():
        raise _error(f"data file is not a regular file: {path}")
    if suffix == ".npz":
        return _load_npz(path, x_names, y_names)
    if not x_names or not y_names:
        raise _error(f"{path.name}: --x and --y column lists are required for {suffix} files")
    both = sorted(set(x_names) & set(y_names))
    if both:
        raise _error(f"column {both[0]!r} is in both --x and --y")
    table = _read_table(path, suffix, [*x_names, *y_names])
    columns = {}
    for name in [*x_names, *y_names]:
        column = table[name]
        if not np.issubdtype(column.dtype, np.number) or np.issubdtype(column.dtype, np.complexfloating):
            raise DataError(f"column {name!r} is not numeric (dtype {column.dtype})")
        values = column.to_numpy(dtype=np.float64)
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            kind = "NaN" if np.isnan(values[bad[0]]) else "inf"
            raise DataError(f"column {name!r} contains {kind} (first at row {bad[0]})")
        if values.size and np.ptp(values) == 0:
            raise DataError(f"column {name!r} is constant: it carries no information")
        columns[name] = values
    x = np.stack([columns[n] for n in x_names], axis=1)
    y = np.stack([columns[n] for n in y_names], axis=1)
    return Sample(x, y, list(x_names), list(y_names))


def _read_table(path: Path, suffix: str, wanted: list[str]):
    import pandas as pd

    try:
        if suffix == ".csv":
            header = pd.read_csv(path, nrows=0)
        else:
            import pyarrow.parquet as pq

            header = pq.read_schema(path).names
        available = list(header.columns if suffix == ".csv" else header)
    except Exception as exc:
        raise _error(f"cannot read {path}: {_first_line(exc)}") from exc
    missing = [name for name in wanted if name not in available]
    if missing:
        shown = ", ".join(map(str, available[:20])) + (" ..." if len(available) > 20 else "")
        raise _error(f"column {missing[0]!r} not in {path.name} (columns: {shown})")
    try:
        if suffix == ".csv":
            return pd.read_csv(path, usecols=wanted)
        return pd.read_parquet(path, columns=wanted)
    except Exception as exc:
        raise _error(f"cannot read {path}: {_first_line(exc)}") from exc


def _load_npz(path: Path, x_names: Sequence[str] | None, y_names: Sequence[str] | None) -> Sample:

    names = []
    for option, given, default in (("--x", x_names, "x"), ("--y", y_names, "y")):
        if given and len(given) != 1:
            raise _error(f"{option} takes one array name for .npz files, got {len(given)}")
        names.append(given[0] if given else default)
    try:
        with np.load(path, allow_pickle=False) as archive:
            available = list(archive.files)
            for name in names:
                if name not in available:
                    shown = ", ".join(available) or "none"
                    raise _error(f"{path.name} has no array {name!r} (arrays: {shown})")
            arrays = [archive[name] for name in names]
    except UsageError:
        raise
    except Exception as exc:
        raise _error(f"cannot read {path}: {_first_line(exc)}") from exc
    for name, array in zip(names, arrays, strict=True):
        real = np.issubdtype(array.dtype, np.number) and not np.issubdtype(array.dtype, np.complexfloating)
        if not (real or array.dtype == bool):
            raise _error(f"array {name!r} of {path.name} is not numeric (dtype {array.dtype})")
    x, y = arrays
    return Sample(x, y, [names[0]], [names[1]])


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
