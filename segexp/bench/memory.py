"""Peak memory of an in-memory versus a streamed data set, each in its own subprocess."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from segexp.bench.measure import peak_rss_mb, rss_mb
from segexp.bench.variants import Bench


def _memory_child(kind: str, root: str, cfg_yaml: str, queue: Any) -> None:
    """Subprocess: load the data set in memory or streamed, run two pipeline passes."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        import numpy as np
        import tensorflow as tf

        from segexp.data.pipeline import make_dataset

        cfg = OmegaConf.create(cfg_yaml)
        size = tuple(cfg.size)
        base = rss_mb()
        t0 = time.perf_counter()
        if kind == "in_memory":
            images = np.load(Path(root) / "images.npy")
            masks = np.load(Path(root) / "masks.npy")
            ds = tf.data.Dataset.from_tensor_slices((images, masks))
            cache = True
        else:
            from segexp.config.schema.dataset import FolderConf
            from segexp.data.folder import load

            dcfg = OmegaConf.merge(
                OmegaConf.structured(FolderConf),
                {
                    "images": str(Path(root) / "images"),
                    "masks": str(Path(root) / "masks"),
                    "num_classes": int(cfg.num_classes),
                    "class_names": list(cfg.class_names),
                    "mask_values": None,
                    "image_size": list(size),
                    "channels": int(cfg.channels),
                    "split": {"train": 0.98, "val": 0.01, "test": 0.01},
                    "validate": "quick",
                    "fingerprint": "stat",
                    "cache": False,
                },
            )
            ds = load(dcfg, size, int(cfg.channels), 0).splits["train"]
            cache = False
        load_s = time.perf_counter() - t0
        # None: make_dataset's default (4096 elements cached, 256 streamed).
        buffer = 64 if kind == "streamed_small_shuffle" else None
        batched = make_dataset(
            ds,
            batch_size=int(cfg.batch_size),
            training=True,
            seed=0,
            cache=cache,
            shuffle_buffer=buffer,
        )
        passes = []
        n = 0
        for _ in range(2):
            t0 = time.perf_counter()
            n = 0
            for x, _y in batched:
                n += int(x.shape[0])
            passes.append(time.perf_counter() - t0)
        queue.put(
            {
                "kind": kind,
                "images": n,
                "baseline_mb": base,
                "peak_mb": peak_rss_mb(),
                "load_s": load_s,
                "pass_s": passes[-1],
            }
        )
    except BaseException as err:  # noqa: BLE001 - reported by the parent
        queue.put({"kind": kind, "error": f"{type(err).__name__}: {err}"})


def memory_probe(
    bench: Bench, num_images: int, workdir: Path, size: tuple[int, int] | None = None
) -> list[dict[str, Any]]:
    """Peak RSS of an in-memory (arrays, cache on) vs a streamed (PNG files, cache off) set of
    ``num_images`` images of ``size`` (the bench images, tiled; default: their own size)."""
    import multiprocessing as mp

    import numpy as np
    from PIL import Image

    root = workdir / "memory_data"
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    h, w = size or bench.shape[:2]
    idx = np.arange(num_images) % len(bench.x_train)
    reps = (1, -(-h // bench.x_train.shape[1]), -(-w // bench.x_train.shape[2]), 1)
    images = np.tile(bench.x_train[idx, ..., :1], reps)[:, :h, :w].astype(np.float32)
    masks = np.tile(bench.y_train[idx], reps)[:, :h, :w].astype(np.uint8)
    np.save(root / "images.npy", images)
    np.save(root / "masks.npy", masks)
    for i in range(num_images):
        Image.fromarray((images[i, ..., 0] * 255).round().astype(np.uint8)).save(
            root / "images" / f"{i:06d}.png"
        )
        Image.fromarray(masks[i, ..., 0]).save(root / "masks" / f"{i:06d}.png")
    cfg_yaml = OmegaConf.to_yaml(
        {
            "size": [h, w],
            "channels": 1,
            "num_classes": int(bench.source.num_classes),
            "class_names": [str(n) for n in bench.source.class_names],
            "batch_size": bench.batch_size,
        }
    )
    ctx = mp.get_context("spawn")
    rows = []
    for kind in ("in_memory", "streamed", "streamed_small_shuffle"):
        queue = ctx.Queue()
        proc = ctx.Process(target=_memory_child, args=(kind, str(root), cfg_yaml, queue))
        proc.start()
        try:
            row = queue.get(timeout=600)
        finally:
            proc.join(timeout=60)
        row["data_mb"] = (images.nbytes + masks.nbytes * 4) / 2**20
        rows.append(row)
    return rows
