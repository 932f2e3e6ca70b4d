"""``segexp-bench [overrides]``: run every variant and write the Markdown table."""

from __future__ import annotations

import os
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig

from segexp.bench.checks import loss_check
from segexp.bench.measure import machine_info, measure_peaks
from segexp.bench.memory import memory_probe
from segexp.bench.report import augmentation_summary, render, render_augmentation, targets
from segexp.bench.step_time import metric_step_times
from segexp.bench.variants import Bench, aug_config
from segexp.config import CONF_DIR
from segexp.errors import ConfigError, SegexpError


def run_bench(
    cfg: DictConfig, command: str = "segexp-bench", model_cfgs: list[DictConfig] | None = None
) -> dict[str, Any]:
    """Run every variant of ``cfg.bench`` for each model (``model_cfgs``: the composed config
    of each ``bench.models`` entry; default the run's own) and write the Markdown tables;
    returns the report (the first model's, with ``models``: every model's)."""
    started = time.perf_counter()
    reports = [
        _bench_model(mcfg, command, memory=i == 0) for i, mcfg in enumerate(model_cfgs or [cfg])
    ]
    report = {**reports[0], "models": reports}
    report["augmentation"] = augmentation_summary(reports)
    report["total_s"] = time.perf_counter() - started
    text = "\n\n".join(render(r) for r in reports) + render_augmentation(report)
    text += f"\n\nTotal benchmark time: {report['total_s']:.0f} s.\n"
    output = cfg.bench.output
    if output:
        path = Path(str(output))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        report["output"] = str(path)
    print(text, flush=True)
    return report


def _bench_model(cfg: DictConfig, command: str, memory: bool) -> dict[str, Any]:
    """Every variant of ``cfg.bench`` for ``cfg.model``: the report of one model."""
    import tempfile

    started = time.perf_counter()
    bcfg = cfg.bench
    info = machine_info()
    with tempfile.TemporaryDirectory(prefix="segexp-bench-") as tmp:
        workdir = Path(tmp)
        bench = Bench(cfg, workdir)
        peaks = measure_peaks(
            int(bcfg.peak.matmul_size),
            (int(bcfg.peak.conv_batch), *bench.shape[:2], int(bcfg.peak.conv_channels)),
            int(bcfg.peak.repeats),
        )
        rows: list[dict[str, Any]] = []
        scenarios = [str(s) for s in bcfg.augmentations]
        if "none" not in scenarios:
            scenarios.insert(0, "none")
        rounds = int(bcfg.rounds)
        if rounds < 1:
            raise ConfigError(f"bench.rounds={rounds}: expected at least 1")
        baselines = bool(bcfg.baselines)
        # round by round, so that each augmentation's run sits next to the one without it
        for r in range(1, rounds + 1):
            for scenario in scenarios:
                rows += _round(bench, scenario, aug_config(cfg, scenario), r, baselines)
        order = {s: i for i, s in enumerate(scenarios)}
        rows.sort(key=lambda row: (order[row["result"].scenario], row["result"].round))
        # With augmentation, (a) against the plain fit without it: what augmenting costs.
        plain = [row["result"].images_per_sec for row in rows if row["result"].variant[0] == "b"]
        for row in rows:
            if plain and row["result"].variant[0] == "a" and row["result"].scenario != "none":
                row["a_b"] = row["result"].images_per_sec / (sum(plain) / len(plain))
        step_times = []
        if bcfg.metric_matrices:
            if bench.task == "reconstruction":
                raise ConfigError(
                    f"bench.metric_matrices=true: model {cfg.model.name} (task reconstruction) "
                    "has no confusion-matrix metrics; set bench.metric_matrices=false"
                )
            step_times = metric_step_times(bench, rounds)
        memory_rows: list[dict[str, Any]] = []
        if memory and bool(bcfg.memory.enabled):
            size = bcfg.memory.image_size
            memory_rows = memory_probe(
                bench,
                int(bcfg.memory.num_images),
                workdir,
                tuple(int(v) for v in size) if size else None,
            )
    h, w, c = bench.shape
    report = {
        "machine": info,
        "load_end": " ".join(f"{v:.2f}" for v in os.getloadavg()),
        "command": command,
        "model": {
            "name": str(cfg.model.name),
            "input": f"{h}x{w}x{c}",
            "params": bench.params,
            "flops": bench.flops,
        },
        "peaks": peaks,
        "batch_size": bench.batch_size,
        "steps": bench.steps,
        "images": bench.n_train,
        "warmup": bench.warmup,
        "rounds": rounds,
        "epochs": bench.epochs,
        "precision": bench.options.precision,
        "jit": bench.options.jit_compile,
        "distribute": bench.options.distribute,
        "validation": bench.validation,
        "rows": rows,
        "targets": targets(rows),
        "memory": memory_rows,
        "step_times": step_times,
        "confusion_metrics": 3 + int(bench.source.num_classes),
        "memory_note": (
            f"{int(bcfg.memory.num_images)} single-channel images of "
            f"{'x'.join(str(v) for v in (bcfg.memory.image_size or bench.shape[:2]))}, "
            "one subprocess each, two passes of make_dataset(training=True) without a model; "
            "in memory = NumPy arrays + from_tensor_slices + cache; streamed = PNG files via "
            "the folder loader, cache off (shuffle buffer 256 = make_dataset's default "
            "for streaming, or 64)."
        ),
    }
    report["total_s"] = time.perf_counter() - started
    return report


def _round(
    bench: Bench, scenario: str, aug: DictConfig, number: int, baselines: bool = True
) -> list[dict[str, Any]]:
    """(a) and its baseline, (b) without augmentation or (c) with it, one after the other; even
    rounds run the baseline first, so a machine that speeds up or slows down during the
    benchmark favours neither. Without ``baselines`` only (a) trains, and for an augmentation
    the Python loop's pipeline alone is measured beside it."""
    run_a = partial(bench.run_segexp, scenario, aug, number)
    if scenario == "none":
        run_base, key = partial(bench.run_keras, scenario), "a_b"
    else:
        run_base, key = partial(bench.run_python, scenario, aug), "a_c"
    if not baselines:
        run_base = (lambda: None) if scenario == "none" else partial(_python_rate, bench, aug)
    if number % 2:
        a, base = run_a(), run_base()
    else:
        base, a = run_base(), run_a()
    for result in (a, base):
        if result is not None and not isinstance(result, float):
            result.round = number
            print(
                f"segexp-bench: {bench.cfg.model.name} {scenario} round {number} "
                f"({result.variant}) {result.images_per_sec:.1f} images/s",
                flush=True,
            )
    if isinstance(base, float):  # the Python loop's pipeline alone, no training
        return [{"result": a, "python_pipeline": base}]
    if base is None:  # no baseline for this augmentation, or baselines off
        return [{"result": a}]
    check = loss_check(a, base)
    if check["why"]:
        print(f"segexp-bench: {bench.cfg.model.name} {check['why']}", flush=True)
    row = {"result": a, key: a.images_per_sec / base.images_per_sec, "loss_check": check}
    return [{**row, "python_pipeline": base.pipeline_images_per_sec}, {"result": base}]


def _python_rate(bench: Bench, aug: DictConfig) -> float | None:
    return bench.python_pipeline_rate(aug)


def _model_configs(cfg: DictConfig) -> list[DictConfig] | None:
    """The composed config of each ``bench.models`` entry (the command's other overrides
    kept), or None for the run's own model."""
    models = [str(m) for m in cfg.bench.models]
    if not models:
        return None
    from hydra import compose
    from hydra.core.hydra_config import HydraConfig

    task = [o for o in HydraConfig.get().overrides.task if not o.startswith("model=")]
    return [compose(config_name="bench", overrides=[*task, f"model={m}"]) for m in models]


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="bench")
def main(cfg: DictConfig) -> None:
    """``segexp-bench [overrides]``: benchmark the configured training path (see module doc)."""
    from segexp.cli import import_tensorflow

    import_tensorflow(bool(cfg.verbose))  # its start-up lines only if verbose=true
    try:
        command = " ".join(["segexp-bench", *sys.argv[1:]])
        run_bench(cfg, command=command, model_cfgs=_model_configs(cfg))
    except SegexpError as err:
        if os.environ.get("SEGEXP_TRACEBACK"):
            raise
        print(f"segexp-bench: error: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
