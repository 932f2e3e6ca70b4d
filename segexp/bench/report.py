"""The benchmark's targets and its Markdown table."""

from __future__ import annotations

import math
from typing import Any

from segexp.bench.checks import cell, loss_target
from segexp.bench.step_time import render_step_times
from segexp.bench.timing import Result


def targets(rows: list[dict[str, Any]]) -> list[tuple[str, str, bool]]:
    """The performance targets as (target, measured, met): ratios are the mean over rounds
    (each round's value in brackets), the MLflow share the largest of the rounds."""
    found = []
    a_rows = [row for row in rows if row["result"].variant.startswith("a")]
    scenarios = list(dict.fromkeys(row["result"].scenario for row in a_rows))
    for scenario in scenarios:
        mine = [row for row in a_rows if row["result"].scenario == scenario]
        checks = [("a_c", f"(a)/(c) with {scenario} >= 2", 2.0)]
        if scenario == "none":
            checks = [("a_b", "(a)/(b) without augmentation >= 0.97", 0.97)]
        for key, name, goal in checks:
            ratios = [row[key] for row in mine if row.get(key) is not None]
            if ratios:
                mean = sum(ratios) / len(ratios)
                each = ", ".join(f"{v:.3f}" for v in ratios)
                found.append((name, f"{mean:.3f} ({each})", mean >= goal))
        if scenario == "none":
            share = max(row["result"].logging_share for row in mine)
            found.append(
                (
                    "MLflow logging share of epoch time < 2% (no augmentation)",
                    f"{share:.2%}",
                    share < 0.02,
                )
            )
    same_loss = loss_target(rows)
    if same_loss is not None:
        found.insert(1, same_loss)
    return found


def _flagged(row: dict[str, Any]) -> bool:
    return bool(row.get("loss_check") and not row["loss_check"]["ok"])


def _fmt(value: float | None, spec: str = ".1f", scale: float = 1.0) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return format(value * scale, spec)


def render(report: dict[str, Any]) -> str:
    """The Markdown report: machine, model, throughput, targets, memory."""
    m, model = report["machine"], report["model"]
    lines = [
        "# segexp-bench",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory']}, GPUs: {m['gpus']}; "
        f"{m['versions']}. Load average at start {m['load']}, at end {report['load_end']}.",
        "",
        f"Command: `{report['command']}`",
        "",
        f"Model {model['name']}: input {model['input']}, {model['params']:,} parameters, "
        f"batch {report['batch_size']}, {report['steps']} steps ({report['images']} images) per "
        f"epoch, {report['warmup']} warm-up + {report['epochs']} timed epochs per variant "
        f"(median epoch), {report['rounds']} round(s) of each pair of variants "
        "(even rounds run the baseline first), "
        f"precision {report['precision']}, jit_compile {report['jit']}, "
        f"distribute {report['distribute']}, validation {report['validation']}.",
        "",
        "| model | forward GFLOP/image | training GFLOP/image (3x) | matmul peak GFLOP/s "
        "| conv peak GFLOP/s |",
        "|---|---:|---:|---:|---:|",
        f"| {model['name']} | {model['flops'] / 1e9:.4f} | {3 * model['flops'] / 1e9:.4f} "
        f"| {report['peaks']['matmul_flops_per_sec'] / 1e9:.1f} "
        f"| {report['peaks']['conv_flops_per_sec'] / 1e9:.1f} |",
        "",
        "| augmentation | round | variant | images/s | (a)/(b) | (a)/(c) | epoch s | validation s "
        "| peak RSS MiB | MLflow logging share | achieved GFLOP/s "
        "| % of conv peak | final loss | input pipeline alone images/s "
        "| final loss against the pair's baseline |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    conv_peak = report["peaks"]["conv_flops_per_sec"]
    for row in report["rows"]:
        r: Result = row["result"]
        achieved = 3 * model["flops"] * r.images_per_sec
        lines.append(
            f"| {r.scenario} | {r.round} | {r.variant} | {r.images_per_sec:.1f} "
            f"| {_fmt(row.get('a_b'), '.3f')} "
            f"| {_fmt(row.get('a_c'), '.2f')} | {r.epoch_seconds:.3f} "
            f"| {_fmt(r.val_seconds, '.3f')} "
            f"| {r.peak_rss_mb:.0f} | {_fmt(r.logging_share, '.2%')} "
            f"| {achieved / 1e9:.2f} "
            f"| {_fmt(achieved / conv_peak, '.1%')} | {r.final_loss:.4f} "
            f"| {_fmt(r.pipeline_images_per_sec, '.0f')} | {cell(row.get('loss_check'))} |"
        )
    flagged = [row["loss_check"]["why"] for row in report["rows"] if _flagged(row)]
    if flagged:
        lines += ["", *(f"NOT COMPARABLE: {why}." for why in flagged)]
    lines += ["", "| target | measured | met |", "|---|---:|---|"]
    for name, value, ok in report["targets"]:
        lines.append(f"| {name} | {value} | {'yes' if ok else 'no'} |")
    lines += render_step_times(report.get("step_times") or [], report.get("confusion_metrics", 0))
    if report.get("memory"):
        lines += [
            "",
            f"Memory: {report['memory_note']}",
            "",
            "| data set | images | data MiB (float32 images + int32 masks) | baseline RSS MiB "
            "| peak RSS MiB | peak - baseline MiB | load s | epoch pass s |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for row in report["memory"]:
            if "error" in row:
                lines.append(f"| {row['kind']} | error: {row['error']} | | | | | | |")
                continue
            lines.append(
                f"| {row['kind'].replace('_', ' ')} | {row['images']} | {row['data_mb']:.1f} "
                f"| {row['baseline_mb']:.0f} | {row['peak_mb']:.0f} "
                f"| {row['peak_mb'] - row['baseline_mb']:.0f} | {row['load_s']:.2f} "
                f"| {row['pass_s']:.2f} |"
            )
    return "\n".join(lines)


def augmentation_summary(reports: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per model and augmentation: the input pipeline alone (segexp against the Python loop)
    and training with against without augmentation; each ratio is the mean of the rounds'
    ratios (pairs measured next to each other), each round's value kept."""
    summary = []
    for report in reports:
        a_rows = [row for row in report["rows"] if row["result"].variant.startswith("a")]
        plain = {
            row["result"].round: row["result"] for row in a_rows if row["result"].scenario == "none"
        }
        for scenario in dict.fromkeys(row["result"].scenario for row in a_rows):
            if scenario == "none":
                continue
            mine = [row for row in a_rows if row["result"].scenario == scenario]
            pipe = [
                (row["result"].pipeline_images_per_sec, row["python_pipeline"])
                for row in mine
                if row.get("python_pipeline")
            ]
            train = [
                (row["result"].images_per_sec, plain[row["result"].round].images_per_sec)
                for row in mine
                if row["result"].round in plain
            ]
            summary.append(
                {
                    "model": report["model"]["name"],
                    "input": report["model"]["input"],
                    "augmentation": scenario,
                    "pipeline": pipe,
                    "training": train,
                }
            )
    return summary


def _ratio_cell(pairs: list[tuple[float, float]]) -> tuple[str, float | None]:
    if not pairs:
        return "n/a", None
    ratios = [a / b for a, b in pairs]
    mean = sum(ratios) / len(ratios)
    return f"{mean:.2f} ({', '.join(f'{r:.2f}' for r in ratios)})", mean


def render_augmentation(report: dict[str, Any]) -> str:
    """The side-by-side augmentation table of every model, with its targets."""
    summary = report.get("augmentation") or []
    if not summary:
        return ""
    lines = [
        "",
        "# Augmentation: input pipeline alone and training, per model",
        "",
        "Pipeline alone: images/s of the training stream with no model, in steady state (one "
        "iterator over many epochs, the first untimed). Training: segexp's images/s with the "
        "augmentation over the same without it, from the same round.",
        "",
        "| model | input | augmentation | segexp pipeline images/s | Python loop images/s "
        "| pipeline ratio | >= 2 | training images/s aug / none | training ratio | >= 0.9 |",
        "|---|---|---|---:|---:|---:|---|---:|---:|---|",
    ]

    def mean(values: list[float]) -> float:
        return sum(values) / len(values)

    for s in summary:
        pipe, pipe_mean = _ratio_cell(s["pipeline"])
        train, train_mean = _ratio_cell(s["training"])
        seg = f"{mean([a for a, _ in s['pipeline']]):.0f}" if s["pipeline"] else "n/a"
        py = f"{mean([b for _, b in s['pipeline']]):.0f}" if s["pipeline"] else "n/a"
        rates = (
            f"{mean([a for a, _ in s['training']]):.1f} / {mean([b for _, b in s['training']]):.1f}"
            if s["training"]
            else "n/a"
        )
        lines.append(
            f"| {s['model']} | {s['input']} | {s['augmentation']} | {seg} | {py} | {pipe} "
            f"| {_met(pipe_mean, 2.0)} | {rates} | {train} | {_met(train_mean, 0.9)} |"
        )
    return "\n".join(lines)


def _met(value: float | None, goal: float) -> str:
    return "n/a" if value is None else ("yes" if value >= goal else "no")
