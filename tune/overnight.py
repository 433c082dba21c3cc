"""Sweeps that run every night: one experiment per night, one Optuna study across nights.

Naming: ``dmi-tune run CONFIG --nightly`` names the experiment ``{name}-{YYYY-MM-DD}`` after
the evening the night began. The day turns at noon, so a run started at 22:00 and the same
command run again at 03:00 (to resume after a crash) name the same experiment.

Knowledge across nights: with ``search.optuna_storage`` (an SQLAlchemy URL: sqlite or
Postgres) and ``search.study_name``, every night's searcher loads the same Optuna study and
adds its trials to it. A night that finds the study already holding trials skips
``points_to_evaluate`` (evaluated on an earlier night) and offsets the sampler's seed by
that count, so it does not draw the same random start-up points as the night before. In a
sweep over several tasks each task has its own study, ``{study_name}-{task}``.

Exit codes a scheduler acts on (``dmi-tune run``): 0 done, 1 failed (no trial produced a
result), 2 bad config (nothing ran), 3 the time budget ended the search (results recorded),
130 interrupted (the same command resumes).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from tune.schema import SweepConfigError

DAY_TURNS_AT_HOUR = 12


def now() -> dt.datetime:
    """Local wall-clock time (a function, so that tests can move the clock)."""
    return dt.datetime.now()


def night_of(when: dt.datetime | None = None) -> dt.date:
    """The date of the evening the night began: before noon counts as the night before."""
    return ((when or now()) - dt.timedelta(hours=DAY_TURNS_AT_HOUR)).date()


def nightly_name(name: str, when: dt.datetime | None = None) -> str:
    return f"{name}-{night_of(when).isoformat()}"


def open_study_storage(url: str):
    """The Optuna RDB storage at ``url`` (tables created if new); bad input is a config error."""
    import optuna

    try:
        return optuna.storages.RDBStorage(url)
    except Exception as exc:  # noqa: BLE001 - bad URL, missing driver, unreachable database
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SweepConfigError(f"search.optuna_storage: cannot open {url!r} ({first})") from None


def earlier_trials(storage, study_name: str) -> int:
    """Trials earlier nights left in the study, whatever their state (0 if there is no such study)."""
    try:
        study_id = storage.get_study_id_from_name(study_name)
    except KeyError:
        return 0
    return len(storage.get_all_trials(study_id, deepcopy=False))


@dataclass(frozen=True)
class SearcherSettings:
    """What the Optuna searcher of one experiment is given beyond the search space."""

    storage: Any
    study_name: str | None
    seed: int | None
    points_to_evaluate: list[dict[str, Any]] | None
    earlier_trials: int = 0


def searcher_settings(search, task_label: str | None) -> SearcherSettings:
    """Storage, study, seed and seed points for ``search`` (a ``SearchConfig``).

    ``task_label`` is set in a sweep over several tasks: each task gets its own study.
    """
    points = [dict(p) for p in search.points_to_evaluate] or None
    if not search.optuna_storage:
        return SearcherSettings(None, search.study_name, search.seed, points)
    storage = open_study_storage(search.optuna_storage)
    study_name = search.study_name if task_label is None else f"{search.study_name}-{task_label}"
    earlier = earlier_trials(storage, study_name)
    if earlier:
        seed = None if search.seed is None else search.seed + earlier
        return SearcherSettings(storage, study_name, seed, None, earlier)
    return SearcherSettings(storage, study_name, search.seed, points)
