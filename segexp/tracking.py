"""MLflow glue: store checks, params and tags, per-epoch metrics, images, the model."""

from __future__ import annotations

import base64
import os
import re
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, OmegaConf

from segexp.config import MASK, PROJECT_ROOT, as_params, is_secret_key, mask_secrets, redact
from segexp.errors import TrackingError

if TYPE_CHECKING:  # mlflow is imported where it is used: the store check runs without it
    from mlflow import MlflowClient

BATCH = 100  # MLflow's limit of params / tags per log_batch call.


def safe_tags(tags: dict[str, Any]) -> dict[str, str]:
    """Tags as strings, secrets masked (by key name and in URIs / ``key=value`` text)."""
    return {
        k: MASK if is_secret_key(k) else redact(str(v)) for k, v in tags.items() if v is not None
    }


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


def git_commit() -> str | None:
    """The current commit when the code runs from a git checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            timeout=5,
        )
        return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def log_params(client: MlflowClient, run_id: str, cfg: DictConfig) -> None:
    """Log every resolved config value as a dotted param, in batches of MLflow's limit."""
    from mlflow.entities import Param

    params = [Param(k, v) for k, v in sorted(as_params(cfg).items())]
    for i in range(0, len(params), BATCH):
        retry(client.log_batch, run_id, params=params[i : i + BATCH])


def log_tags(client: MlflowClient, run_id: str, tags: dict[str, Any]) -> None:
    from mlflow.entities import RunTag

    items = [RunTag(k, v) for k, v in safe_tags(tags).items()]
    for i in range(0, len(items), BATCH):
        retry(client.log_batch, run_id, tags=items[i : i + BATCH])


def log_metrics(
    client: MlflowClient, run_id: str, metrics: dict[str, float], step: int | None = None
) -> None:
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    items = [
        Metric(k, float(v), now, step or 0)
        for k, v in metrics.items()
        if v is not None and _is_number(v)
    ]
    for i in range(0, len(items), 1000):
        retry(client.log_batch, run_id, metrics=items[i : i + 1000])


def log_metrics_once(client: MlflowClient, run_id: str, metrics: dict[str, float]) -> int:
    """Log the (summary) metrics the run does not hold yet, so a resumed run never holds a
    summary twice; returns how many were logged."""
    have = set(retry(client.get_run, run_id).data.metrics)
    missing = {k: v for k, v in metrics.items() if k not in have}
    log_metrics(client, run_id, missing)
    return len(missing)


def _is_number(value: Any) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


def log_config(
    client: MlflowClient, run_id: str, cfg: DictConfig, overrides: Iterable[str]
) -> None:
    """The resolved config and the overrides, as YAML artifacts (secrets redacted)."""
    container = mask_secrets(OmegaConf.to_container(cfg, resolve=True))
    text = OmegaConf.to_yaml(OmegaConf.create(container))
    retry(client.log_text, run_id, text, "config.yaml")
    retry(
        client.log_text,
        run_id,
        OmegaConf.to_yaml(OmegaConf.create([redact(o) for o in overrides])),
        "overrides.yaml",
    )


def logged_model_uri(run_id: str, name: str = "model") -> str | None:
    """The URI of the run's complete (READY) logged model ``name``, if it has one."""
    import mlflow

    found = retry(
        mlflow.search_logged_models,
        filter_string=f"name = '{name}' AND source_run_id = '{run_id}'",
        output_format="list",
    )
    ready = [m for m in found if str(m.status) == "READY"]  # the filter cannot select status
    return ready[0].model_uri if ready else None


def log_model(
    model: Any,
    meta: dict[str, Any],
    registered_name: str | None = None,
    *,
    resumed_run: str | None = None,
) -> str:
    """Log the model in the Keras flavor (inference graph only, with ``meta`` for
    `segexp-predict`, see :func:`segexp.predict.store.log_model`) and optionally register it.

    ``resumed_run``: the run id of a resumed run; when it already holds a complete model (the
    crash came after the model was logged) that one is kept and nothing is logged twice."""
    import keras

    from segexp.predict.store import log_model as log_with_meta

    if resumed_run is not None:
        uri = logged_model_uri(resumed_run)
        if uri is not None:
            print(f"segexp: the run already holds its model ({uri}); not logged again", flush=True)
            if registered_name and not _registered(registered_name, resumed_run):
                from segexp.predict.store import register_model

                register_model(resumed_run, registered_name)
            return uri

    inference = keras.Model(model.inputs, model.outputs, name=model.name)
    requirements = [f"tensorflow=={_version('tensorflow')}", f"keras=={keras.__version__}"]
    info = log_with_meta(
        inference,
        meta,
        name="model",
        pip_requirements=requirements,
        registered_model_name=registered_name,
    )
    return info.model_uri


def _registered(name: str, run_id: str) -> bool:
    """Whether the registered model ``name`` has a version from run ``run_id``."""
    from mlflow import MlflowClient

    try:
        versions = retry(MlflowClient().search_model_versions, f"name = '{name}'")
    except Exception:  # noqa: BLE001 - no such registered model yet
        return False
    return any(v.run_id == run_id for v in versions)


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


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


def log_error(client: MlflowClient, run_id: str, err: BaseException, details: str) -> None:
    """Store a failure on the run: tag ``error`` (one line) and artifact ``error.txt``."""
    line = redact(f"{type(err).__name__}: {err}")[:5000]
    try:
        log_tags(client, run_id, {"error": line})
        retry(client.log_text, run_id, redact(details), "error.txt")
    except Exception as log_err:  # noqa: BLE001 - keep the original error visible
        warnings.warn(
            f"segexp: could not store the error on run {run_id}: {log_err}",
            RuntimeWarning,
            stacklevel=2,
        )


def logged_steps(client: MlflowClient, run_id: str, keys: Iterable[str]) -> dict[str, set[int]]:
    """For each metric key, the steps already logged to the run."""
    return {k: {m.step for m in retry(client.get_metric_history, run_id, k)} for k in keys}


def log_missing_epochs(
    client: MlflowClient, run_id: str, history: dict[str, list[float]], *, start: int = 1
) -> int:
    """Log the per-epoch values of ``history`` (epoch i at step start+i) that the run lacks.

    This makes per-epoch logging idempotent: whatever was logged before a crash is not logged
    again, whatever was lost is. Returns the number of values logged.
    """
    from mlflow.entities import Metric

    have = logged_steps(client, run_id, history)
    now = int(time.time() * 1000)
    items = [
        Metric(key, float(v), now, start + i)
        for key, values in history.items()
        for i, v in enumerate(values)
        if start + i not in have[key] and _is_number(v)
    ]
    for i in range(0, len(items), 1000):
        retry(client.log_batch, run_id, metrics=items[i : i + 1000])
    return len(items)


def logged_image_steps(client: MlflowClient, run_id: str, key: str = "predictions") -> set[int]:
    """Steps of the images logged with ``client.log_image(key=..., step=...)``."""
    steps: set[int] = set()
    for item in retry(client.list_artifacts, run_id, "images"):
        name = item.path.rsplit("/", 1)[-1]
        match = re.match(rf"{re.escape(key)}\+step\+(\d+)\+", name)
        if match:
            steps.add(int(match.group(1)))
    return steps
