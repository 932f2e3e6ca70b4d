"""Eager checks of image/mask samples before streaming.

Every mask decoded (values, sizes, readability), images too with ``validate: full``, in threads;
bad samples fail in one line or are skipped with ``dataset.skip_bad``."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from segexp.data import decode
from segexp.data import split as splitlib
from segexp.data.mask_map import MaskMap
from segexp.data.pairing import Sample
from segexp.errors import ConfigError, DataError

log = logging.getLogger(__name__)

VALIDATE_MODES = ("full", "quick")


@dataclass
class Checked:
    """What the eager check of one sample found."""

    sample: Sample
    shape: tuple[int, int] = (0, 0)
    counts: np.ndarray | None = None
    ignored: int = 0
    digests: list[str] = field(default_factory=list)
    error: str | None = None


def read_merged_mask(
    sample: Sample, palette: str = "auto", datas: Sequence[bytes | None] | None = None
) -> np.ndarray:
    """The sample's stored mask values, merged over its mask files by maximum."""
    merged = None
    for i, path in enumerate(sample.masks):
        plane = decode.read_mask(path, datas[i] if datas else None, palette)
        if merged is not None and plane.shape != merged.shape:
            raise DataError(
                f"masks {sample.masks[0]} ({merged.shape[0]}x{merged.shape[1]}) and "
                f"{path} ({plane.shape[0]}x{plane.shape[1]}) differ in size"
            )
        merged = plane if merged is None else np.maximum(merged, plane)
    assert merged is not None
    return merged


def check_sample(
    sample: Sample,
    mask_map: MaskMap,
    *,
    channels: int,
    validate: str = "full",
    palette: str = "auto",
    fingerprint: str = "content",
) -> Checked:
    """Decode and check one sample; errors are returned (one line), not raised."""
    out = Checked(sample)
    try:
        paths = [sample.image, *sample.masks]
        datas: list[bytes | None] = []
        for p in paths:
            try:
                datas.append(p.read_bytes())
            except OSError as err:
                raise DataError(f"cannot read {p}: {err.strerror or err}") from None
        if fingerprint == "content":
            out.digests = [splitlib.file_digest(p, d) for p, d in zip(paths, datas, strict=True)]
        elif fingerprint == "stat":
            out.digests = [f"{len(d)}" for d in datas]
        if validate == "full":
            img = decode.read_image(sample.image, channels, datas[0])
            shape = (int(img.shape[0]), int(img.shape[1]))
        else:
            shape = decode.image_shape(sample.image, datas[0])
        raw = read_merged_mask(sample, palette, datas[1:])
        if raw.shape != shape:
            first = sample.masks[0] if len(sample.masks) == 1 else f"{sample.masks[0].parent}/*"
            raise DataError(
                f"image {sample.image} ({shape[0]}x{shape[1]}) and mask {first} "
                f"({raw.shape[0]}x{raw.shape[1]}) differ in size"
            )
        bad = mask_map.invalid_values(raw)
        if bad:
            where = sample.masks[0] if len(sample.masks) == 1 else f"{sample.masks[0].parent}/*"
            raise DataError(
                f"mask {where} has values {bad} outside the class map "
                f"(accepted stored values {mask_map.describe()}; set "
                "dataset.mask_values / dataset.ignore_value)"
            )
        ids = mask_map.apply(raw)
        out.shape = shape
        out.counts = mask_map.class_counts(ids)
        out.ignored = int(ids.size - out.counts.sum())
    except DataError as err:
        out.error = str(err)
    return out


def _workers() -> int:
    return max(2, min(8, 2 * (os.cpu_count() or 1)))


def validate_samples(
    samples: Sequence[Sample],
    mask_map: MaskMap,
    *,
    channels: int,
    cfg: Any,
    skipped: list[str],
) -> list[Checked]:
    """Check every sample eagerly (in threads). Raises one DataError for the first bad sample
    (with the count of others) unless ``skip_bad``, which records them in ``skipped``."""
    validate = str(cfg.validate)
    if validate not in VALIDATE_MODES:
        raise ConfigError(f"dataset.validate={validate!r}: expected one of {VALIDATE_MODES}")
    palette = str(cfg.mask_palette)
    if palette not in ("auto", "index", "gray"):
        raise ConfigError(f"dataset.mask_palette={palette!r}: expected auto, index or gray")
    fingerprint = str(cfg.fingerprint)
    if fingerprint not in ("content", "stat", "none"):
        raise ConfigError(f"dataset.fingerprint={fingerprint!r}: expected content, stat or none")

    def one(s: Sample) -> Checked:
        return check_sample(
            s,
            mask_map,
            channels=channels,
            validate=validate,
            palette=palette,
            fingerprint=fingerprint,
        )

    if len(samples) > 4:
        with ThreadPoolExecutor(_workers()) as pool:
            checked = list(pool.map(one, samples))
    else:
        checked = [one(s) for s in samples]
    bad = [c for c in checked if c.error]
    if bad and not cfg.skip_bad:
        more = f" (and {len(bad) - 1} more bad sample(s))" if len(bad) > 1 else ""
        raise DataError(f"{bad[0].error}{more}; dataset.skip_bad=true skips bad samples")
    for c in bad:
        skipped.append(f"{c.sample.name}: {c.error}")
        log.warning("skipping sample %s: %s", c.sample.name, c.error)
    good = [c for c in checked if not c.error]
    if not good:
        raise DataError("no usable samples left after skipping bad ones")
    return good
