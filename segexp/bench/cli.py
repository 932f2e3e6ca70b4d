"""``segexp-bench [overrides]``: run every variant and write the Markdown table."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig

from segexp.bench.measure import machine_info, measure_peaks
from segexp.bench.memory import memory_probe
from segexp.bench.report import render, targets
from segexp.bench.variants import Bench, Result, aug_config
from segexp.config import CONF_DIR
from segexp.errors import SegexpError


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
        keras_result: Result | None = None
        scenarios = [str(s) for s in bcfg.augmentations]
        if "none" not in scenarios:
            scenarios.insert(0, "none")
        for scenario in scenarios:
            aug = aug_config(cfg, scenario)
            a = bench.run_segexp(scenario, aug)
            print(f"segexp-bench: {scenario} (a) {a.images_per_sec:.1f} images/s", flush=True)
            if scenario == "none":
                keras_result = bench.run_keras(scenario)
                print(f"segexp-bench: (b) {keras_result.images_per_sec:.1f} images/s", flush=True)
            c = bench.run_python(scenario, aug) if scenario != "none" else None
            if c is not None:
                print(f"segexp-bench: {scenario} (c) {c.images_per_sec:.1f} images/s", flush=True)
            a_b = a.images_per_sec / keras_result.images_per_sec if keras_result else None
            a_c = a.images_per_sec / c.images_per_sec if c else None
            rows.append({"result": a, "a_b": a_b, "a_c": a_c})
            if scenario == "none" and keras_result is not None:
                rows.append({"result": keras_result})
            if c is not None:
                rows.append({"result": c})
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


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="bench")
def main(cfg: DictConfig) -> None:
    """``segexp-bench [overrides]``: benchmark the configured training path (see module doc)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        run_bench(cfg, command=" ".join(["segexp-bench", *sys.argv[1:]]))
    except SegexpError as err:
        if os.environ.get("SEGEXP_TRACEBACK"):
            raise
        print(f"segexp-bench: error: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
