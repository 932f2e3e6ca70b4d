"""The end of a sweep on its parent run: counts, tables, headline metrics, status.

Job counts, the comparison tables, headline metrics, the final status and the link to the MLflow
UI."""

from __future__ import annotations

import math
import tempfile
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from segexp.track.context import SweepContext
from segexp.track.history import log_metrics
from segexp.track.params import log_tags
from segexp.track.store import client_for, retry, retry_patiently


def headline_metrics(children: list[Any], objective: str, direction: str) -> dict[str, float]:
    """The parent's few metrics: the best child's objective and the number of finished jobs."""
    done = [r for r in children if r.info.status == "FINISHED"]
    values = [
        r.data.metrics[objective]
        for r in done
        if objective in r.data.metrics and not math.isnan(r.data.metrics[objective])
    ]
    best = max if direction == "maximize" else min
    headline = {"sweep_jobs_finished": float(len(done))}
    if values:
        headline[f"sweep_best_{objective.removeprefix('best_')}"] = best(values)
    return headline


def log_comparison(
    client: Any, parent_id: str, report: Any, curves: Sequence[str] | None = None, *, tables: bool
) -> list[Path]:
    """A comparison (:class:`segexp.compare.Report`) on the sweep's parent run: its files under
    ``comparison/``, with ``tables`` the group and run tables via ``mlflow.log_table`` (the UI's
    artifact viewer shows them as tables), and the verdict as tags; returns the files."""
    import mlflow

    from segexp.compare import metric_history, write_report
    from segexp.compare.report import CURVES

    history = partial(metric_history, client)
    with tempfile.TemporaryDirectory() as tmp:
        logged = write_report(report, Path(tmp), history, curves or CURVES)
        for path in logged:
            retry(client.log_artifact, parent_id, str(path), "comparison")
    if tables:
        for frame, name in ((report.groups, "groups"), (report.runs, "runs")):
            # not retried: log_table appends to an existing file, a retry could double rows
            mlflow.log_table(frame, f"comparison/{name}.json", run_id=parent_id)
    if report.claim is not None:
        # The verdict as tags (per-group numbers live in the tables, not in dozens of metrics
        # that would crowd the UI's chart view).
        tags = {"claim.verdict": report.claim.verdict}
        if report.claim.deviations:
            tags["claim.protocol_changed"] = ", ".join(report.claim.deviations)
        log_tags(client, parent_id, tags)
    return logged


def log_summary(client: Any, parent_id: str, children: list[Any], config: DictConfig) -> None:
    """The sweep's comparison, judged on its own runs (:mod:`segexp.compare`, pure functions of
    the runs passed in), printed and logged to the parent with a few headline metrics, so the
    chart view holds only the children's curves."""
    from segexp.compare import build_report, claim_of, runs_table

    parent = client.get_run(parent_id)
    report = build_report(
        runs_table(children), claim=claim_of(parent), title=parent.info.run_name or "sweep"
    )
    log_comparison(client, parent_id, report, tables=True)
    print(report.markdown, flush=True)
    objective = str(config.objective)
    direction = str(OmegaConf.select(config, "hydra.sweeper.direction", default="minimize"))
    log_metrics(client, parent_id, headline_metrics(children, objective, direction))


def ui_url(tracking_uri: str, experiment_id: str) -> str:
    """The experiment's training-runs page in the MLflow UI (its model-training view, which the
    experiment kind tag alone does not select in MLflow 3.17); a local store gets the URL of
    ``mlflow ui`` on its default port."""
    base = (
        tracking_uri.rstrip("/")
        if tracking_uri.startswith(("http://", "https://"))
        else ("http://127.0.0.1:5000")
    )
    return f"{base}/#/experiments/{experiment_id}?workflowType=machine_learning"


def close_parent(context: SweepContext, config: DictConfig, *, summary: bool) -> None:
    """Count the sweep's children on its parent run, log the comparison (``summary``) and end
    the parent: FAILED when every job failed, else FINISHED with ``segexp.sweep.failed``."""
    client = client_for(context.tracking_uri)
    parent_id = context.parent_run_id
    children = retry_patiently(
        client.search_runs,
        [context.experiment_id],
        filter_string=f"tags.`segexp.sweep_id` = '{context.sweep_id}'",
        max_results=10000,
    )
    children = [r for r in children if r.info.run_id != parent_id]
    counts: dict[str, int] = {}
    for run in children:
        counts[run.info.status] = counts.get(run.info.status, 0) + 1
    failed = counts.get("FAILED", 0)
    log_tags(
        client,
        parent_id,
        {
            "segexp.sweep.jobs": len(children),
            "segexp.sweep.failed": failed,
            "segexp.sweep.finished": counts.get("FINISHED", 0),
            "segexp.sweep.killed": counts.get("KILLED", 0),
        },
    )
    optuna_results = Path(str(config.hydra.sweep.dir)) / "optimization_results.yaml"
    if optuna_results.exists():
        retry_patiently(client.log_artifact, parent_id, str(optuna_results))
    if summary and len(children) > failed:
        try:
            log_summary(client, parent_id, children, config)
        except Exception as err:  # noqa: BLE001 - a summary must never fail the sweep
            print(f"segexp: sweep summary failed: {type(err).__name__}: {err}", flush=True)
    status = "FAILED" if children and failed == len(children) else "FINISHED"
    retry_patiently(client.set_terminated, parent_id, status)
    print(
        f"segexp: sweep {context.sweep_id} {status}: {len(children)} jobs, {failed} failed; "
        f"parent run {parent_id}; compare its runs in the MLflow UI at "
        f"{ui_url(context.tracking_uri, context.experiment_id)}",
        flush=True,
    )
