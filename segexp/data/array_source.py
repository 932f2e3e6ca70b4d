"""In-memory or memory-mapped arrays as a :class:`DataSource`.

Mask format (index or one-hot), values checked chunk by chunk, splits streamed sample by sample.
The backend of the NumPy (``dataset=arrays``), TIFF-stack (isbi2012) and MNIST loaders."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from segexp.data import decode
from segexp.data import split as splitlib
from segexp.data.geometry import apply_geometry, tiles_per_image
from segexp.data.keys import class_info, fill_value, opt
from segexp.data.mask_map import MaskMap, mask_map_from_cfg
from segexp.data.source import DataSource, index_dataset
from segexp.errors import ConfigError, DataError

CHUNK = 64


def _mask_format(masks: np.ndarray, fmt: str, num_classes: int, name: str) -> str:
    if fmt not in ("auto", "index", "onehot"):
        raise ConfigError(f"dataset.mask_format={fmt!r}: expected auto, index or onehot")
    if fmt == "auto":
        fmt = "onehot" if masks.ndim == 4 and masks.shape[-1] > 1 else "index"
    if fmt == "onehot":
        if masks.ndim != 4:
            raise DataError(f"{name}: one-hot masks must be [N,H,W,K], got {masks.shape}")
        if masks.shape[-1] != num_classes:
            raise ConfigError(
                f"{name}: one-hot masks have {masks.shape[-1]} channels but "
                f"dataset.num_classes={num_classes}"
            )
    elif not (masks.ndim == 3 or (masks.ndim == 4 and masks.shape[-1] == 1)):
        raise DataError(f"{name}: index masks must be [N,H,W] or [N,H,W,1], got {masks.shape}")
    return fmt


def _ids(raw: np.ndarray, fmt: str, mask_map: MaskMap) -> np.ndarray:
    """Class ids ``[n, H, W]`` of a chunk of masks; -1 marks invalid pixels."""
    if fmt == "onehot":
        raw = np.asarray(raw)
        ids = np.argmax(raw, axis=-1).astype(np.int32)
        empty = ~np.any(raw > 0, axis=-1)
        ids[empty] = -1 if mask_map.ignore_value is None else mask_map.ignore_value
        return ids
    raw = np.asarray(raw)
    if raw.ndim == 4:
        raw = raw[..., 0]
    return mask_map.apply(decode.integral(raw))


def build_array_source(
    name: str,
    images: np.ndarray,
    masks: np.ndarray | None,
    cfg: Any,
    image_size: tuple[int, int],
    channels: int,
    seed: int,
    *,
    root: str | None,
    names: tuple[str, str] = ("images", "masks"),
    split_idx: Mapping[str, np.ndarray] | None = None,
    labels: np.ndarray | None = None,
    fingerprint: str = "",
    mask_format: str = "auto",
    num_classes: int | None = None,
    class_names: list[str] | None = None,
    extra: dict[str, Any] | None = None,
) -> DataSource:
    """Validate arrays and wrap them as a :class:`DataSource`.

    ``masks=None`` gives all-zero dummy masks (reconstruction tasks). ``split_idx`` fixes the
    splits; otherwise they are drawn from ``cfg.split`` and ``seed``. ``mask_format``: index,
    onehot or auto (from the masks' shape); ``dataset=arrays`` passes its ``mask_format`` key.
    """
    if num_classes is None or class_names is None:
        num_classes, class_names = class_info(cfg)
    mask_map = mask_map_from_cfg(cfg, num_classes)
    if images.ndim not in (3, 4):
        raise DataError(f"{names[0]}: images must be [N,H,W] or [N,H,W,C], got {images.shape}")
    n = len(images)
    skipped: list[str] = []
    counts = np.zeros((n, num_classes), np.int64)
    ignored = 0
    fmt = "none"
    bad: list[tuple[int, str]] = []
    if masks is not None:
        if len(masks) != n:
            raise DataError(f"{names[0]} has {n} samples but {names[1]} has {len(masks)}")
        if tuple(masks.shape[1:3]) != tuple(images.shape[1:3]):
            raise DataError(
                f"{names[0]} ({images.shape[1]}x{images.shape[2]}) and {names[1]} "
                f"({masks.shape[1]}x{masks.shape[2]}) differ in size"
            )
        fmt = _mask_format(masks, str(mask_format), num_classes, names[1])
        for start in range(0, n, CHUNK):
            raw = np.asarray(masks[start : start + CHUNK])
            if fmt == "index":
                plane = raw[..., 0] if raw.ndim == 4 else raw
                plane = decode.integral(plane, names[1])
                for j in range(len(plane)):
                    values = mask_map.invalid_values(plane[j])
                    if values:
                        bad.append(
                            (
                                start + j,
                                f"{names[1]}[{start + j}] has values {values} "
                                f"outside the class map (accepted stored values "
                                f"{mask_map.describe()}; set dataset.mask_values)",
                            )
                        )
                ids = mask_map.apply(plane)
            else:
                ids = _ids(raw, fmt, mask_map)
                for j in np.flatnonzero((ids < 0).reshape(len(ids), -1).any(axis=1)):
                    bad.append(
                        (
                            start + int(j),
                            f"{names[1]}[{start + int(j)}] is one-hot with "
                            "unlabelled pixels (all channels 0); set dataset.ignore_value",
                        )
                    )
            for j in range(len(ids)):
                c = mask_map.class_counts(ids[j])
                counts[start + j] = c
                ignored += int(ids[j].size - c.sum())
        if bad:
            if not cfg.skip_bad:
                more = f" (and {len(bad) - 1} more bad sample(s))" if len(bad) > 1 else ""
                raise DataError(f"{bad[0][1]}{more}; dataset.skip_bad=true skips bad samples")
            skipped = [msg for _, msg in bad]
    bad_idx = {i for i, _ in bad}
    keep = np.array([i for i in range(n) if i not in bad_idx], np.int64)
    if split_idx is None:
        fractions = splitlib.split_fractions(cfg.get("split"))
        local = splitlib.split_indices(len(keep), fractions, seed)
        split_idx = {k: keep[v] for k, v in local.items()}
    else:
        split_idx = {
            k: np.asarray([i for i in v if int(i) not in bad_idx], np.int64)
            for k, v in split_idx.items()
        }
    split_idx = dict(split_idx)
    split_idx["train"] = splitlib.limit(split_idx["train"], cfg.get("train_size"), seed)
    scaling = decode.value_range(images)  # one range for the whole array
    zeros = np.zeros(images.shape[1:3] + (1,), np.int32)

    def load_fn(i: int) -> tuple[np.ndarray, np.ndarray]:
        image = decode.to_float(np.asarray(images[i]), scaling=scaling)
        image = decode.convert_channels(image, channels, f"{names[0]}[{i}]")
        if masks is None:
            return image, zeros
        return image, _ids(np.asarray(masks[i : i + 1]), fmt, mask_map)[0][..., None]

    tile = opt(cfg, "tile")
    per_image = tiles_per_image(tuple(images.shape[1:3]), tile)
    if tile and per_image == 0:
        raise ConfigError(
            f"dataset.tile={tile} is larger than the images ({images.shape[1]}x{images.shape[2]})"
        )
    splits, sizes = {}, {}
    fill = fill_value(cfg)
    for key in splitlib.SPLITS:
        idx = np.asarray(split_idx.get(key, np.zeros(0, np.int64)), np.int64)
        split_idx[key] = idx
        ds = index_dataset(n, load_fn, channels, idx)
        splits[key] = apply_geometry(ds, cfg, image_size, fill)
        sizes[key] = int(len(idx) * per_image)
    info: dict[str, Any] = {
        "num_samples": int(len(keep)),
        "image_shapes": f"{images.shape[1]}x{images.shape[2]}",
        "mask_format": fmt,
        "skipped": skipped,
        "num_skipped": len(skipped),
    }
    if masks is not None:
        info.update(
            splitlib.lineage(
                sizes,
                counts[split_idx["train"]].sum(axis=0),
                counts[keep].sum(axis=0),
                class_names,
                ignored=ignored,
                total_pixels=n * images.shape[1] * images.shape[2],
            )
        )
    else:
        info["split_sizes"] = dict(sizes)
    info.update(extra or {})
    split_labels = None
    if labels is not None:
        split_labels = {k: np.asarray(labels)[split_idx[k]] for k in splitlib.SPLITS}
    return DataSource(
        name=name,
        splits=splits,
        sizes=sizes,
        num_classes=num_classes,
        class_names=list(class_names),
        channels=channels,
        ignore_value=cfg.get("ignore_value"),
        root=root,
        fingerprint=fingerprint,
        labels=split_labels,
        extra=info,
    )
