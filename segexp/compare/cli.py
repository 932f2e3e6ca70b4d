"""`segexp-compare` and the end-of-sweep summary: fetch one sweep's runs, report, log."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

from segexp.compare.protocol import with_protocol
from segexp.compare.report import Report, build_report, write_report
from segexp.compare.select import metric_history, runs_table, select_runs
from segexp.errors import ConfigError, SegexpError

CURVES = ("val_loss", "val_accuracy")


def claim_of(parent: Any | None, claim_file: str | None = None) -> dict | None:
    """The claim of ``--claim`` (an experiment file: a path or a name in experiments/), else the
    one stored on the sweep's parent run; its protocol resolved from the experiment file."""
    if claim_file:
        from omegaconf import OmegaConf

        from segexp.config import PROJECT_ROOT

        path = Path(claim_file)
        if not path.is_file():
            path = PROJECT_ROOT / "experiments" / f"{claim_file.removesuffix('.yaml')}.yaml"
        if not path.is_file():
            raise ConfigError(
                f"--claim {claim_file}: no such experiment file (a path, or a name in "
                f"{PROJECT_ROOT / 'experiments'})"
            )
        claim = OmegaConf.select(OmegaConf.load(path), "claim", default=None)
        if claim is None:
            raise ConfigError(f"--claim {claim_file}: {path} has no top-level `claim:`")
        return with_protocol(OmegaConf.to_container(claim, resolve=True), path.stem)
    if parent is not None and parent.data.tags.get("segexp.claim"):
        claim = json.loads(parent.data.tags["segexp.claim"])
        return with_protocol(claim, parent.data.tags.get("segexp.experiment_file") or None)
    return None


def summarize_sweep(client: Any, parent_id: str, runs: list[Any]) -> Report:
    """Called at the end of a sweep: print the comparison and log it to the parent run (its
    files under ``comparison/``, the group and run tables via ``mlflow.log_table``, which the
    UI's artifact viewer shows as tables, and the verdict tags)."""
    import mlflow

    parent = client.get_run(parent_id)
    report = build_report(
        runs_table(runs), claim=claim_of(parent), title=parent.info.run_name or "sweep"
    )
    history = partial(metric_history, client)
    with tempfile.TemporaryDirectory() as tmp:
        for path in write_report(report, Path(tmp), history, CURVES):
            client.log_artifact(parent_id, str(path), "comparison")
    for frame, name in ((report.groups, "groups"), (report.runs, "runs")):
        # not retried: log_table appends to an existing file, a retry could double rows
        mlflow.log_table(frame, f"comparison/{name}.json", run_id=parent_id)
    _log_results(client, parent_id, report)
    print(report.markdown, flush=True)
    return report


def _log_results(client: Any, parent_id: str, report: Report) -> None:
    """The verdict as tags on the parent run (per-group numbers live in the tables, not in
    dozens of metrics that would crowd the UI's chart view)."""
    from segexp import track

    if report.claim is not None:
        tags = {"claim.verdict": report.claim.verdict}
        if report.claim.deviations:
            tags["claim.protocol_changed"] = ", ".join(report.claim.deviations)
        track.log_tags(client, parent_id, tags)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="segexp-compare",
        description="Compare the runs of one sweep (default: the latest in the store): "
        "differing params, summary metrics over seeds, curves, and the verdict on its claim.",
    )
    p.add_argument("--tracking-uri", default="sqlite:///mlflow.db")
    p.add_argument(
        "--experiment",
        help="MLflow experiment name: its latest sweep (or, without sweeps, its latest run)",
    )
    p.add_argument("--parent", help="the sweep's parent run id")
    p.add_argument("--sweep-id", help="the sweep id (tag segexp.sweep_id)")
    p.add_argument(
        "--filter",
        help="MLflow filter string narrowing the sweep's runs, e.g. \"params.seed = '1'\"",
    )
    p.add_argument("--group-by", nargs="*", help="param keys (default: differing params but seed)")
    p.add_argument("--metrics", nargs="*", help="summary metrics to tabulate")
    p.add_argument("--curves", nargs="*", default=list(CURVES))
    p.add_argument("--claim", help="experiment file (name or path) whose `claim:` to check instead")
    p.add_argument(
        "--accept-deviation",
        action="store_true",
        help="judge a claim although the runs' protocol differs from it",
    )
    p.add_argument(
        "--output", help="also write the .md, .csv and .png files to this folder (default: none)"
    )
    p.add_argument("--no-log", action="store_true", help="do not log the files to the parent run")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        from mlflow import MlflowClient

        from segexp import track

        uri = args.tracking_uri
        if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
            raise ConfigError(f"--tracking-uri {uri}: no such SQLite store")
        track.check_store(uri)
        client = MlflowClient(tracking_uri=uri)
        runs, parent = select_runs(
            client,
            experiment=args.experiment,
            parent_run_id=args.parent,
            sweep_id=args.sweep_id,
            filter_string=args.filter,
        )
        claim = claim_of(parent, args.claim)
        title = parent.info.run_name if parent is not None else runs[0].info.run_name
        report = build_report(
            runs_table(runs),
            claim=claim,
            group_by=args.group_by,
            metrics=args.metrics,
            title=title or "comparison",
            accept_deviation=args.accept_deviation,
        )
        history = partial(metric_history, client)
        files = []
        if args.output:
            files = write_report(report, Path(args.output), history, args.curves)
        # The parent holds the sweep's own comparison: a narrowed or re-judged one (another
        # selection, claim, grouping or --accept-deviation) goes to --output, not over it.
        changed = [
            flag
            for flag, value in (
                ("--filter", args.filter),
                ("--claim", args.claim),
                ("--group-by", args.group_by),
                ("--metrics", args.metrics),
                ("--accept-deviation", args.accept_deviation),
            )
            if value
        ]
        log = parent is not None and not args.no_log and not changed
        if log:
            with tempfile.TemporaryDirectory() as tmp:
                logged = write_report(report, Path(tmp), history, args.curves)
                for path in logged:
                    track.retry(client.log_artifact, parent.info.run_id, str(path), "comparison")
            _log_results(client, parent.info.run_id, report)
    except SegexpError as err:
        print(f"segexp-compare: error: {err}", file=sys.stderr)
        return 2
    print(report.markdown)
    if parent is None:
        print(f"(no sweep: judged the single run {runs[0].info.run_id})")
    if log:
        print(f"logged {len(logged)} files to parent run {parent.info.run_id} (comparison/)")
    elif parent is not None and changed:
        print(
            f"not logged to parent run {parent.info.run_id}: {', '.join(changed)} differs from "
            "the sweep's own comparison (--output DIR writes the files)"
        )
    if files:
        print("wrote " + ", ".join(str(f) for f in files))
    return 0
