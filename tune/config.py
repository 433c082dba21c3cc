"""The sweep's YAML file: its schema, read and checked in full before anything starts.

    name            experiment name (letters, digits, _ . -); required; description: free text
    objective       a label-free objective of tune.objectives (default: DEFAULT_OBJECTIVE there),
                    val_loss among them | abs_error (benchmark tasks only)
    data            task_type, dim, strength (one benchmark task) | tasks: [{task_type, dim, strength}, ...]
                    (one experiment per task), with n_train, n_val, n_test | path (a data file, relative
                    to the YAML file; .npz: x_key/y_key, .csv/.parquet: x_columns/y_columns), with
                    val_fraction, test_fraction; seed
    estimator       fixed EstimatorConfig fields (the library defaults fill the rest)
    search          num_samples, seed, params: {field: {low, high, log} | {choices: [...]}},
                    points_to_evaluate: [{field: value}], optuna_storage, study_name
    scheduler       type asha|fifo, grace_period (reports), reduction_factor
    trials          val_every_n_steps (one report = one ASHA step), resources: {cpu, gpu},
                    max_concurrent_trials, max_failures, num_to_keep, reuse_actors
    time_budget_s   for the whole sweep; ends the search and keeps its results (exit code 3)
    final_n_logsnr  log-SNR nodes of the final estimate on the test set (64)
    storage         results folder (relative to the working directory) or URI; ./ray_results
                    (on several nodes: a URI or a folder every node sees, see tune.cluster)
    ray             address, num_cpus, num_gpus, object_store_mb (for a local Ray)
    tracking        true|false; tracking_uri, model_name: for MLflow (tune.tracking)
    compare_defaults  also train the library defaults (under the fixed estimator settings) on the
                    same rows, and report their estimate beside the pick's (default: true for tasks)

Every error is a ``SweepConfigError`` whose message starts with the dotted field name. A dataclass
field declared with ``key`` is the key of its name, with its type, default and check.
"""

from __future__ import annotations

import dataclasses
import math
import re
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from dmi.checks import logsnr_bounds
from dmi.config import ARCHITECTURES, ConfigError, EstimatorConfig
from dmi.errors import SweepConfigError
from dmi.tasks import TaskSpec
from tune.objectives import CANDIDATES, DEFAULT_OBJECTIVE
from tune.summary import clean

OBJECTIVES = (*CANDIDATES, "abs_error")
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
# Searching these would change the budget or the yardstick rather than the estimator.
NOT_SEARCHABLE = ("max_steps", "seed", "n_logsnr", "val_n_logsnr")
CONDITIONS = {"snr_threshold": ("architecture", "moe"), "ema_decay": ("use_ema", True)}
MISSING = object()
KINDS = {bool: "true/false", int: "an integer", float: "a number", str: "a string", list: "a list", dict: "a mapping"}
Check = Callable[[Any], str | None]  # a reason to refuse the value, or None


def fail(field: str, why: str) -> SweepConfigError:
    return SweepConfigError(f"{field}: {why}")


def is_kind(value: Any, kind: type | tuple[type, ...]) -> bool:
    """isinstance with YAML's habits: a bool is not a number, an int is a float."""
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool):
        return bool in kinds
    if value is None:
        return type(None) in kinds
    return isinstance(value, kinds) or (isinstance(value, int) and float in kinds)


class Section:
    """A mapping read key by key: ``take`` each known key, then ``finish`` refuses the rest."""

    def __init__(self, values: Any, path: str) -> None:
        values = {} if values is None else values
        if not isinstance(values, dict):
            raise fail(path or "config", f"must be a mapping, got {type(values).__name__}")
        self.values, self.path, self.taken = values, path, set()

    def field(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def take(self, key: str, kind: type | tuple[type, ...], default: Any = MISSING, check: Check | None = None) -> Any:
        """The value of ``key``; ``default`` if it is absent (or null, when there is a default)."""
        self.taken.add(key)
        if key not in self.values or (self.values[key] is None and default is not MISSING):
            if default is MISSING:
                raise fail(self.field(key), "is required")
            return default
        value, kinds = self.values[key], kind if isinstance(kind, tuple) else (kind,)
        if not is_kind(value, kinds):
            expected = " or ".join(KINDS.get(k, k.__name__) for k in kinds if k is not type(None)) or "null"
            raise fail(self.field(key), f"must be {expected}, got {value!r}")
        if isinstance(value, float) and not math.isfinite(value):
            raise fail(self.field(key), f"must be finite, got {value!r}")
        if isinstance(value, int) and not isinstance(value, bool) and float in kinds and int not in kinds:
            value = float(value)
        why = None if check is None or value is None else check(value)
        if why:
            raise fail(self.field(key), f"{why}, got {value!r}")
        return value

    def section(self, key: str) -> Section:
        self.taken.add(key)
        return Section(self.values.get(key), self.field(key))

    def finish(self) -> None:
        unknown = sorted(str(k) for k in self.values if k not in self.taken)
        if unknown:
            raise fail(self.field(unknown[0]), f"unknown key (known: {', '.join(sorted(self.taken))})")


def positive(value: Any) -> str | None:
    return None if value > 0 else "must be > 0"


def at_least(low: float) -> Check:
    return lambda value: None if value >= low else f"must be >= {low:g}"


def one_of(*choices: Any) -> Check:
    return lambda value: None if value in choices else f"must be one of {', '.join(map(str, choices))}"


def fraction(value: Any) -> str | None:
    return None if 0 < value < 1 else "must be in (0, 1)"


def key(default: Any = MISSING, check: Check | None = None, *, name: str = "", under: str = "") -> Any:
    """A dataclass field that ``read`` takes from the key of its name (or ``name``), in sub-mapping ``under``."""
    meta = {"key": (default, check, name, under)}
    return dataclasses.field(metadata=meta) if default is MISSING else dataclasses.field(default=default, metadata=meta)


def read(cls: type, sec: Section, defaults: dict[str, Any] | None = None, **given: Any) -> Any:
    """``cls`` from ``sec``: each ``key`` field in order, of its annotated type (``defaults`` first), else ``given``."""
    hints, subs, values = typing.get_type_hints(cls), {}, dict(given)
    for f in dataclasses.fields(cls):
        if "key" not in f.metadata or f.name in given:
            continue
        default, check, name, under = f.metadata["key"]
        if under and under not in subs:
            subs[under] = sec.section(under)
        kind = typing.get_args(hints[f.name]) or hints[f.name]
        values[f.name] = subs.get(under, sec).take(name or f.name, kind, (defaults or {}).get(f.name, default), check)
    for sub in (*subs.values(), sec):
        sub.finish()
    return cls(**values)


@dataclass(frozen=True)
class ParamSpec:
    """One searched hyperparameter: ``choices``, or a ``low``..``high`` range (``log`` scale optional)."""

    name: str
    kind: str  # "int", "float" or "choice"
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple[Any, ...] = ()

    def contains(self, value: Any) -> bool:
        if self.kind == "choice":
            return any(value == c and isinstance(value, bool) == isinstance(c, bool) for c in self.choices)
        return is_kind(value, int if self.kind == "int" else float) and self.low <= value <= self.high

    def describe(self) -> str:
        if self.kind == "choice":
            return f"one of {list(self.choices)}"
        return f"{self.kind} in [{self.low:g}, {self.high:g}]" + (" (log)" if self.log else "")

    def extremes(self) -> list[Any]:
        return list(self.choices) if self.kind == "choice" else [self.low, self.high]


@dataclass(frozen=True)
class DataConfig:
    """Benchmark tasks (truth known) or one user file (truth unknown)."""

    tasks: tuple[TaskSpec, ...] = ()
    n_train: int = 0
    n_val: int = 0
    n_test: int = 0
    path: str | None = None
    x_key: str = "x"
    y_key: str = "y"
    x_columns: tuple[str, ...] = ()
    y_columns: tuple[str, ...] = ()
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    seed: int = 0

    @property
    def is_benchmark(self) -> bool:
        return bool(self.tasks)


@dataclass(frozen=True, kw_only=True)
class SearchConfig:
    num_samples: int = key(8, at_least(1))
    seed: int | None = key(0)
    params: dict[str, ParamSpec]
    points_to_evaluate: tuple[dict[str, Any], ...] = ()
    optuna_storage: str | None = key(None)
    study_name: str | None = key(None)


@dataclass(frozen=True, kw_only=True)
class SchedulerConfig:
    """ASHA in units of reports: one report per ``trials.val_every_n_steps`` training steps."""

    kind: str = key("asha", one_of("asha", "fifo"), name="type")
    grace_period: int = key(1, at_least(1))
    reduction_factor: float = key(2.0, lambda v: None if v > 1 else "must be > 1")
    max_t: int


@dataclass(frozen=True, kw_only=True)
class TrialsConfig:
    val_every_n_steps: int = key(check=at_least(1))  # default: a tenth of estimator.max_steps
    cpu: float = key(1.0, positive, under="resources")
    gpu: float = key(0.0, at_least(0), under="resources")
    max_concurrent_trials: int | None = key(None, at_least(1))
    max_failures: int = key(0, at_least(0))
    num_to_keep: int = key(2, at_least(1))  # a finished trial's best checkpoints, beside its latest: tune.retention
    reuse_actors: bool = key(True)


@dataclass(frozen=True, kw_only=True)
class RayConfig:
    address: str | None = key(None)
    num_cpus: int | None = key(None, at_least(1))
    num_gpus: int | None = key(None, at_least(0))
    object_store_mb: int = key(512, at_least(80))


@dataclass(frozen=True, kw_only=True)
class SweepConfig:
    name: str
    objective: str
    data: DataConfig
    estimator: dict[str, Any]
    search: SearchConfig
    scheduler: SchedulerConfig
    trials: TrialsConfig
    ray: RayConfig
    description: str = key("")
    time_budget_s: float | None = key(None, positive)
    final_n_logsnr: int = key(64, at_least(1))
    storage: str | None = key(None)
    tracking: bool = key(True)
    tracking_uri: str | None = key(None)
    model_name: str | None = key(None)
    compare_defaults: bool = key(False)  # default: whether the data are benchmark tasks
    source: str | None = field(default=None, compare=False)

    def base_estimator(self) -> EstimatorConfig:
        """The fixed hyperparameters over the library defaults (what no trial samples)."""
        return EstimatorConfig.from_dict(self.estimator)

    def as_dict(self) -> dict[str, Any]:
        """Plain values only (for JSON, MLflow and the summary)."""
        return clean(dataclasses.asdict(self))


def load_config(path: str | Path) -> SweepConfig:
    """Read and validate a sweep YAML file; relative data paths resolve against the file's folder."""
    path = Path(path)
    if not path.is_file():
        raise SweepConfigError(f"config: no such file {str(path)!r}")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise SweepConfigError(f"config: not valid YAML ({str(exc).splitlines()[0]})") from None
    return dataclasses.replace(parse_config(raw, base_dir=path.resolve().parent), source=str(path.resolve()))


def parse_config(raw: Any, base_dir: Path | None = None) -> SweepConfig:
    top = Section(raw, "")
    name = top.take("name", str, check=lambda v: None if NAME_PATTERN.match(v) else "must be letters, digits, _ . -")
    objective = top.take("objective", str, DEFAULT_OBJECTIVE, one_of(*OBJECTIVES))
    data = parse_data(top.section("data"), base_dir or Path.cwd())
    if objective == "abs_error" and not data.is_benchmark:
        why = "abs_error needs a benchmark task (data.task_type); the truth of a data file is unknown"
        raise fail("objective", why)
    estimator = parse_estimator(top.section("estimator"))
    base = EstimatorConfig.from_dict(estimator)
    sec = top.section("search")
    params = parse_params(sec.section("params"), estimator, base)
    points = sec.take("points_to_evaluate", list, [])
    check_points(points, params, base, sec.field("points_to_evaluate"))
    search = read(SearchConfig, sec, params=params, points_to_evaluate=tuple(dict(p) for p in points))
    if search.optuna_storage and not search.study_name:
        raise fail(sec.field("study_name"), "is required with optuna_storage (the study carried between sweeps)")
    sec = top.section("trials")
    trials = read(TrialsConfig, sec, {"val_every_n_steps": max(base.max_steps // 10, 1)})
    if base.max_steps % trials.val_every_n_steps:
        raise fail(
            sec.field("val_every_n_steps"),
            f"must divide estimator.max_steps ({base.max_steps}) so that the last step is reported, "
            f"got {trials.val_every_n_steps}",
        )
    if trials.gpu > 1 and not float(trials.gpu).is_integer():
        raise fail(sec.field("resources.gpu"), "a fraction must be below 1; above 1, whole GPUs")
    sec = top.section("scheduler")
    scheduler = read(SchedulerConfig, sec, max_t=base.max_steps // trials.val_every_n_steps)
    if scheduler.kind == "asha" and scheduler.grace_period > scheduler.max_t:
        why = f"exceeds the {scheduler.max_t} reports a trial makes (max_steps / val_every_n_steps)"
        raise fail(sec.field("grace_period"), why)
    ray = read(RayConfig, top.section("ray"))
    given = dict(name=name, objective=objective, data=data, estimator=estimator, search=search, scheduler=scheduler)
    return read(SweepConfig, top, {"compare_defaults": data.is_benchmark}, trials=trials, ray=ray, **given)


def parse_data(sec: Section, base_dir: Path) -> DataConfig:
    kinds = [k for k in ("task_type", "tasks", "path") if k in sec.values]
    if len(kinds) != 1:
        raise fail(sec.path, "give exactly one of task_type (one task), tasks (several) or path (a data file)")
    seed = sec.take("seed", int, 0)
    if kinds[0] == "path":
        raw_path = sec.take("path", str)
        path = (base_dir / Path(raw_path).expanduser()).resolve()
        if not path.is_file():
            raise fail(sec.field("path"), f"no such file {str(path)!r}")
        suffix = path.suffix.lower()
        if suffix not in (".npz", ".csv", ".parquet"):
            raise fail(sec.field("path"), f"must end in .npz, .csv or .parquet, got {raw_path!r}")
        data = DataConfig(
            path=str(path),
            x_key=sec.take("x_key", str, "x"),
            y_key=sec.take("y_key", str, "y"),
            x_columns=tuple(sec.take("x_columns", list, [], _column_names)),
            y_columns=tuple(sec.take("y_columns", list, [], _column_names)),
            val_fraction=sec.take("val_fraction", float, 0.1, fraction),
            test_fraction=sec.take("test_fraction", float, 0.1, fraction),
            seed=seed,
        )
        if data.val_fraction + data.test_fraction >= 1:
            raise fail(sec.field("test_fraction"), "val_fraction + test_fraction must be < 1")
        if suffix != ".npz" and not (data.x_columns and data.y_columns):
            raise fail(sec.field("y_columns" if data.x_columns else "x_columns"), f"is required for {suffix} files")
    else:
        if kinds[0] == "task_type":
            specs = [_task(sec, in_list=False)]
        else:
            entries = sec.take("tasks", list, check=lambda v: None if v else "must not be empty")
            specs = [_task(Section(entry, f"{sec.path}.tasks[{i}]"), in_list=True) for i, entry in enumerate(entries)]
            if len({s.name for s in specs}) != len(specs):
                raise fail(sec.field("tasks"), "lists the same task twice")
        sizes = {n: sec.take(n, int, check=at_least(2)) for n in ("n_train", "n_val", "n_test")}
        data = DataConfig(tasks=tuple(specs), **sizes, seed=seed)
    sec.finish()
    return data


def _column_names(value: list) -> str | None:
    return None if all(isinstance(v, str) for v in value) else "must be a list of column names"


def _task(sec: Section, in_list: bool) -> TaskSpec:
    """One task; inside a ``tasks`` list each entry is its own mapping and must be complete."""
    task_type, dim, strength = sec.take("task_type", str), sec.take("dim", int), sec.take("strength", float)
    try:
        spec = TaskSpec(task_type, dim, strength)
    except ValueError as exc:
        raise fail(sec.path if in_list else sec.field("task_type"), str(exc)) from None
    if in_list:
        sec.finish()
    return spec


def parse_estimator(sec: Section) -> dict[str, Any]:
    """Fixed hyperparameters: each a field of ``EstimatorConfig`` with the type of its default."""
    defaults = EstimatorConfig().as_dict()
    unknown = sorted(str(k) for k in sec.values if k not in defaults)
    if unknown:
        raise fail(sec.field(unknown[0]), f"unknown hyperparameter (fields: {', '.join(defaults)})")
    # A field whose default is None (members, val_interval) takes an integer or null.
    kinds = {k: (int, type(None)) if v is None else type(v) for k, v in defaults.items()}
    fixed = {k: sec.take(k, kinds[k]) for k in list(sec.values)}
    sec.finish()
    try:
        EstimatorConfig.from_dict(fixed)
    except ConfigError as exc:
        raise SweepConfigError(f"estimator.{exc}") from None
    return fixed


def parse_params(sec: Section, fixed: dict[str, Any], base: EstimatorConfig) -> dict[str, ParamSpec]:
    """Read ``search.params``: each key an ``EstimatorConfig`` field not fixed in ``estimator``."""
    defaults = base.as_dict()
    params: dict[str, ParamSpec] = {}
    for name in list(sec.values):
        field = sec.field(str(name))
        if name not in defaults:
            raise fail(field, f"unknown hyperparameter (fields: {', '.join(defaults)})")
        if name in NOT_SEARCHABLE:
            raise fail(field, f"cannot be searched (fixed in estimator: {', '.join(NOT_SEARCHABLE)})")
        if name in fixed:
            raise fail(field, f"is also fixed in estimator.{name}; keep one")
        params[name] = _param(sec.section(name), name, type(defaults[name]))
    sec.finish()
    for name, spec in params.items():  # every extreme must make a valid estimator (log-SNR interplay below)
        if name == "architecture":
            bad = [c for c in spec.choices if c not in ARCHITECTURES]
            if bad:
                raise fail(sec.field(name), f"unknown architecture {bad[0]!r} (choose from {', '.join(ARCHITECTURES)})")
            continue
        for value in spec.extremes():
            try:
                EstimatorConfig.from_dict({**fixed, "architecture": "unified", name: value})
            except ConfigError as exc:
                raise fail(sec.field(name), str(exc)) from None

    def possible(name: str) -> list[Any]:
        return params[name].extremes() if name in params else [getattr(base, name)]

    for name, (parent, value) in CONDITIONS.items():
        if name in params and value not in possible(parent):
            raise fail(sec.field(name), f"is only used when {parent} is {value!r}, which no trial can have")
    if "moe" in possible("architecture"):  # the MoE threshold inside the log-SNR range of every trial
        loc, scale, clip = (possible(n) for n in ("logsnr_loc", "logsnr_scale", "logsnr_clip"))
        low = logsnr_bounds(max(loc), min(scale), min(clip))[0]
        high = logsnr_bounds(min(loc), min(scale), min(clip))[1]
        threshold = possible("snr_threshold")
        if min(threshold) <= low or max(threshold) >= high:
            raise fail(
                sec.field("snr_threshold") if "snr_threshold" in params else "estimator.snr_threshold",
                f"[{min(threshold):g}, {max(threshold):g}] must lie inside the log-SNR range every trial has "
                f"({low:g}, {high:g})",
            )
    return params


def _param(sec: Section, name: str, kind: type) -> ParamSpec:
    if "choices" in sec.values:
        choices = sec.take("choices", list, check=lambda v: None if v else "must not be empty")
        for value in choices:
            if not is_kind(value, kind):
                raise fail(sec.field("choices"), f"must hold values of type {kind.__name__}, got {value!r}")
        sec.finish()
        return ParamSpec(name, "choice", choices=tuple(float(c) if kind is float else c for c in choices))
    if kind not in (int, float):
        raise fail(sec.path, f"a {kind.__name__} hyperparameter needs choices: [...]")
    low, high = sec.take("low", kind), sec.take("high", kind)
    log = sec.take("log", bool, name in ("model_dim", "learning_rate"))
    sec.finish()
    if low > high:
        raise fail(sec.path, f"low ({low:g}) is above high ({high:g})")
    if log and low <= 0:
        raise fail(sec.field("low"), f"must be > 0 on a log scale, got {low:g}")
    return ParamSpec(name, kind.__name__, low, high, log)


def check_points(points: list, params: dict[str, ParamSpec], base: EstimatorConfig, field: str) -> None:
    """Seed points (e.g. the original's defaults) must be inside the space and consistent."""
    for i, point in enumerate(points):
        where = f"{field}[{i}]"
        if not isinstance(point, dict):
            raise fail(where, "must be a mapping of searched hyperparameters")
        for name, value in point.items():
            if name not in params:
                raise fail(f"{where}.{name}", "is not a searched hyperparameter (search.params)")
            if not params[name].contains(value):
                raise fail(f"{where}.{name}", f"must be {params[name].describe()}, got {value!r}")
        for name, (parent, wanted) in CONDITIONS.items():
            if name in point and point.get(parent, getattr(base, parent)) != wanted:
                raise fail(f"{where}.{name}", f"needs {parent}: {wanted!r} in the same point")
