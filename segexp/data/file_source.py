"""Image/mask files as a :class:`DataSource`: validated eagerly, then streamed.

Class:`DataSource`: the samples validated eagerly (see :mod:`segexp.data.validate`), then
streamed. Each split is a ``tf.data`` pipeline that decodes files in parallel
(``tf.numpy_function`` around Pillow / tifffile), so the data never has to fit in memory; the
training pipeline's ``cache`` keeps decoded, resized samples after the first epoch. The shared
backend of the folder loader and the file-based presets (oxford_pets, dsb2018, isbi2012 slices)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from segexp.data import decode
from segexp.data import split as splitlib
from segexp.data.geometry import apply_geometry, tiles_per_image
from segexp.data.keys import class_info, fill_value, opt
from segexp.data.mask_map import mask_map_from_cfg
from segexp.data.pairing import Sample
from segexp.data.source import DataSource, index_dataset
from segexp.data.validate import read_merged_mask, validate_samples
from segexp.errors import ConfigError

log = logging.getLogger(__name__)


def build_file_source(
    name: str,
    samples: Sequence[Sample],
    cfg: Any,
    image_size: tuple[int, int],
    channels: int,
    seed: int,
    *,
    root: Path,
    skipped: list[str] | None = None,
    extra: dict[str, Any] | None = None,
    instance_fn: Callable[[Sample], np.ndarray] | None = None,
) -> DataSource:
    """Validate ``samples`` and stream them as a :class:`DataSource` split by ``cfg.split``.

    ``instance_fn(sample) -> [H, W]`` object ids adds ``DataSource.instances``: the same
    splits, tiling and resizing (nearest neighbour) applied to the object ids."""
    num_classes, class_names = class_info(cfg)
    mask_map = mask_map_from_cfg(cfg, num_classes)
    skipped = [] if skipped is None else skipped
    samples = sorted(samples, key=lambda s: s.name)
    checked = validate_samples(samples, mask_map, channels=channels, cfg=cfg, skipped=skipped)
    good = [c.sample for c in checked]
    palette = str(cfg.mask_palette)

    def load_fn(i: int) -> tuple[np.ndarray, np.ndarray]:
        s = good[i]
        image = decode.read_image(s.image, channels)
        mask = mask_map.apply(read_merged_mask(s, palette))[..., None]
        return image, mask

    fractions = splitlib.split_fractions(cfg.get("split"))
    idx = splitlib.split_indices(len(good), fractions, seed)
    idx["train"] = splitlib.limit(idx["train"], cfg.get("train_size"), seed)
    tile = opt(cfg, "tile")
    fill = fill_value(cfg)
    splits, sizes = {}, {}
    for key in splitlib.SPLITS:
        ds = index_dataset(len(good), load_fn, channels, idx[key])
        splits[key] = apply_geometry(ds, cfg, image_size, fill)
        sizes[key] = int(sum(tiles_per_image(checked[i].shape, tile) for i in idx[key]))
    instances = None
    if instance_fn is not None:

        def load_ids(i: int) -> tuple[np.ndarray, np.ndarray]:
            ids = np.asarray(instance_fn(good[i]), np.int32)
            return np.zeros((*ids.shape, 1), np.float32), ids[..., None]

        instances = {
            key: apply_geometry(
                index_dataset(len(good), load_ids, 1, idx[key]), cfg, image_size, 0
            ).map(lambda _image, ids: ids)
            for key in splitlib.SPLITS
        }
    if tile and sizes["train"] == 0:
        raise ConfigError(f"dataset.tile={tile} is larger than the training images")
    counts_all = np.sum([c.counts for c in checked], axis=0)
    counts_train = (
        np.sum([checked[i].counts for i in idx["train"]], axis=0)
        if len(idx["train"])
        else np.zeros(num_classes)
    )
    total = int(sum(c.shape[0] * c.shape[1] for c in checked))
    info = splitlib.lineage(
        sizes,
        counts_train,
        counts_all,
        class_names,
        ignored=sum(c.ignored for c in checked),
        total_pixels=total,
    )
    fp_mode = str(cfg.fingerprint)
    fingerprint = ""
    if fp_mode != "none":
        parts = []
        for c in checked:
            rels = [_rel(p, root) for p in (c.sample.image, *c.sample.masks)]
            parts.extend(f"{r}:{d}" for r, d in zip(rels, c.digests, strict=True))
        fingerprint = splitlib.digest(parts)
    info.update(
        {
            "num_samples": len(good),
            "skipped": list(skipped),
            "num_skipped": len(skipped),
            "image_shapes": _shape_summary([c.shape for c in checked]),
            "fingerprint_mode": fp_mode,
        }
    )
    info.update(extra or {})
    if skipped:
        log.warning("%s: skipped %d bad sample(s) (dataset.skip_bad=true)", name, len(skipped))
    return DataSource(
        name=name,
        splits=splits,
        sizes=sizes,
        num_classes=num_classes,
        class_names=class_names,
        channels=channels,
        ignore_value=cfg.get("ignore_value"),
        root=str(root),
        fingerprint=fingerprint,
        labels=None,
        extra=info,
        instances=instances,
    )


def _rel(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return path.name


def _shape_summary(shapes: Sequence[tuple[int, int]]) -> str:
    uniq = sorted(set(shapes))
    if len(uniq) == 1:
        return f"{uniq[0][0]}x{uniq[0][1]}"
    hs, ws = [s[0] for s in shapes], [s[1] for s in shapes]
    return f"{len(uniq)} sizes, {min(hs)}..{max(hs)} x {min(ws)}..{max(ws)}"
