"""The comparison report of one sweep: tables, Markdown and figures, built from a run table."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from segexp.compare.claims import ClaimResult, evaluate_claim, format_claim

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
# Learning curves a comparison draws unless told otherwise (segexp-compare --curves).
CURVES = ("val_loss", "val_accuracy")
SUMMARY_METRICS = (
    "epochs_trained",
    "best_epoch",
    "epochs_after_best",
    "best_epoch_fraction",
    "best_val_loss",
    "final_minus_best_val_loss",
    "final_over_best_val_loss",
    "overfit_onset_epoch",
    "overfitting_detected",
    "stopped_while_improving",
    "generalization_gap_at_best",
    "generalization_gap_final",
    "val_accuracy_at_best",
    "val_mean_iou_at_best",
    "val_mean_iou_max",
    "test_accuracy",
    "test_mean_iou",
)
History = Callable[[str, str], pd.Series]  # (run_id, metric) -> values by epoch


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
    claim_spec: Mapping[str, Any] | None = None


def finished_runs(table: pd.DataFrame) -> pd.DataFrame:
    return table[table["status"] == "FINISHED"] if "status" in table else table


def differing_params(table: pd.DataFrame) -> list[str]:
    """Param keys whose values differ between runs (tracking/logging keys excluded)."""
    finished = finished_runs(table)
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
    done = finished_runs(table)
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


def summary_metrics(table: pd.DataFrame, extra: Sequence[str] = ()) -> list[str]:
    wanted = [*SUMMARY_METRICS, *(m for m in extra if m not in SUMMARY_METRICS)]
    return [m for m in wanted if m in table.columns]


def group_label(values: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in values.items()) or "all runs"


def groups_of(table: pd.DataFrame, group_by: Sequence[str]) -> list[tuple[str, pd.DataFrame]]:
    """``(label, runs)`` per combination of the ``group_by`` params' values."""
    if not group_by or table.empty:
        return [("all runs", table)] if not table.empty else []
    columns = [f"param:{k}" for k in group_by]
    keyed = table.assign(**{c: table[c].fillna("<unset>").astype(str) for c in columns})
    out = []
    for values, part in keyed.groupby(columns, sort=True):
        values = values if isinstance(values, tuple) else (values,)
        out.append((group_label(dict(zip(group_by, values, strict=True))), table.loc[part.index]))
    return out


def group_table(
    table: pd.DataFrame, group_by: Sequence[str], metrics: Sequence[str]
) -> pd.DataFrame:
    """Mean, std and count of each metric per group of finished runs."""
    rows = []
    for label, part in groups_of(finished_runs(table), group_by):
        row: dict[str, Any] = {"group": label, "n": len(part)}
        for metric in metrics:
            values = pd.to_numeric(part[metric], errors="coerce") if metric in part else None
            values = values.dropna() if values is not None else pd.Series(dtype=float)
            row[f"{metric} mean"] = values.mean() if len(values) else math.nan
            row[f"{metric} std"] = values.std(ddof=1) if len(values) > 1 else math.nan
        rows.append(row)
    return pd.DataFrame(rows)


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


def notes(table: pd.DataFrame) -> list[str]:
    """Warnings about single runs: early stopping that ended a run while it still improved."""
    out = []
    for _, run in finished_runs(table).iterrows():
        if pd.to_numeric(pd.Series([run.get("stopped_while_improving")]), errors="coerce")[0] != 1:
            continue
        seen = []
        for key in ("val_mean_iou", "val_dice"):
            at_best, top = run.get(f"{key}_at_best"), run.get(f"{key}_max")
            if at_best is not None and top is not None and not pd.isna(at_best):
                seen.append(f"{key} {at_best:.3g} at the best epoch, {top:.3g} later")
        out.append(
            f"{run['run_name']}: early stopping ended training after epoch "
            f"{run.get('epochs_trained', math.nan):.0f} while the model was still improving "
            f"({'; '.join(seen) or 'a quality metric rose after the best epoch'})"
        )
    return out


def build_report(
    table: pd.DataFrame,
    *,
    claim: Mapping[str, Any] | None = None,
    group_by: Sequence[str] | None = None,
    metrics: Sequence[str] | None = None,
    title: str = "comparison",
    accept_deviation: bool = False,
) -> Report:
    """Tables and the claim's verdict for the runs in ``table`` (see ``select.runs_table``)."""
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
    result = evaluate_claim(claim, table, accept_deviation=accept_deviation) if claim else None
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
    if warnings := notes(table):
        parts += ["", "## Notes", "", *(f"- {w}" for w in warnings)]
    if result is not None:
        parts += ["", "## Claim", "", "```", format_claim(result), "```"]
    markdown = "\n".join(parts) + "\n"
    return Report(
        shown,
        groups,
        list(group_by),
        metrics,
        result,
        markdown=markdown,
        table=table,
        claim_spec=claim,
    )


def write_report(
    report: Report, output: Path, history: History, curves: Sequence[str]
) -> list[Path]:
    """Write comparison.md, runs.csv, groups.csv, curves.png and effects.png into ``output``."""
    import matplotlib.pyplot as plt

    from segexp.compare.figures import plot_curves, plot_effects

    output.mkdir(parents=True, exist_ok=True)
    files = [output / "comparison.md", output / "runs.csv", output / "groups.csv"]
    files[0].write_text(report.markdown)
    report.runs.to_csv(files[1], index=False)
    report.groups.to_csv(files[2], index=False)
    table = report.table if report.table is not None else report.runs
    done = finished_runs(table)
    available = [m for m in curves if any(len(history(r, m)) > 1 for r in done["run_id"][:3])]
    figures = []
    if available:
        figures.append(("curves.png", plot_curves(history, table, report.group_by, available)))
    if report.claim_spec:
        figures.append(("effects.png", plot_effects(table, report.claim_spec)))
    for name, fig in figures:
        if fig is not None:
            files.append(output / name)
            fig.savefig(files[-1], dpi=110)
            plt.close(fig)
    report.files = files
    return files
