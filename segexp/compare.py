"""`segexp-compare`: compare the runs of a sweep, group them over seeds, and check a claim.

Runs are picked by MLflow experiment (default: its most recent sweep), parent run, sweep id or an
MLflow filter string. The report is a table of the params that differ plus the summary metrics,
the same grouped by the differing params except ``seed`` (mean, std, n), validation curves per
group (mean with a +/- std band), and, when the sweep states a ``claim``, its verdict. Markdown,
CSV and PNG files go to ``--output`` and are logged to the sweep's parent run.

A claim lives in the experiment file (top-level ``claim:``) and is stored on the parent run::

    claim:
      text: Without BatchNorm, validation loss rises after its minimum.
      source: "001"
      checks:                       # all must hold
        - metric: final_minus_best_val_loss
          stat: mean                # mean | median | min | max | std | count, over the group's runs
          group: {model.batchnorm: false}   # optional: runs whose params match
          op: ">"                   # > >= < <=
          value: 0.02               # a threshold, or ...
        - metric: generalization_gap_at_best
          group: {model.batchnorm: true}
          op: "<"
          other: {model.batchnorm: false}   # ... the same statistic of another group
"""

from __future__ import annotations

import argparse
import json
import math
import operator
import sys
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from segexp.errors import ConfigError, SegexpError

# Params that describe tracking or logging, not the experiment: never "differing".
IGNORED_PARAM_PREFIXES = (
    "tracking.",
    "claim.",
    "analysis.",
    "objective",
    "resume",
    "trainer.verbose",
    "trainer.log_images_every",
    "trainer.num_sample_images",
)
SEED_KEYS = ("seed",)
SUMMARY_METRICS = (
    "epochs_trained",
    "best_epoch",
    "best_epoch_fraction",
    "best_val_loss",
    "final_minus_best_val_loss",
    "final_over_best_val_loss",
    "overfit_onset_epoch",
    "overfitting_detected",
    "generalization_gap_at_best",
    "generalization_gap_final",
    "val_accuracy_at_best",
    "val_mean_iou_at_best",
    "test_accuracy",
    "test_mean_iou",
)
OPS = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le}
STATS = ("mean", "median", "min", "max", "std", "count")


@dataclass
class CheckResult:
    expected: str
    measured: str
    verdict: str  # holds | does not hold | undetermined


@dataclass
class ClaimResult:
    text: str
    checks: list[CheckResult]
    source: str = ""

    @property
    def verdict(self) -> str:
        verdicts = {c.verdict for c in self.checks}
        if "does not hold" in verdicts:
            return "does not hold"
        if verdicts == {"holds"}:
            return "holds"
        return "undetermined"


@dataclass
class Report:
    runs: pd.DataFrame
    groups: pd.DataFrame
    group_by: list[str]
    metrics: list[str]
    claim: ClaimResult | None = None
    files: list[Path] = field(default_factory=list)
    markdown: str = ""
    table: pd.DataFrame | None = None  # every column of every run, for the plots


# -- selection -------------------------------------------------------------------------------
def select_runs(
    client: Any,
    *,
    experiment: str | None = None,
    parent_run_id: str | None = None,
    sweep_id: str | None = None,
    filter_string: str | None = None,
    all_runs: bool = False,
) -> tuple[list[Any], Any | None]:
    """The runs to compare and the sweep's parent run (None when the selection has none)."""
    if experiment:
        found = client.get_experiment_by_name(experiment)
        if found is None:
            raise ConfigError(f"--experiment {experiment}: no MLflow experiment of that name")
        experiment_ids = [found.experiment_id]
    else:
        experiment_ids = [e.experiment_id for e in client.search_experiments()]
    parent = None
    if parent_run_id:
        parent = client.get_run(parent_run_id)
        experiment_ids = [parent.info.experiment_id]
    elif sweep_id:
        parents = _search(
            client,
            experiment_ids,
            f"tags.`segexp.sweep_id` = '{sweep_id}' and tags.`segexp.sweep_role` = 'parent'",
        )
        if not parents:
            raise ConfigError(f"--sweep-id {sweep_id}: no sweep parent run with that id")
        parent = parents[0]
    elif not filter_string and not all_runs:
        if not experiment:
            raise ConfigError("segexp-compare: give --experiment, --parent, --sweep-id or --filter")
        parents = _search(client, experiment_ids, "tags.`segexp.sweep_role` = 'parent'")
        parent = parents[0] if parents else None  # newest first
    filters = [f for f in (filter_string,) if f]
    if parent is not None:
        filters.append(f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    runs = _search(client, experiment_ids, " and ".join(filters))
    runs = [r for r in runs if r.data.tags.get("segexp.sweep_role") != "parent"]
    if not runs:
        raise ConfigError("segexp-compare: the selection matches no runs")
    return runs, parent


def _search(client: Any, experiment_ids: list[str], filter_string: str) -> list[Any]:
    return list(
        client.search_runs(
            experiment_ids,
            filter_string=filter_string,
            max_results=50000,
            order_by=["attributes.start_time DESC"],
        )
    )


# -- tables ----------------------------------------------------------------------------------
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
    return pd.DataFrame(rows)


def differing_params(table: pd.DataFrame) -> list[str]:
    """Param keys whose values differ between runs (tracking/logging keys excluded)."""
    finished = table[table["status"] == "FINISHED"]
    table = finished if len(finished) > 1 else table
    keys = []
    for column in table.columns:
        if not column.startswith("param:"):
            continue
        key = column.removeprefix("param:")
        if key.startswith(IGNORED_PARAM_PREFIXES):
            continue
        if table[column].fillna("<unset>").astype(str).nunique() > 1:
            keys.append(key)
    return sorted(keys)


def grouping_keys(table: pd.DataFrame, keys: Sequence[str]) -> list[str]:
    """The keys (``*.name`` first) that each split the runs further; a swept config group
    (``augmentation=none,flip``) groups by ``augmentation.name`` alone, not by all its keys."""
    done = table[table["status"] == "FINISHED"] if "status" in table else table
    done = done if len(done) > 1 else table
    chosen: list[str] = []
    distinct = 1
    for key in sorted(keys, key=lambda k: (not k.endswith(".name"), k)):
        columns = [f"param:{k}" for k in (*chosen, key)]
        n = len(done[columns].fillna("<unset>").astype(str).drop_duplicates())
        if n > distinct:
            chosen.append(key)
            distinct = n
    return chosen


def summary_metrics(table: pd.DataFrame, extra: Iterable[str] = ()) -> list[str]:
    wanted = [*SUMMARY_METRICS, *(m for m in extra if m not in SUMMARY_METRICS)]
    return [m for m in wanted if m in table.columns]


def group_label(values: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in values.items()) or "all runs"


def group_table(
    table: pd.DataFrame, group_by: Sequence[str], metrics: Sequence[str]
) -> pd.DataFrame:
    """Mean, std and count of each metric per group of finished runs."""
    done = table[table["status"] == "FINISHED"]
    rows = []
    for label, part in _groups(done, group_by):
        row: dict[str, Any] = {"group": label, "n": len(part)}
        for metric in metrics:
            values = pd.to_numeric(part[metric], errors="coerce") if metric in part else None
            values = values.dropna() if values is not None else pd.Series(dtype=float)
            row[f"{metric} mean"] = values.mean() if len(values) else math.nan
            row[f"{metric} std"] = values.std(ddof=1) if len(values) > 1 else math.nan
        rows.append(row)
    return pd.DataFrame(rows)


def _groups(table: pd.DataFrame, group_by: Sequence[str]) -> list[tuple[str, pd.DataFrame]]:
    if not group_by or table.empty:
        return [("all runs", table)] if not table.empty else []
    columns = [f"param:{k}" for k in group_by]
    keyed = table.assign(**{c: table[c].fillna("<unset>").astype(str) for c in columns})
    out = []
    for values, part in keyed.groupby(columns, sort=True):
        values = values if isinstance(values, tuple) else (values,)
        out.append((group_label(dict(zip(group_by, values, strict=True))), table.loc[part.index]))
    return out


# -- claims ----------------------------------------------------------------------------------
def _norm(value: Any) -> str:
    text = "null" if value is None else str(value).strip().lower()
    try:
        number = float(text)
    except ValueError:
        return text
    return repr(int(number)) if number.is_integer() else repr(number)


def _match(table: pd.DataFrame, selector: Mapping[str, Any] | None) -> pd.DataFrame:
    if "status" not in table:
        return table
    done = table[table["status"] == "FINISHED"]
    for key, expected in (selector or {}).items():
        column = f"param:{key}"
        if column not in done and f"{column}.name" in done:
            column = f"{column}.name"  # a config group, e.g. {augmentation: flip}
        if column not in done:
            return done.iloc[0:0]
        done = done[done[column].map(_norm) == _norm(expected)]
    return done


def _stat(table: pd.DataFrame, metric: str, stat: str) -> tuple[float, int]:
    if metric not in table:
        return math.nan, 0
    values = pd.to_numeric(table[metric], errors="coerce").dropna()
    if stat == "count":
        return float(len(values)), len(values)
    if not len(values) or (stat == "std" and len(values) < 2):
        return math.nan, len(values)
    return float(getattr(values, stat)(**({"ddof": 1} if stat == "std" else {}))), len(values)


def _measured(table: pd.DataFrame, metric: str, stat: str, value: float, n: int) -> str:
    """``value (n=..)``; for a mean over several runs ``mean ± std (n=..)``."""
    if stat == "mean" and n > 1:
        std, _ = _stat(table, metric, "std")
        return f"{value:.4g} ± {std:.2g} (n={n})"
    return f"{value:.4g} (n={n})"


def _describe(metric: str, stat: str, selector: Mapping[str, Any] | None) -> str:
    where = f" | {group_label(selector)}" if selector else ""
    return f"{stat}({metric}{where})"


def evaluate_claim(claim: Mapping[str, Any], table: pd.DataFrame) -> ClaimResult:
    """Check every ``claim.checks`` entry against the runs in ``table``."""
    checks = claim.get("checks") or []
    if not checks:
        raise ConfigError("claim.checks: expected a non-empty list of checks")
    results = []
    for i, check in enumerate(checks):
        metric = check.get("metric")
        stat = str(check.get("stat", "mean"))
        op = str(check.get("op", ">"))
        if not metric or op not in OPS or stat not in STATS:
            raise ConfigError(
                f"claim.checks[{i}]: expected metric, op in {sorted(OPS)} and stat in {STATS}, "
                f"got metric={metric!r} op={op!r} stat={stat!r}"
            )
        if ("value" in check) == ("other" in check):
            raise ConfigError(f"claim.checks[{i}]: give exactly one of `value` or `other`")
        group = _match(table, check.get("group"))
        left, n_left = _stat(group, metric, stat)
        lhs = _describe(metric, stat, check.get("group"))
        if "value" in check:
            right, rhs, measured = float(check["value"]), f"{check['value']:g}", ""
        else:
            other = _match(table, check["other"])
            right, n_right = _stat(other, metric, stat)
            rhs = _describe(metric, stat, check["other"])
            measured = f" vs {_measured(other, metric, stat, right, n_right)}"
        measured = _measured(group, metric, stat, left, n_left) + measured
        if math.isnan(left) or math.isnan(right):
            verdict = "undetermined"
        else:
            verdict = "holds" if OPS[op](left, right) else "does not hold"
        results.append(CheckResult(f"{lhs} {op} {rhs}", measured, verdict))
    return ClaimResult(str(claim.get("text", "")), results, str(claim.get("source", "")))


def format_claim(result: ClaimResult) -> str:
    lines = [f"claim: {result.text}"]
    if result.source:
        lines.append(f"source: {result.source}")
    for i, check in enumerate(result.checks, 1):
        lines.append(f"  check {i}: expected {check.expected}")
        lines.append(f"           measured {check.measured} -> {check.verdict}")
    lines.append(f"verdict: {result.verdict}")
    return "\n".join(lines)


# -- curves ----------------------------------------------------------------------------------
def metric_history(client: Any, run_id: str, key: str) -> pd.Series:
    """A per-epoch metric as a Series indexed by epoch (the logged step, 1-based)."""
    history = client.get_metric_history(run_id, key)
    data = {m.step: m.value for m in sorted(history, key=lambda m: (m.step, m.timestamp))}
    return pd.Series(data, dtype=float).sort_index()


def plot_curves(
    client: Any, table: pd.DataFrame, group_by: Sequence[str], metrics: Sequence[str]
) -> Any:
    """One panel per metric: per group the mean over runs, a +/- std band, and the train curve
    (``loss`` for ``val_loss``) dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = table[table["status"] == "FINISHED"]
    fig, axes = plt.subplots(1, len(metrics), figsize=(6.5 * len(metrics), 4.5), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, metric in zip(axes[0], metrics, strict=True):
        train_key = metric.removeprefix("val_")
        for g, (label, part) in enumerate(_groups(done, group_by)):
            color = colors[g % len(colors)]
            for key, style in ((metric, "-"), (train_key, "--")):
                curves = [metric_history(client, r, key) for r in part["run_id"]]
                curves = [c for c in curves if len(c)]
                if not curves:
                    continue
                frame = pd.concat(curves, axis=1)
                mean, std = frame.mean(axis=1), frame.std(axis=1, ddof=1)
                name = f"{label} (n={len(curves)})" if style == "-" else None
                ax.plot(mean.index, mean.values, style, color=color, label=name)
                if style == "-" and len(curves) > 1:
                    ax.fill_between(
                        mean.index, mean - std, mean + std, color=color, alpha=0.2, linewidth=0
                    )
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.set_title(f"{metric} (solid) and {train_key} (dashed): mean +/- std")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


# -- report ----------------------------------------------------------------------------------
def _fmt(value: Any) -> str:
    if isinstance(value, float | np.floating):
        return "" if math.isnan(value) else f"{value:.4g}"
    return str(value)


def to_markdown(frame: pd.DataFrame) -> str:
    """A GitHub Markdown table (no optional `tabulate` dependency)."""
    if frame.empty:
        return "(no rows)"
    header = "| " + " | ".join(str(c) for c in frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *body])


def _compact(groups: pd.DataFrame, metrics: Sequence[str]) -> pd.DataFrame:
    """Group table with one ``mean ± std`` cell per metric (for Markdown)."""
    if groups.empty:
        return groups
    out = groups[["group", "n"]].copy()
    for metric in metrics:
        mean, std = groups[f"{metric} mean"], groups[f"{metric} std"]
        out[metric] = [
            "" if math.isnan(m) else (f"{m:.4g}" if math.isnan(d) else f"{m:.4g} ± {d:.2g}")
            for m, d in zip(mean, std, strict=True)
        ]
    return out


def build_report(
    client: Any,
    runs: list[Any],
    *,
    claim: Mapping[str, Any] | None = None,
    group_by: Sequence[str] | None = None,
    metrics: Sequence[str] | None = None,
    title: str = "comparison",
) -> Report:
    """Tables (and the claim's verdict) for ``runs``; files are written by :func:`write_report`."""
    table = runs_table(runs)
    differing = differing_params(table)
    if group_by is None:
        varying = [k for k in differing if k not in SEED_KEYS]
        group_by = list((claim or {}).get("group_by") or grouping_keys(table, varying))
    claim_metrics = [c.get("metric") for c in (claim or {}).get("checks", []) if c.get("metric")]
    group_by = [k for k in group_by if f"param:{k}" in table.columns]
    metrics = list(metrics) if metrics else summary_metrics(table, claim_metrics)
    columns = ["run_name", "status", *[f"param:{k}" for k in differing], *metrics]
    shown = table.reindex(columns=columns).rename(columns=lambda c: c.removeprefix("param:"))
    shown = shown.sort_values([c for c in ("run_name",) if c in shown]).reset_index(drop=True)
    groups = group_table(table, group_by, metrics)
    result = evaluate_claim(claim, table) if claim else None
    parts = [
        f"# {title}",
        "",
        f"{len(table)} runs ({(table['status'] == 'FINISHED').sum()} finished); "
        f"differing params: {', '.join(differing) or 'none'}; "
        f"grouped by: {', '.join(group_by) or 'nothing (all runs)'}",
        "",
        "## Groups (mean and std over runs)",
        "",
        to_markdown(_compact(groups, metrics)),
        "",
        "## Runs",
        "",
        to_markdown(shown),
    ]
    if result is not None:
        parts += ["", "## Claim", "", "```", format_claim(result), "```"]
    markdown = "\n".join(parts) + "\n"
    return Report(shown, groups, list(group_by), metrics, result, markdown=markdown, table=table)


def write_report(client: Any, report: Report, output: Path, curves: Sequence[str]) -> list[Path]:
    """Write comparison.md, runs.csv, groups.csv and curves.png into ``output``."""
    output.mkdir(parents=True, exist_ok=True)
    files = [output / "comparison.md", output / "runs.csv", output / "groups.csv"]
    files[0].write_text(report.markdown)
    report.runs.to_csv(files[1], index=False)
    report.groups.to_csv(files[2], index=False)
    table = report.table if report.table is not None else report.runs
    available = [m for m in curves if _has_history(client, table, m)]
    if available:
        import matplotlib.pyplot as plt

        fig = plot_curves(client, table, report.group_by, available)
        files.append(output / "curves.png")
        fig.savefig(files[-1], dpi=110)
        plt.close(fig)
    report.files = files
    return files


def _has_history(client: Any, table: pd.DataFrame, metric: str) -> bool:
    done = table[table["status"] == "FINISHED"]
    return any(len(client.get_metric_history(r, metric)) > 1 for r in done["run_id"][:3])


def claim_of(parent: Any | None, experiment_file: str | None = None) -> dict | None:
    """The claim stored on the sweep's parent run, else the one in an experiment YAML file."""
    if parent is not None and parent.data.tags.get("segexp.claim"):
        return json.loads(parent.data.tags["segexp.claim"])
    if experiment_file:
        from omegaconf import OmegaConf

        path = Path(experiment_file)
        if not path.exists():
            from segexp.config import PROJECT_ROOT

            path = PROJECT_ROOT / "experiments" / f"{experiment_file.removesuffix('.yaml')}.yaml"
        if not path.exists():
            raise ConfigError(f"--claim {experiment_file}: no such experiment file")
        claim = OmegaConf.select(OmegaConf.load(path), "claim", default=None)
        return None if claim is None else OmegaConf.to_container(claim, resolve=True)
    return None


def summarize_sweep(client: Any, parent_id: str, runs: list[Any]) -> Report:
    """Called at the end of a sweep: print the comparison and log it to the parent run."""
    parent = client.get_run(parent_id)
    report = build_report(
        client, runs, claim=claim_of(parent), title=parent.info.run_name or "sweep"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for path in write_report(client, report, Path(tmp), ("val_loss", "val_accuracy")):
            client.log_artifact(parent_id, str(path), "comparison")
    _log_results(client, parent_id, report)
    print(report.markdown, flush=True)
    return report


def _log_results(client: Any, parent_id: str, report: Report) -> None:
    from segexp import tracking

    if report.claim is not None:
        tracking.log_tags(client, parent_id, {"claim.verdict": report.claim.verdict})
    metrics = {}
    for _, row in report.groups.iterrows():
        for metric in report.metrics:
            value = row.get(f"{metric} mean")
            if value is not None and not math.isnan(value):
                safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in row["group"])
                metrics[f"{metric}.mean.{safe}"[:250]] = value
    tracking.log_metrics(client, parent_id, metrics)


# -- CLI -------------------------------------------------------------------------------------
def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="segexp-compare",
        description="Compare the runs of a sweep: differing params, summary metrics grouped over "
        "seeds, validation curves, and the verdict on the experiment's claim.",
    )
    p.add_argument("--tracking-uri", default="sqlite:///mlflow.db")
    p.add_argument("--experiment", help="MLflow experiment name (default: its latest sweep)")
    p.add_argument("--parent", help="the sweep's parent run id")
    p.add_argument("--sweep-id", help="the sweep id (tag segexp.sweep_id)")
    p.add_argument(
        "--filter", help="MLflow filter string, e.g. \"params.model.batchnorm = 'True'\""
    )
    p.add_argument("--all", action="store_true", help="all runs of --experiment, not one sweep")
    p.add_argument("--group-by", nargs="*", help="param keys (default: differing params but seed)")
    p.add_argument("--metrics", nargs="*", help="summary metrics to tabulate")
    p.add_argument("--curves", nargs="*", default=["val_loss", "val_accuracy"])
    p.add_argument("--claim", help="experiment file (name or path) whose `claim:` to check")
    p.add_argument("--output", default="comparison", help="folder for the .md, .csv and .png")
    p.add_argument("--no-log", action="store_true", help="do not log the files to the parent run")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        from mlflow import MlflowClient

        from segexp import tracking

        tracking.check_store(args.tracking_uri)
        client = MlflowClient(tracking_uri=args.tracking_uri)
        runs, parent = select_runs(
            client,
            experiment=args.experiment,
            parent_run_id=args.parent,
            sweep_id=args.sweep_id,
            filter_string=args.filter,
            all_runs=args.all,
        )
        claim = claim_of(parent, args.claim)
        if claim is None and args.experiment and not args.claim:
            try:
                claim = claim_of(None, args.experiment)
            except ConfigError:
                claim = None
        title = parent.info.run_name if parent is not None else (args.experiment or "comparison")
        report = build_report(
            client, runs, claim=claim, group_by=args.group_by, metrics=args.metrics, title=title
        )
        files = write_report(client, report, Path(args.output), args.curves)
    except SegexpError as err:
        print(f"segexp-compare: error: {err}", file=sys.stderr)
        return 2
    print(report.markdown)
    if parent is not None and not args.no_log:
        for path in files:
            tracking.retry(client.log_artifact, parent.info.run_id, str(path), "comparison")
        _log_results(client, parent.info.run_id, report)
        print(f"logged {len(files)} files to parent run {parent.info.run_id} (comparison/)")
    print("wrote " + ", ".join(str(f) for f in files))
    return 0


if __name__ == "__main__":
    sys.exit(main())
