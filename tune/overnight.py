"""Sweeps that run every night: one experiment per night (``--nightly``), one Optuna study across nights.

With ``search.optuna_storage`` every night adds its trials to one study (per task: ``{study_name}-{task}``);
a night that finds earlier trials skips ``points_to_evaluate`` and offsets the seed, not to redraw them.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from dmi.errors import SweepConfigError, first_line

DAY_TURNS_AT_HOUR = 12


def now() -> dt.datetime:
    """Local wall-clock time (a function, so that tests can move the clock)."""
    return dt.datetime.now()


def night_of(when: dt.datetime | None = None) -> dt.date:
    """The date of the evening the night began: before noon counts as the night before (03:00 resumes 22:00)."""
    return ((when or now()) - dt.timedelta(hours=DAY_TURNS_AT_HOUR)).date()


def nightly_name(name: str, when: dt.datetime | None = None) -> str:
    return f"{name}-{night_of(when).isoformat()}"


def open_study_storage(url: str) -> Any:
    """The Optuna RDB storage at ``url`` (tables created if new); bad input is a config error."""
    import optuna

    try:
        return optuna.storages.RDBStorage(url)
    except Exception as exc:  # noqa: BLE001 - bad URL, missing driver, unreachable database
        raise SweepConfigError(f"search.optuna_storage: cannot open {url!r} ({first_line(exc)})") from None


def study_settings(search: Any, task_label: str | None) -> tuple[dict[str, Any], int]:
    """The Optuna searcher's storage, study, seed and seed points for ``search``; and the study's earlier trials."""
    points = [dict(p) for p in search.points_to_evaluate] or None
    settings = {"storage": None, "study_name": search.study_name, "seed": search.seed, "points_to_evaluate": points}
    if not search.optuna_storage:
        return settings, 0
    storage = open_study_storage(search.optuna_storage)
    study_name = search.study_name if task_label is None else f"{search.study_name}-{task_label}"
    try:
        earlier = len(storage.get_all_trials(storage.get_study_id_from_name(study_name), deepcopy=False))
    except KeyError:  # no such study yet
        earlier = 0
    settings.update(storage=storage, study_name=study_name)
    if earlier:
        settings.update(seed=None if search.seed is None else search.seed + earlier, points_to_evaluate=None)
    return settings, earlier
