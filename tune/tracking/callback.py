"""The Ray Tune callback that gives every trial a child run under the sweep's parent run.

Tune calls it in the driver process, never inside trials. It is pickled with the Tuner
(``tuner.pkl``) and used again by ``Tuner.restore``, so it holds only plain data and opens
its MLflow client lazily. It must never fail the sweep: a record the store does not take
goes to the journal (``tune.tracking.sync``) and is replayed once the store answers.
"""

from __future__ import annotations

import functools
import logging
import math
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ray.tune import Callback
from ray.tune.result import AUTO_RESULT_KEYS, TIME_TOTAL_S, TRAINING_ITERATION

from tune.summary import diverged
from tune.tracking.runs import SweepRuns, flatten_params, now_ms
from tune.tracking.sync import Journal, is_permanent, make_applier
from tune.tracking.uri import one_line, short_http_timeouts

log = logging.getLogger(__name__)

# Tune's bookkeeping is not a metric of the estimator (the wall time is kept).
SKIPPED_RESULT_KEYS = frozenset(AUTO_RESULT_KEYS) - {TIME_TOTAL_S} | {"done", "trial_id", "experiment_tag"}
ERROR_LINE = re.compile(r"^\s*([A-Za-z_][\w.]*(Error|Exception|Interrupt)\b.*)$")
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")


def result_metrics(result: dict[str, Any]) -> dict[str, float]:
    """The numbers a trial reported (NaN kept, infinities dropped), without Tune's bookkeeping."""
    return {
        key: float(value)
        for key, value in result.items()
        if key not in SKIPPED_RESULT_KEYS
        and isinstance(value, (int, float))
        and not isinstance(value, bool)
        and not (isinstance(value, float) and math.isinf(value))
    }


def error_text(trial: Any) -> tuple[str, str]:
    """(the exception line, the tail of the trace) from the trial's error file, if any."""
    path = getattr(trial, "error_file", None)
    text = ""
    if path and Path(path).exists():
        text = ANSI_ESCAPE.sub("", Path(path).read_text(encoding="utf-8", errors="replace"))
    lines = [line for line in text.splitlines() if line.strip()]
    matches = [m.group(1).strip() for line in lines if (m := ERROR_LINE.match(line))]
    headline = matches[-1] if matches else (lines[-1].strip() if lines else "trial failed (no error file)")
    return headline, text[-4000:]


def never_fails(hook: Callable[..., None]) -> Callable[..., None]:
    """A recording problem is logged; it never reaches Tune, which would end the sweep."""

    @functools.wraps(hook)
    def guarded(self: Any, *args: Any, **kwargs: Any) -> None:
        try:
            hook(self, *args, **kwargs)
        except Exception:  # noqa: BLE001
            log.exception("MLflow recording (%s) failed; the sweep goes on", hook.__name__)

    return guarded


class TrialRunCallback(Callback):
    """One MLflow child run per Tune trial: params, per-report metrics, final status.

    ``max_iterations`` is how many reports a trial makes when nothing stops it; a trial
    that completes with fewer was stopped by the scheduler (``stopped_early``).
    """

    def __init__(
        self,
        sweep: SweepRuns,
        journal_path: str,
        max_iterations: int | None = None,
        retry_after_s: float = 30.0,
    ) -> None:
        self.sweep = sweep
        self.journal_path = str(journal_path)
        self.max_iterations = max_iterations
        self.retry_after_s = retry_after_s
        self._apply: Callable[[dict[str, Any]], None] | None = None
        self._offline_until = 0.0

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_apply"] = None
        state["_offline_until"] = 0.0
        return state

    # -- Tune hooks --------------------------------------------------------------------------
    @never_fails
    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._submit(self._record("trial_start", trial, params=flatten_params(trial.config or {})))

    @never_fails
    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        step = int(result.get(TRAINING_ITERATION, 0))
        self._submit(self._record("trial_result", trial, step=step, metrics=result_metrics(result)))

    @never_fails
    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        last = trial.last_result or {}
        done = int(last.get(TRAINING_ITERATION, 0))
        if diverged(last):  # ended by its trainable without a retry: a failure all the same
            reason = str(last.get("failure", "training diverged"))
            fields = dict(status="failed", error=reason, error_detail=reason, iterations=done)
            self._submit(self._record("trial_end", trial, **fields))
            return
        stopped = self.max_iterations is not None and done < self.max_iterations
        status = "stopped_early" if stopped else "finished"
        self._submit(self._record("trial_end", trial, status=status, iterations=done))

    @never_fails
    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        headline, detail = error_text(trial)
        done = int((trial.last_result or {}).get(TRAINING_ITERATION, 0))
        fields = dict(status="failed", error=headline, error_detail=detail, iterations=done)
        self._submit(self._record("trial_end", trial, **fields))

    @never_fails
    def on_experiment_end(self, trials: list, **info: Any) -> None:
        self.flush()

    # -- records -----------------------------------------------------------------------------
    def _record(self, op: str, trial: Any, **fields: Any) -> dict[str, Any]:
        return {
            "op": op,
            **self.sweep.as_dict(),
            "trial_id": str(trial.trial_id),
            "trial_name": str(trial),
            "time": now_ms(),
            **fields,
        }

    @property
    def apply(self) -> Callable[[dict[str, Any]], None]:
        """Writes one record (of any kind) to the store; opened lazily, after unpickling too."""
        if self._apply is None:
            self._apply = make_applier()
        return self._apply

    def flush(self) -> bool:
        """Replay the journal if one waits; True when nothing is left in it."""
        journal = Journal(self.journal_path)
        if not journal.pending():
            return True
        if time.monotonic() < self._offline_until:
            return False
        try:
            with short_http_timeouts(self.sweep.tracking_uri):
                count = journal.replay(self.apply)
            log.warning("MLflow is back: %d journaled records replayed", count)
            return True
        except Exception as exc:  # noqa: BLE001 - the sweep goes on whatever the store does
            self._go_offline(exc)
            return False

    def _submit(self, record: dict[str, Any]) -> None:
        """Apply now, or journal it: the journal keeps the order once anything is queued."""
        try:
            if self.flush() and time.monotonic() >= self._offline_until:
                with short_http_timeouts(self.sweep.tracking_uri):
                    self.apply(record)
                return
        except Exception as exc:  # noqa: BLE001
            if is_permanent(exc):
                log.warning("MLflow refused %s of %s: %s", record["op"], record["trial_id"], one_line(exc))
                return
            self._go_offline(exc)
        try:
            Journal(self.journal_path).append(record)
        except OSError as exc:
            log.error("MLflow record of trial %s lost: journal not writable: %s", record["trial_id"], exc)

    def _go_offline(self, exc: BaseException) -> None:
        if time.monotonic() >= self._offline_until:
            log.warning(
                "MLflow store %s unavailable (%s); journaling to %s, retry in %.0f s",
                self.sweep.tracking_uri,
                one_line(exc),
                self.journal_path,
                self.retry_after_s,
            )
        self._offline_until = time.monotonic() + self.retry_after_s
        self._apply = None  # a fresh client (and connection) on the next attempt
