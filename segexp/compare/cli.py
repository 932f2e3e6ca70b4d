"""`segexp-compare`: fetch one sweep's runs, report, and log the sweep's own comparison."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from functools import partial
from pathlib import Path

from segexp.compare.protocol import claim_of
from segexp.compare.report import CURVES, build_report, write_report
from segexp.compare.select import metric_history, runs_table, select_runs
from segexp.config.schema.run import TrackingConf
from segexp.errors import ConfigError, SegexpError


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="segexp-compare",
        description="Compare the runs of one sweep (default: the latest in the store): "
        "differing params, summary metrics over seeds, curves, and the verdict on its claim.",
    )
    p.add_argument("--tracking-uri", default=TrackingConf.uri)
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
        from segexp.track.sweep_summary import log_comparison

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
            # Files and verdict tags; the tables the sweep's end logged stay as they are
            # (log_table appends, a second call would double their rows).
            logged = log_comparison(client, parent.info.run_id, report, args.curves, tables=False)
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
