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

from segexp.bench.measure import machine_info, measure_peaks
from segexp.bench.memory import memory_probe
from segexp.bench.report import render, targets
from segexp.bench.variants import Bench, aug_config
from segexp.config import CONF_DIR
from segexp.errors import ConfigError, SegexpError


def run_bench(cfg: DictConfig, command: str = "segexp-bench") -> dict[str, Any]:
    """Run every variant of ``cfg.bench`` and write the Markdown table; returns the report."""
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
        rounds = int(bcfg.get("rounds", 1))
        if rounds < 1:
            raise ConfigError(f"bench.rounds={rounds}: expected at least 1")
        for scenario in scenarios:
            aug = aug_config(cfg, scenario)
            for r in range(1, rounds + 1):
                rows += _round(bench, scenario, aug, r)
        # With augmentation, (a) against the plain fit without it: what augmenting costs.
        plain = [row["result"].images_per_sec for row in rows if row["result"].variant[0] == "b"]
        for row in rows:
            if row["result"].variant[0] == "a" and row["result"].scenario != "none":
                row["a_b"] = row["result"].images_per_sec / (sum(plain) / len(plain))
        memory = []
        if bool(bcfg.memory.enabled):
            size = bcfg.memory.get("image_size")
            memory = memory_probe(
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
        "rounds": int(bcfg.get("rounds", 1)),
        "epochs": bench.epochs,
        "precision": bench.options.precision,
        "jit": bench.options.jit_compile,
        "distribute": bench.options.distribute,
        "validation": bench.validation,
        "rows": rows,
        "targets": targets(rows),
        "memory": memory,
        "memory_note": (
            f"{int(bcfg.memory.num_images)} single-channel images of "
            f"{'x'.join(str(v) for v in (bcfg.memory.get('image_size') or bench.shape[:2]))}, "
            "one subprocess each, two passes of make_dataset(training=True) without a model; "
            "in memory = NumPy arrays + from_tensor_slices + cache; streamed = PNG files via "
            "the folder loader, cache off (shuffle buffer 256 = make_dataset's default "
            "for streaming, or 64)."
        ),
    }
    report["total_s"] = time.perf_counter() - started
    text = render(report)
    output = bcfg.get("output")
    if output:
        path = Path(str(output))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        report["output"] = str(path)
    print(text, flush=True)
    return report


def _round(bench: Bench, scenario: str, aug: DictConfig, number: int) -> list[dict[str, Any]]:
    """(a) and its baseline, (b) without augmentation or (c) with it, one after the other; even
    rounds run the baseline first, so a machine that speeds up or slows down during the
    benchmark favours neither."""
    run_a = partial(bench.run_segexp, scenario, aug)
    if scenario == "none":
        run_base, key = partial(bench.run_keras, scenario), "a_b"
    else:
        run_base, key = partial(bench.run_python, scenario, aug), "a_c"
    if number % 2:
        a, base = run_a(), run_base()
    else:
        base, a = run_base(), run_a()
    for result in (a, base):
        if result is not None:
            result.round = number
            print(
                f"segexp-bench: {scenario} round {number} ({result.variant}) "
                f"{result.images_per_sec:.1f} images/s",
                flush=True,
            )
    if base is None:  # no Python baseline for this augmentation
        return [{"result": a}]
    return [{"result": a, key: a.images_per_sec / base.images_per_sec}, {"result": base}]


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="bench")
def main(cfg: DictConfig) -> None:
    """``segexp-bench [overrides]``: benchmark the configured training path (see module doc)."""
    from segexp.cli import import_tensorflow

    import_tensorflow(bool(cfg.get("verbose", False)))  # its start-up lines only if verbose=true
    try:
        run_bench(cfg, command=" ".join(["segexp-bench", *sys.argv[1:]]))
    except SegexpError as err:
        if os.environ.get("SEGEXP_TRACEBACK"):
            raise
        print(f"segexp-bench: error: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
