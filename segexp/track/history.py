"""Metrics of a run: batched logging, summaries once, per-epoch values caught up.

Batched logging, summaries logged once, per-epoch values caught up after a crash, and the steps
of the logged prediction images."""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from segexp.track.store import retry

if TYPE_CHECKING:
    from mlflow import MlflowClient


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
