"""MLflow glue: store checks, params and tags, per-epoch metrics, images, the model."""

from __future__ import annotations

import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import mlflow
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag
from omegaconf import DictConfig, OmegaConf

from segexp.config import PROJECT_ROOT, as_params, redact
from segexp.errors import TrackingError

BATCH = 100  # MLflow's limit of params / tags per log_batch call.


def check_store(uri: str, timeout: float = 5.0) -> None:
    """Fail early, with one line, when the tracking store cannot be used."""
    if uri.startswith(("http://", "https://")):
        url = uri.rstrip("/") + "/health"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310
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
        if not path.parent.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
    elif uri.startswith("file:") or "://" not in uri:
        raise TrackingError(
            f"tracking.uri={uri}: MLflow 3 needs a database store, e.g. sqlite:///mlflow.db"
        )


def retry(fn: Callable, *args: Any, attempts: int = 4, delay: float = 0.5, **kwargs: Any) -> Any:
    """Call an MLflow client function, retrying transient failures with back-off."""
    for attempt in range(attempts):
        try:
            return fn(*args, **kwargs)
        except Exception as err:  # noqa: BLE001 - any store hiccup is retried
            if attempt == attempts - 1:
                raise
            print(f"segexp: MLflow call {fn.__name__} failed ({err}); retrying", flush=True)
            time.sleep(delay * 2**attempt)
    return None


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
    params = [Param(k, v) for k, v in sorted(as_params(cfg).items())]
    for i in range(0, len(params), BATCH):
        retry(client.log_batch, run_id, params=params[i : i + BATCH])


def log_tags(client: MlflowClient, run_id: str, tags: dict[str, Any]) -> None:
    items = [RunTag(k, redact(str(v))) for k, v in tags.items() if v is not None]
    for i in range(0, len(items), BATCH):
        retry(client.log_batch, run_id, tags=items[i : i + BATCH])


def log_metrics(
    client: MlflowClient, run_id: str, metrics: dict[str, float], step: int | None = None
) -> None:
    now = int(time.time() * 1000)
    items = [
        Metric(k, float(v), now, step or 0)
        for k, v in metrics.items()
        if v is not None and _is_number(v)
    ]
    for i in range(0, len(items), 1000):
        retry(client.log_batch, run_id, metrics=items[i : i + 1000])


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
    text = redact(OmegaConf.to_yaml(cfg, resolve=True))
    retry(client.log_text, run_id, text, "config.yaml")
    retry(
        client.log_text,
        run_id,
        OmegaConf.to_yaml(OmegaConf.create([redact(o) for o in overrides])),
        "overrides.yaml",
    )


def make_callback(client: MlflowClient, run_id: str, **kwargs: Any):
    """A Keras callback that logs every epoch's metrics to the run (see EpochLogger)."""
    from segexp.epoch_logger import EpochLogger

    return EpochLogger(client, run_id, **kwargs)


def log_model(model: Any, meta: dict[str, Any], registered_name: str | None = None) -> str:
    """Log the model in the Keras flavor (inference graph only) and optionally register it."""
    import keras

    inference = keras.Model(model.inputs, model.outputs, name=model.name)
    requirements = [f"tensorflow=={_version('tensorflow')}", f"keras=={keras.__version__}"]
    info = mlflow.keras.log_model(
        inference,
        name="model",
        pip_requirements=requirements,
        metadata={"segexp": meta},
        registered_model_name=registered_name,
    )
    return info.model_uri


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)
