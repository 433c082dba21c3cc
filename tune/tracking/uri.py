"""Where the MLflow store is: resolve the URI once, in the driver, and check it answers.

Trials run with their working directory set to the trial folder, so a relative URI would
scatter one store per trial: every URI leaves here absolute.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from urllib.parse import urlparse

DEFAULT_DB_NAME = "mlflow.db"


class TrackingUnavailable(RuntimeError):
    """The tracking store cannot be used; the message is one line naming the URI."""


def resolve_tracking_uri(explicit: str | None, config: Mapping | None, storage_dir: str | os.PathLike) -> str:
    """``explicit`` > ``config["tracking_uri"]`` > ``$MLFLOW_TRACKING_URI`` > sqlite in ``storage_dir``."""
    for candidate in (explicit, (config or {}).get("tracking_uri"), os.environ.get("MLFLOW_TRACKING_URI")):
        if candidate is not None and str(candidate).strip():
            return absolute_uri(str(candidate).strip())
    return sqlite_uri(local_folder(storage_dir) / DEFAULT_DB_NAME)


def local_folder(storage_dir: str | os.PathLike) -> Path:
    """The local folder for the default database and the journal.

    Sweep storage may be an object-store URI (``s3://...``); sqlite and the journal need a
    local disk, so they then live in the current directory.
    """
    text = str(storage_dir)
    return Path.cwd().resolve() if "://" in text else Path(text).expanduser().resolve()


def sqlite_uri(path: str | os.PathLike) -> str:
    return f"sqlite:///{Path(path).expanduser().resolve()}"


def absolute_uri(uri: str) -> str:
    """Make sqlite and file-store paths absolute; leave server URIs alone."""
    if uri.startswith("sqlite:///"):
        path = uri[len("sqlite:///") :]
        if path in ("", ":memory:"):
            raise TrackingUnavailable(f"tracking URI {uri!r}: an in-memory store is lost with its process")
        return sqlite_uri(path)
    if uri.startswith("sqlite:"):
        raise TrackingUnavailable(f"tracking URI {uri!r}: write sqlite URIs as sqlite:///<path>")
    scheme = urlparse(uri).scheme
    if scheme == "file":
        return Path(urlparse(uri).path).expanduser().resolve().as_uri()
    if scheme == "":
        return Path(uri).expanduser().resolve().as_uri()
    return uri


def artifact_root(uri: str) -> str | None:
    """Where a new experiment keeps its files: beside a sqlite database, not in the cwd.

    (MLflow's default for a database store is ``./mlruns`` of whichever directory the
    driver happens to run in.) Servers and file stores decide for themselves: None.
    """
    if uri.startswith("sqlite:///"):
        return (Path(uri[len("sqlite:///") :]).parent / "mlartifacts").as_uri()
    return None


def is_http(uri: str) -> bool:
    return urlparse(uri).scheme in ("http", "https")


@contextlib.contextmanager
def short_http_timeouts(uri: str, timeout_s: int = 10, retries: int = 1) -> Iterator[None]:
    """Bound how long an MLflow REST call may block (its defaults retry for minutes).

    Only for calls from the Tune driver loop, which must not stall while a server is down.
    """
    if not is_http(uri):
        yield
        return
    with bounded_http_requests(timeout_s, retries):
        yield


# What a replay or the end of a sweep may spend on one REST call (one immediate retry): MLflow's default
# (7 retries with back-off, 120 s timeouts) blocks about four minutes on a dead server.
REPLAY_TIMEOUT_S, REPLAY_RETRIES = 60, 1


@contextlib.contextmanager
def bounded_http_requests(timeout_s: int = REPLAY_TIMEOUT_S, retries: int = REPLAY_RETRIES) -> Iterator[None]:
    """Bound every MLflow REST call made meanwhile (a no-op for sqlite and file stores)."""
    overrides = {
        "MLFLOW_HTTP_REQUEST_TIMEOUT": str(timeout_s),
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": str(retries),
    }
    saved = {key: os.environ.get(key) for key in overrides}
    os.environ.update(overrides)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def artifacts_via(uri: str) -> Iterator[None]:
    """Let artifact uploads to an ``mlflow server`` find it.

    MLflow resolves the server's ``mlflow-artifacts:/`` URIs with the process-wide tracking
    URI rather than the client's, so for an http store it is set for the duration of the
    upload, then put back as it was (the global and ``$MLFLOW_TRACKING_URI`` both).
    """
    if not is_http(uri):
        yield
        return
    import mlflow

    was_set, previous = mlflow.is_tracking_uri_set(), mlflow.get_tracking_uri()
    saved_env = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(previous if was_set else None)
        if saved_env is not None:
            os.environ["MLFLOW_TRACKING_URI"] = saved_env


def check_reachable(uri: str) -> None:
    """Open the store (creating a sqlite file and its schema) or raise ``TrackingUnavailable``."""
    from mlflow import MlflowClient

    if uri.startswith("sqlite:///"):
        folder = Path(uri[len("sqlite:///") :]).parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise TrackingUnavailable(f"store {uri}: cannot create {folder}: {exc.strerror}") from None
        if not os.access(folder, os.W_OK):
            raise TrackingUnavailable(f"tracking store {uri}: folder {folder} is not writable") from None
    try:
        with short_http_timeouts(uri, timeout_s=5, retries=0):
            MlflowClient(uri).search_experiments(max_results=1)
    except Exception as exc:  # noqa: BLE001 - any failure means "cannot use this store"
        raise TrackingUnavailable(f"tracking store {uri} is unreachable: {one_line(exc)}") from None


def check_store_exists(uri: str) -> None:
    """For readers: a sqlite store must already exist (opening would create an empty one)."""
    if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///") :]).is_file():
        raise TrackingUnavailable(f"no MLflow database at {uri[len('sqlite:///') :]} (give --tracking-uri?)")
    check_reachable(uri)


def one_line(exc: BaseException, limit: int = 200) -> str:
    text = str(exc).strip().splitlines()
    line = text[0] if text else type(exc).__name__
    return line if len(line) <= limit else line[: limit - 1] + "…"
