"""The MLflow store: credentials, store checks, retried client calls, experiments, run status."""

from __future__ import annotations

import base64
import os
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from segexp.config import redact
from segexp.errors import TrackingError

if TYPE_CHECKING:  # mlflow is imported where it is used: the store check runs without it
    from mlflow import MlflowClient


USER_ENV, PASSWORD_ENV = "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"


def credentials_to_env(uri: str) -> str:
    """``http://user:pw@host`` -> ``http://host``, the credentials moved to MLflow's
    ``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD`` (so no URI that MLflow prints
    or segexp saves carries them); other URIs are returned unchanged."""
    if not uri.startswith(("http://", "https://")):
        return uri
    parts = urllib.parse.urlsplit(uri)
    if not parts.username:
        return uri
    os.environ[USER_ENV] = urllib.parse.unquote(parts.username)
    if parts.password is not None:
        os.environ[PASSWORD_ENV] = urllib.parse.unquote(parts.password)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def _split_userinfo(url: str) -> tuple[str, dict[str, str]]:
    """``http://user:pw@host/x`` -> (``http://host/x``, Basic auth header); without
    credentials in the URL, the header comes from ``MLFLOW_TRACKING_USERNAME/PASSWORD``."""
    parts = urllib.parse.urlsplit(url)
    if not parts.username:
        user, password = os.environ.get(USER_ENV), os.environ.get(PASSWORD_ENV)
        if not user:
            return url, {}
        token = f"{user}:{password or ''}"
        return url, {"Authorization": "Basic " + base64.b64encode(token.encode()).decode()}
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    token = f"{urllib.parse.unquote(parts.username)}:{urllib.parse.unquote(parts.password or '')}"
    header = {"Authorization": "Basic " + base64.b64encode(token.encode()).decode()}
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc)), header


# Tracking URIs MLflow accepts that are not paths even though they lack "://".
URI_SCHEMES_WITHOUT_SLASHES = ("databricks", "databricks-uc", "uc")


def check_store(uri: str, timeout: float = 5.0) -> None:
    """Fail early, with one line, when the tracking store cannot be used."""
    if uri.startswith(("http://", "https://")):
        url, auth = _split_userinfo(uri.rstrip("/") + "/health")
        try:
            request = urllib.request.Request(url, headers=auth)  # noqa: S310
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
                if response.status != 200:
                    raise TrackingError(
                        f"tracking.uri={redact(uri)}: /health answered "
                        f"{response.status}, expected 200"
                    )
        except (urllib.error.URLError, OSError) as err:
            reason = getattr(err, "reason", err)
            raise TrackingError(
                f"tracking.uri={redact(uri)}: MLflow server not reachable ({reason}); start it "
                "with `mlflow server --host 127.0.0.1` or use a sqlite:/// URI"
            ) from None
    elif uri.startswith("sqlite:///"):
        path = Path(uri.removeprefix("sqlite:///"))
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            init_sqlite(uri, path)
        except TrackingError:
            raise
        except Exception as err:  # noqa: BLE001 - a directory, a corrupt file, no permission
            raise TrackingError(
                f"tracking.uri={uri}: cannot open the SQLite store ({type(err).__name__}: "
                f"{str(err).splitlines()[0] if str(err) else ''})"
            ) from None
    elif uri.startswith("file:") or ("://" not in uri and uri not in URI_SCHEMES_WITHOUT_SLASHES):
        raise TrackingError(
            f"tracking.uri={uri}: MLflow 3 needs a database store, e.g. sqlite:///mlflow.db"
        )


def init_sqlite(uri: str, path: Path) -> None:
    """Create/upgrade the SQLite schema under an inter-process lock.

    MLflow runs its schema migrations when a process first opens a store; several processes
    doing that at once on a fresh file (a joblib sweep) fail with alembic errors ("expected to
    match one row ... 0 found"). Writes after that are serialised by SQLite's lock and MLflow's
    ``PRAGMA busy_timeout = 20000`` (20 s) per session, plus :func:`retry`.
    """
    import fcntl

    from mlflow import MlflowClient

    # The lock is taken on the store's directory, so no lock file is left beside the store.
    lock = os.open(path.parent, os.O_RDONLY)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        retry(MlflowClient(uri).search_experiments, max_results=1)
    finally:
        fcntl.flock(lock, fcntl.LOCK_UN)
        os.close(lock)


EXPERIMENT_TAGS = {"mlflow.experimentKind": "custom_model_development"}


def retry(fn: Callable, *args: Any, attempts: int = 4, delay: float = 0.5, **kwargs: Any) -> Any:
    """Call an MLflow client function, retrying transient failures with back-off."""
    for attempt in range(attempts):
        try:
            return fn(*args, **kwargs)
        except Exception as err:  # noqa: BLE001 - any store hiccup is retried
            if attempt == attempts - 1:
                raise
            name = getattr(fn, "__name__", "call")
            print(
                f"segexp: MLflow call {name} failed ({redact(str(err))[:300]}); retrying",
                flush=True,
            )
            time.sleep(delay * 2**attempt)
    return None


def get_or_create_experiment(client: MlflowClient, name: str) -> str:
    """The id of experiment ``name``, created if missing, carrying segexp's experiment tags;
    safe when processes race to create it.

    ``mlflow.set_experiment`` is not: with several processes creating a new experiment at once,
    a loser can return without an active experiment and its run lands in ``Default``. Here a
    lost race (the name already exists) reads the winner's experiment. A deleted experiment of
    that name is an error, since MLflow keeps its name reserved.
    ``mlflow.experimentKind=custom_model_development`` is MLflow 3's kind for model training
    (the UI's model-training view; which view a browser opens is its workflow switch). An
    existing experiment without the tag gets it the first time segexp uses it; a kind the user
    set is left alone.
    """
    from mlflow.exceptions import MlflowException

    for _ in range(3):
        experiment = retry(client.get_experiment_by_name, name)
        if experiment is not None:
            if experiment.lifecycle_stage == "deleted":
                raise TrackingError(
                    f"tracking.experiment={name!r} is deleted in the store; restore it or "
                    "choose another tracking.experiment"
                )
            for key, value in EXPERIMENT_TAGS.items():
                if key not in experiment.tags:
                    retry(client.set_experiment_tag, experiment.experiment_id, key, value)
            return experiment.experiment_id
        try:
            return client.create_experiment(name, tags=EXPERIMENT_TAGS)
        except MlflowException as err:
            if "RESOURCE_ALREADY_EXISTS" not in str(err.error_code) and "already exists" not in (
                str(err)
            ):
                raise
    raise TrackingError(f"tracking.experiment={name!r}: could not be created nor found")


def set_status(client: MlflowClient, run_id: str, status: str) -> None:
    """End the run with ``status`` (FINISHED, FAILED or KILLED), retried; never raises."""
    try:
        retry(client.set_terminated, run_id, status)
    except Exception as err:  # noqa: BLE001
        warnings.warn(
            f"segexp: could not mark MLflow run {run_id} {status}: {redact(str(err))}",
            RuntimeWarning,
            stacklevel=2,
        )


def client_for(uri: str) -> MlflowClient:
    """A client for ``uri``, which also becomes the fluent API's tracking URI."""
    import mlflow
    from mlflow import MlflowClient

    mlflow.set_tracking_uri(uri)
    return MlflowClient(tracking_uri=uri)


def retry_patiently(fn: Callable, *args: Any, **kwargs: Any) -> Any:
    """:func:`retry` with 6 attempts: a sweep's own calls, which its jobs' writes contend with."""
    return retry(fn, *args, attempts=6, **kwargs)
