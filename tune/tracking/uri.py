"""Where the MLflow store is: resolved once, in the driver, absolute (trials run in their own folders)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from urllib.parse import urlparse

from dmi.errors import TrackingUnavailable

SQLITE = "sqlite:///"


def resolve_tracking_uri(explicit: str | None, config: Mapping | None, storage_dir: str | os.PathLike) -> str:
    """``explicit`` > ``config["tracking_uri"]`` > ``$MLFLOW_TRACKING_URI`` > sqlite in ``storage_dir``."""
    for candidate in (explicit, (config or {}).get("tracking_uri"), os.environ.get("MLFLOW_TRACKING_URI")):
        if candidate is not None and str(candidate).strip():
            return absolute_uri(str(candidate).strip())
    return sqlite_uri(local_folder(storage_dir) / "mlflow.db")


def local_folder(storage_dir: str | os.PathLike) -> Path:
    """The local folder for the default database and the journal (the cwd for object-store storage)."""
    text = str(storage_dir)
    return Path.cwd().resolve() if "://" in text else Path(text).expanduser().resolve()


def sqlite_uri(path: str | os.PathLike) -> str:
    return f"{SQLITE}{Path(path).expanduser().resolve()}"


def absolute_uri(uri: str) -> str:
    """Make sqlite and file-store paths absolute; leave server URIs alone."""
    if uri.startswith(SQLITE):
        if uri.removeprefix(SQLITE) in ("", ":memory:"):
            raise TrackingUnavailable(f"tracking URI {uri!r}: an in-memory store is lost with its process")
        return sqlite_uri(uri.removeprefix(SQLITE))
    if uri.startswith("sqlite:"):
        raise TrackingUnavailable(f"tracking URI {uri!r}: write sqlite URIs as sqlite:///<path>")
    scheme = urlparse(uri).scheme
    if scheme == "file":
        return Path(urlparse(uri).path).expanduser().resolve().as_uri()
    return Path(uri).expanduser().resolve().as_uri() if scheme == "" else uri


def artifact_root(uri: str) -> str | None:
    """Artifacts beside a sqlite database (MLflow's default is ``./mlruns`` of the cwd); None: the store decides."""
    return (Path(uri.removeprefix(SQLITE)).parent / "mlartifacts").as_uri() if uri.startswith(SQLITE) else None


def is_http(uri: str) -> bool:
    return urlparse(uri).scheme in ("http", "https")


@contextlib.contextmanager
def bounded_http_requests(timeout_s: int = 60, retries: int = 1) -> Iterator[None]:
    """Bound every MLflow REST call made meanwhile: MLflow's defaults block minutes on a dead server."""
    overrides = {"MLFLOW_HTTP_REQUEST_TIMEOUT": str(timeout_s), "MLFLOW_HTTP_REQUEST_MAX_RETRIES": str(retries)}
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
    """Set the process-wide tracking URI meanwhile: MLflow resolves a server's artifact URIs with it."""
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

    if uri.startswith(SQLITE):
        folder = Path(uri.removeprefix(SQLITE)).parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise TrackingUnavailable(f"store {uri}: cannot create {folder}: {exc.strerror}") from None
        if not os.access(folder, os.W_OK):
            raise TrackingUnavailable(f"tracking store {uri}: folder {folder} is not writable") from None
    try:
        with bounded_http_requests(timeout_s=5, retries=0):
            MlflowClient(uri).search_experiments(max_results=1)
    except Exception as exc:  # noqa: BLE001 - any failure means "cannot use this store"
        raise TrackingUnavailable(f"tracking store {uri} is unreachable: {one_line(exc)}") from None


def check_store_exists(uri: str) -> None:
    """For readers: a sqlite store must already exist (opening would create an empty one)."""
    if uri.startswith(SQLITE) and not Path(uri.removeprefix(SQLITE)).is_file():
        raise TrackingUnavailable(f"no MLflow database at {uri.removeprefix(SQLITE)} (give --tracking-uri?)")
    check_reachable(uri)


def one_line(exc: BaseException, limit: int = 200) -> str:
    text = str(exc).strip().splitlines()
    line = text[0] if text else type(exc).__name__
    return line if len(line) <= limit else line[: limit - 1] + "…"
