"""Every error the project raises for input it refuses, and the exit codes of its commands.

This module imports nothing from ``dmi`` or ``tune``, so any layer can import it without a cycle.
A ``DMIError`` is bad input: the command line prints its first line and exits with
``EXIT_BAD_INPUT``. Anything else escaping a command is a bug and keeps its traceback.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1  # training diverged, or a sweep's trials failed
EXIT_BAD_INPUT = 2
EXIT_TIME_BUDGET = 3  # a sweep's time budget ended it with its results recorded
EXIT_INTERRUPTED = 130


class DMIError(Exception):
    """Input the project refuses; the message names the problem in one line."""


class UsageError(DMIError):
    """A command-line request that cannot be carried out (a missing file, a bad option value)."""


class ConfigError(DMIError, ValueError):
    """A hyperparameter value that cannot work; the message names the field."""


class SweepConfigError(ConfigError):
    """A sweep configuration that cannot run; the message starts with the dotted field name."""


class DataError(DMIError, ValueError):
    """A sample that cannot be used (NaN, wrong shape, too few rows, a constant column)."""


class TrackingUnavailable(DMIError, RuntimeError):
    """The MLflow store cannot be used; the message names the URI."""


class SweepNotFound(DMIError, LookupError):
    """No sweep of that name in the folder or the tracking store."""


class EstimateWarning(UserWarning):
    """A sign that an MI estimate is unreliable: the forms disagree, held-out NLL rose, MI < 0."""


def first_line(exc: BaseException) -> str:
    """The message of ``exc`` as one line (its class name when it has none)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
