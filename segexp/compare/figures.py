"""Figures of a comparison: learning curves per group with each seed, effects per seed."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pandas as pd

from segexp.compare.claims import matching_runs
from segexp.compare.report import finished_runs, group_label, groups_of

History = Callable[[str, str], pd.Series]  # (run_id, metric) -> values by epoch


def plot_curves(
    history: History, table: pd.DataFrame, group_by: Sequence[str], metrics: Sequence[str]
) -> Any:
    """One panel per metric: per group each seed's curve (thin), their mean (thick) with a
    +/- std band, and the mean train curve (``loss`` for ``val_loss``) dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(metrics), figsize=(6.5 * len(metrics), 4.5), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, metric in zip(axes[0], metrics, strict=True):
        train_key = metric.removeprefix("val_")
        for g, (label, part) in enumerate(groups_of(finished_runs(table), group_by)):
            color = colors[g % len(colors)]
            for key, style in ((metric, "-"), (train_key, "--")):
                curves = [c for c in (history(r, key) for r in part["run_id"]) if len(c)]
                if not curves:
                    continue
                frame = pd.concat(curves, axis=1)
                mean, std = frame.mean(axis=1), frame.std(axis=1, ddof=1)
                name = f"{label} (n={len(curves)})" if style == "-" else None
                ax.plot(mean.index, mean.values, style, color=color, label=name, linewidth=2)
                if style == "-" and len(curves) > 1:
                    for curve in curves:
                        ax.plot(curve.index, curve.values, "-", color=color, alpha=0.35, lw=0.8)
                    ax.fill_between(
                        mean.index, mean - std, mean + std, color=color, alpha=0.15, linewidth=0
                    )
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.set_title(f"{metric} (solid; thin: each seed) and {train_key} (dashed)")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_effects(table: pd.DataFrame, claim: Mapping[str, Any]) -> Any | None:
    """One panel per comparative check: each seed's value per group, the group means."""
    checks = [c for c in claim.get("checks") or [] if "other" in c]
    if not checks:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(checks), figsize=(4.5 * len(checks), 4), squeeze=False)
    for ax, check in zip(axes[0], checks, strict=True):
        for x, selector in enumerate((check.get("group"), check["other"])):
            part, metric = matching_runs(table, selector), check["metric"]
            values = pd.Series(dtype=float)
            if metric in part:
                values = pd.to_numeric(part[metric], errors="coerce").dropna()
            ax.plot([x] * len(values), values, "o", alpha=0.7)
            if len(values):
                ax.hlines(values.mean(), x - 0.2, x + 0.2, color="k")
        labels = [group_label(check.get("group") or {}), group_label(check["other"])]
        ax.set_xticks([0, 1], labels, fontsize=8)
        ax.set_xlim(-0.6, 1.6)
        ax.set_title(f"{check['metric']} per seed (line: mean)", fontsize=9)
        ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    return fig
