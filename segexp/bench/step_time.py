"""Train-step time with one shared confusion matrix against one matrix per metric.

Train-step time with the confusion-matrix metrics sharing one matrix per step (segexp's
metrics) against one matrix per metric, on (b)'s model and tensors (``bench.metric_matrices``).
"""

from __future__ import annotations

from typing import Any

from segexp.bench.timing import make_timer, median

MODES = {"shared": True, "per metric": False}


def _step_seconds(bench: Any, shared: bool) -> float:
    """Median seconds per training step (epochs after the warm-up, no validation) of a fresh
    build recompiled with ``build_metrics(shared=shared)``."""
    from segexp.metrics import build_metrics

    model, _, fit = bench.keras_tensors()
    source = bench.source
    model.compile(
        optimizer=model.optimizer,
        loss=model.loss,
        metrics=build_metrics(
            head=bench.head,
            num_classes=source.num_classes,
            class_names=list(source.class_names),
            ignore_value=source.ignore_value,
            shared=shared,
        ),
        jit_compile=bench.options.jit_compile,
    )
    timer = make_timer(bench.n_train, bench.batch_size)
    model.fit(
        **fit,
        batch_size=bench.batch_size,
        epochs=bench.warmup + bench.epochs,
        callbacks=[timer],
        shuffle=True,
        verbose=0,
    )
    return median(timer.epoch_train_seconds[bench.warmup :]) / bench.steps


def metric_step_times(bench: Any, rounds: int) -> list[dict[str, Any]]:
    """Per round: the step time of each mode; even rounds run ``per metric`` first."""
    rows = []
    for number in range(1, rounds + 1):
        order = list(MODES) if number % 2 else list(reversed(MODES))
        times = {mode: _step_seconds(bench, MODES[mode]) for mode in order}
        rows.append({"round": number, **times})
        print(
            f"segexp-bench: train step, metrics' confusion matrix shared {times['shared']:.4f} s, "
            f"one per metric {times['per metric']:.4f} s (round {number})",
            flush=True,
        )
    return rows


def render_step_times(rows: list[dict[str, Any]], metrics: int) -> list[str]:
    """The table of :func:`metric_step_times` (``metrics``: how many confusion-matrix metrics)."""
    if not rows:
        return []
    lines = [
        "",
        f"Train step time of (b)'s model and tensors with its {metrics} confusion-matrix metrics "
        "computing one matrix per step (shared) or one each (per metric); median step of the "
        "timed epochs, no validation.",
        "",
        "| round | shared ms/step | per metric ms/step | per metric / shared |",
        "|---:|---:|---:|---:|",
    ]
    for row in rows:
        shared, each = row["shared"], row["per metric"]
        lines.append(
            f"| {row['round']} | {shared * 1e3:.1f} | {each * 1e3:.1f} | {each / shared:.3f} |"
        )
    return lines
