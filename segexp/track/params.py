"""What a run records besides metrics: params, tags, the config files, the error of a failed run."""

from __future__ import annotations

import subprocess
import warnings
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, OmegaConf

from segexp.config import PROJECT_ROOT, as_params, mask_secrets, redact
from segexp.track.store import retry

if TYPE_CHECKING:
    from mlflow import MlflowClient

BATCH = 100  # MLflow's limit of params / tags per log_batch call.


def safe_tags(tags: dict[str, Any]) -> dict[str, str]:
    """Tags as strings, secrets masked (by key name and in URIs / ``key=value`` text)."""
    return mask_secrets({k: str(v) for k, v in tags.items() if v is not None})


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
