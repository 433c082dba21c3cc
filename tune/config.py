"""The sweep's YAML file: its schema, read and checked in full before anything starts.

    name            experiment name (letters, digits, _ . -); required
    description     free text
    objective       a label-free objective of tune.objectives (default: DEFAULT_OBJECTIVE there),
                    val_loss among them | abs_error (benchmark tasks only)
    data            task_type, dim, strength          one benchmark task, or
                    tasks: [{task_type, dim, strength}, ...]   one experiment per task, or
                    path (.npz: x_key/y_key; .csv/.parquet: x_columns/y_columns),
                      val_fraction, test_fraction       a data file (path relative to the YAML file)
                    n_train, n_val, n_test (tasks), seed
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
    compare_defaults  also train the library defaults under the fixed estimator settings (what
                    the search does not touch) on the same rows, and report their estimate
                    beside the pick's (default: true for benchmark tasks)

Every error is a ``SweepConfigError`` whose message starts with the dotted field name.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from dmi.config import ConfigError, EstimatorConfig
from dmi.tasks import TaskSpec
from tune.objectives import CANDIDATES, DEFAULT_OBJECTIVE
from tune.schema import Section, SweepConfigError, at_least, fail, fraction, one_of, positive
from tune.space import ParamSpec, check_points, parse_params

OBJECTIVES = (*CANDIDATES, "abs_error")
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")

__all__ = ["SweepConfig", "SweepConfigError", "load_config", "parse_config"]


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


@dataclass(frozen=True)
class SearchConfig:
    num_samples: int
    seed: int | None
    params: dict[str, ParamSpec]
    points_to_evaluate: tuple[dict[str, Any], ...] = ()
    optuna_storage: str | None = None
    study_name: str | None = None


@dataclass(frozen=True)
class SchedulerConfig:
    """ASHA in units of reports: one report per ``trials.val_every_n_steps`` training steps."""

    kind: str
    grace_period: int
    reduction_factor: float
    max_t: int


@dataclass(frozen=True)
class TrialsConfig:
    val_every_n_steps: int
    cpu: float
    gpu: float
    max_concurrent_trials: int | None
    max_failures: int
    num_to_keep: int
    reuse_actors: bool


@dataclass(frozen=True)
class RayConfig:
    address: str | None
    num_cpus: int | None
    num_gpus: int | None
    object_store_mb: int


@dataclass(frozen=True)
class SweepConfig:
    name: str
    objective: str
    data: DataConfig
    estimator: dict[str, Any]
    search: SearchConfig
    scheduler: SchedulerConfig
    trials: TrialsConfig
    ray: RayConfig
    description: str = ""
    time_budget_s: float | None = None
    final_n_logsnr: int = 64
    storage: str | None = None
    tracking: bool = True
    tracking_uri: str | None = None
    model_name: str | None = None
    compare_defaults: bool = False
    source: str | None = field(default=None, compare=False)

    def base_estimator(self) -> EstimatorConfig:
        """The fixed hyperparameters over the library defaults (what no trial samples)."""
        return EstimatorConfig.from_dict(self.estimator)

    def as_dict(self) -> dict[str, Any]:
        """Plain values only (for JSON, MLflow and the summary)."""
        return _plain(dataclasses.asdict(self))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


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
        raise fail(
            "objective",
            "abs_error needs a benchmark task (data.task_type); the truth of a data file is unknown",
        )
    estimator = parse_estimator(top.section("estimator"))
    base = EstimatorConfig.from_dict(estimator)
    search = parse_search(top.section("search"), estimator, base)
    trials = parse_trials(top.section("trials"), base)
    scheduler = parse_scheduler(top.section("scheduler"), base, trials)
    config = SweepConfig(
        name=name,
        objective=objective,
        data=data,
        estimator=estimator,
        search=search,
        scheduler=scheduler,
        trials=trials,
        ray=parse_ray(top.section("ray")),
        description=top.take("description", str, ""),
        time_budget_s=top.take("time_budget_s", (float, type(None)), None, positive),
        final_n_logsnr=top.take("final_n_logsnr", int, 64, at_least(1)),
        storage=top.take("storage", (str, type(None)), None),
        tracking=top.take("tracking", bool, True),
        tracking_uri=top.take("tracking_uri", (str, type(None)), None),
        model_name=top.take("model_name", (str, type(None)), None),
        compare_defaults=top.take("compare_defaults", bool, data.is_benchmark),
    )
    top.finish()
    return config


def parse_data(sec: Section, base_dir: Path) -> DataConfig:
    kinds = [k for k in ("task_type", "tasks", "path") if sec.has(k)]
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
        columns = suffix != ".npz"
        data = DataConfig(
            path=str(path),
            x_key=sec.take("x_key", str, "x"),
            y_key=sec.take("y_key", str, "y"),
            x_columns=tuple(sec.take("x_columns", list, [], _strings)),
            y_columns=tuple(sec.take("y_columns", list, [], _strings)),
            val_fraction=sec.take("val_fraction", float, 0.1, fraction),
            test_fraction=sec.take("test_fraction", float, 0.1, fraction),
            seed=seed,
        )
        if data.val_fraction + data.test_fraction >= 1:
            raise fail(sec.field("test_fraction"), "val_fraction + test_fraction must be < 1")
        if columns and (not data.x_columns or not data.y_columns):
            raise fail(
                sec.field("x_columns" if not data.x_columns else "y_columns"),
                f"is required for {suffix} files",
            )
    else:
        if kinds[0] == "task_type":
            specs = [_task(sec, sec.path)]
        else:
            entries = sec.take("tasks", list, check=lambda v: None if v else "must not be empty")
            specs = [_task(Section(entry, f"{sec.field('tasks')}[{i}]"), None) for i, entry in enumerate(entries)]
            names = [s.name for s in specs]
            if len(set(names)) != len(names):
                raise fail(sec.field("tasks"), "lists the same task twice")
        data = DataConfig(
            tasks=tuple(specs),
            n_train=sec.take("n_train", int, check=at_least(2)),
            n_val=sec.take("n_val", int, check=at_least(2)),
            n_test=sec.take("n_test", int, check=at_least(2)),
            seed=seed,
        )
    sec.finish()
    return data


def _strings(value: list) -> str | None:
    return None if all(isinstance(v, str) for v in value) else "must be a list of column names"


def _task(sec: Section, shared_path: str | None) -> TaskSpec:
    """One task; inside a ``tasks`` list each entry is its own mapping and must be complete."""
    task_type = sec.take("task_type", str)
    dim = sec.take("dim", int)
    strength = sec.take("strength", float)
    try:
        spec = TaskSpec(task_type, dim, strength)
    except ValueError as exc:
        raise fail(sec.path if shared_path is None else sec.field("task_type"), str(exc)) from None
    if shared_path is None:
        sec.finish()
    return spec


def parse_estimator(sec: Section) -> dict[str, Any]:
    """Fixed hyperparameters: each a field of ``EstimatorConfig`` with the type of its default."""
    defaults = EstimatorConfig().as_dict()
    unknown = sorted(str(k) for k in sec.values if k not in defaults)
    if unknown:
        raise fail(sec.field(unknown[0]), f"unknown hyperparameter (fields: {', '.join(defaults)})")
    fixed: dict[str, Any] = {}
    for key in list(sec.values):
        kind = type(defaults[key])
        fixed[key] = sec.take(key, float if kind is float else kind)
    sec.finish()
    try:
        EstimatorConfig.from_dict(fixed)
    except ConfigError as exc:
        raise SweepConfigError(f"estimator.{exc}") from None
    return fixed


def parse_search(sec: Section, fixed: dict[str, Any], base: EstimatorConfig) -> SearchConfig:
    params = parse_params(sec.section("params"), fixed, base)
    points = sec.take("points_to_evaluate", list, [])
    check_points(points, params, base, sec.field("points_to_evaluate"))
    search = SearchConfig(
        num_samples=sec.take("num_samples", int, 8, at_least(1)),
        seed=sec.take("seed", (int, type(None)), 0),
        params=params,
        points_to_evaluate=tuple(dict(p) for p in points),
        optuna_storage=sec.take("optuna_storage", (str, type(None)), None),
        study_name=sec.take("study_name", (str, type(None)), None),
    )
    if search.optuna_storage and not search.study_name:
        raise fail(sec.field("study_name"), "is required with optuna_storage (the study carried between sweeps)")
    sec.finish()
    return search


def parse_trials(sec: Section, base: EstimatorConfig) -> TrialsConfig:
    default_every = max(base.max_steps // 10, 1)
    resources = sec.section("resources")
    trials = TrialsConfig(
        val_every_n_steps=sec.take("val_every_n_steps", int, default_every, at_least(1)),
        cpu=resources.take("cpu", float, 1.0, positive),
        gpu=resources.take("gpu", float, 0.0, at_least(0)),
        max_concurrent_trials=sec.take("max_concurrent_trials", (int, type(None)), None, at_least(1)),
        max_failures=sec.take("max_failures", int, 0, at_least(0)),
        num_to_keep=sec.take("num_to_keep", int, 2, at_least(1)),
        reuse_actors=sec.take("reuse_actors", bool, True),
    )
    resources.finish()
    sec.finish()
    if base.max_steps % trials.val_every_n_steps:
        raise fail(
            sec.field("val_every_n_steps"),
            f"must divide estimator.max_steps ({base.max_steps}) so that the last step is reported, "
            f"got {trials.val_every_n_steps}",
        )
    if trials.gpu > 1 and not float(trials.gpu).is_integer():
        raise fail(resources.field("gpu"), "a fraction must be below 1; above 1, whole GPUs")
    return trials


def parse_scheduler(sec: Section, base: EstimatorConfig, trials: TrialsConfig) -> SchedulerConfig:
    max_t = base.max_steps // trials.val_every_n_steps
    scheduler = SchedulerConfig(
        kind=sec.take("type", str, "asha", one_of("asha", "fifo")),
        grace_period=sec.take("grace_period", int, 1, at_least(1)),
        reduction_factor=sec.take("reduction_factor", float, 2.0, lambda v: None if v > 1 else "must be > 1"),
        max_t=max_t,
    )
    sec.finish()
    if scheduler.kind == "asha" and scheduler.grace_period > max_t:
        raise fail(
            sec.field("grace_period"),
            f"exceeds the {max_t} reports a trial makes (max_steps / val_every_n_steps)",
        )
    return scheduler


def parse_ray(sec: Section) -> RayConfig:
    ray = RayConfig(
        address=sec.take("address", (str, type(None)), None),
        num_cpus=sec.take("num_cpus", (int, type(None)), None, at_least(1)),
        num_gpus=sec.take("num_gpus", (int, type(None)), None, at_least(0)),
        object_store_mb=sec.take("object_store_mb", int, 512, at_least(80)),
    )
    sec.finish()
    return ray
