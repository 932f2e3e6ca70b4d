"""Which runs `segexp-compare` judges: one sweep (or one single run) fetched as a run table."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pandas as pd

from segexp.errors import ConfigError

PARENT_FILTER = "tags.`segexp.sweep_role` = 'parent'"


def select_runs(
    client: Any,
    *,
    experiment: str | None = None,
    parent_run_id: str | None = None,
    sweep_id: str | None = None,
    filter_string: str | None = None,
) -> tuple[list[Any], Any | None]:
    """The runs of one sweep and its parent run: ``--parent``, else ``--sweep-id``, else the
    latest sweep of ``--experiment`` (an MLflow experiment name), else the latest sweep in the
    store. An experiment without sweeps gives its latest single run (parent None).
    ``filter_string`` narrows the sweep's runs; it never widens the selection to other sweeps."""
    if experiment:
        found = client.get_experiment_by_name(experiment)
        if found is None:
            known = sorted(e.name for e in client.search_experiments())
            raise ConfigError(
                f"--experiment {experiment}: no MLflow experiment of that name (the store has: "
                f"{', '.join(known) or 'none'})"
            )
        experiment_ids = [found.experiment_id]
    else:
        experiment_ids = [e.experiment_id for e in client.search_experiments()]
    if parent_run_id:
        parent = _get_parent(client, parent_run_id)
        experiment_ids = [parent.info.experiment_id]
    elif sweep_id:
        parents = _search(
            client, experiment_ids, f"tags.`segexp.sweep_id` = '{sweep_id}' and {PARENT_FILTER}"
        )
        if not parents:
            raise ConfigError(f"--sweep-id {sweep_id}: no sweep parent run with that id")
        parent = parents[0]
    else:
        parents = _search(client, experiment_ids, PARENT_FILTER, max_results=1)
        parent = parents[0] if parents else None
    if parent is None:
        return [_latest_single_run(client, experiment, experiment_ids, filter_string)], None
    filters = [f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'"]
    filters += [f for f in (filter_string,) if f]
    runs = _search(client, experiment_ids, " and ".join(filters))
    runs = [r for r in runs if r.data.tags.get("segexp.sweep_role") != "parent"]
    if not runs:
        what = f" matching --filter {filter_string!r}" if filter_string else ""
        raise ConfigError(f"sweep {parent.info.run_name!r} has no runs{what}")
    return runs, parent


def _get_parent(client: Any, run_id: str) -> Any:
    from mlflow.exceptions import MlflowException

    try:
        parent = client.get_run(run_id)
    except MlflowException:
        raise ConfigError(f"--parent {run_id}: no run with that id in the store") from None
    if parent.data.tags.get("segexp.sweep_role") != "parent":
        raise ConfigError(f"--parent {run_id}: run {parent.info.run_name!r} is not a sweep parent")
    return parent


def _latest_single_run(
    client: Any, experiment: str | None, experiment_ids: list[str], filter_string: str | None
) -> Any:
    if not experiment:
        raise ConfigError(
            "segexp-compare: the store holds no sweep; give --experiment NAME to judge the "
            "latest run of an MLflow experiment"
        )
    runs = _search(client, experiment_ids, filter_string or "", max_results=50)
    runs = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    if not runs:
        what = f" matching --filter {filter_string!r}" if filter_string else ""
        raise ConfigError(f"--experiment {experiment}: no runs{what}")
    return runs[0]


def _search(
    client: Any, experiment_ids: list[str], filter_string: str, max_results: int = 50000
) -> list[Any]:
    if not experiment_ids:
        return []
    from mlflow.exceptions import MlflowException

    try:
        return list(
            client.search_runs(
                experiment_ids,
                filter_string=filter_string,
                max_results=max_results,
                order_by=["attributes.start_time DESC"],
            )
        )
    except MlflowException as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ConfigError(f"--filter {filter_string!r}: {first}") from None


def runs_table(runs: Iterable[Any]) -> pd.DataFrame:
    """One row per run: run_id, run_name, status, then ``param:<key>`` and metric columns."""
    rows = []
    for run in runs:
        row: dict[str, Any] = {
            "run_id": run.info.run_id,
            "run_name": run.info.run_name,
            "status": run.info.status,
        }
        row.update({f"param:{k}": v for k, v in run.data.params.items()})
        row.update(run.data.metrics)
        rows.append(row)
    return pd.DataFrame(rows, columns=["run_id", "run_name", "status"] if not rows else None)


def metric_history(client: Any, run_id: str, key: str) -> pd.Series:
    """A per-epoch metric as a Series indexed by epoch (the logged step, 1-based)."""
    history = client.get_metric_history(run_id, key)
    data = {m.step: m.value for m in sorted(history, key=lambda m: (m.step, m.timestamp))}
    return pd.Series(data, dtype=float).sort_index()
