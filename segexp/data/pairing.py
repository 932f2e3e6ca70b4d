"""Listing image and mask files and pairing them by stem or by pattern.

By file stem (``a.png`` <-> ``a.png``/``a.gif``), or by regular expressions applied to the stems
whose first group (or group ``key``) is the pairing key, e.g. ``image_pattern:
'(\\d+)_training'`` and ``mask_pattern: '(\\d+)_manual1'``."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from segexp.config.schema.dataset import IMAGE_EXTENSIONS
from segexp.errors import ConfigError, DataError

FIRST_NAMES = 3


@dataclass
class Sample:
    """One image with one or more mask files (several are merged by maximum, e.g. DSB2018)."""

    name: str
    image: Path
    masks: list[Path]


def list_files(
    directory: Path, extensions: Sequence[str] = IMAGE_EXTENSIONS, recursive: bool = False
) -> list[Path]:
    """Image files in ``directory`` (hidden files such as macOS ``._x.png`` excluded), sorted."""
    exts = {e.lower() if e.startswith(".") else f".{e.lower()}" for e in extensions}
    it = directory.rglob("*") if recursive else directory.iterdir()
    return sorted(
        p for p in it if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in exts
    )


def _key_fn(pattern: str | None, what: str) -> Callable[[Path], str | None]:
    if not pattern:
        return lambda p: p.stem
    try:
        regex = re.compile(pattern)
    except re.error as err:
        raise ConfigError(
            f"dataset.{what}={pattern!r}: invalid regular expression ({err})"
        ) from None

    def key(p: Path) -> str | None:
        m = regex.fullmatch(p.stem) or regex.fullmatch(p.name) or regex.search(p.name)
        if m is None:
            return None
        if "key" in m.groupdict():
            return m.group("key")
        return m.group(1) if m.groups() else m.group(0)

    return key


def _index_by_key(
    paths: Sequence[Path], key: Callable[[Path], str | None], what: str
) -> tuple[dict[str, Path], list[Path]]:
    """Paths by pairing key, and the paths that yield no key; a repeated key is an error."""
    by_key: dict[str, Path] = {}
    keyless: list[Path] = []
    for p in paths:
        k = key(p)
        if k is None:
            keyless.append(p)
        elif k in by_key:
            raise DataError(f"{what} {by_key[k]} and {p} have the same pairing key {k!r}")
        else:
            by_key[k] = p
    return by_key, keyless


def pair_files(
    images: Sequence[Path],
    masks: Sequence[Path],
    *,
    image_pattern: str | None = None,
    mask_pattern: str | None = None,
) -> tuple[list[tuple[str, Path, Path]], list[Path], list[Path]]:
    """Pair images with masks by key. Returns ``(pairs, images_without_masks,
    masks_without_images)``; pairs are ``(key, image, mask)`` sorted by key."""
    ikey, mkey = _key_fn(image_pattern, "image_pattern"), _key_fn(mask_pattern, "mask_pattern")
    by_image, lonely_images = _index_by_key(images, ikey, "images")
    by_mask, lonely_masks = _index_by_key(masks, mkey, "masks")
    pairs = [(k, by_image[k], by_mask[k]) for k in sorted(set(by_image) & set(by_mask))]
    lonely_images += [by_image[k] for k in sorted(set(by_image) - set(by_mask))]
    lonely_masks += [by_mask[k] for k in sorted(set(by_mask) - set(by_image))]
    return pairs, sorted(lonely_images), sorted(lonely_masks)


def _display(p: Any) -> str:
    return p.name if isinstance(p, Path) else str(p)


def _names(paths: Sequence[Any]) -> str:
    shown = ", ".join(_display(p) for p in list(paths)[:FIRST_NAMES])
    more = f", ... {len(paths) - FIRST_NAMES} more" if len(paths) > FIRST_NAMES else ""
    return shown + more


def check_unpaired(
    lonely_images: Sequence[Any],
    lonely_masks: Sequence[Any],
    cfg: Any,
    *,
    images_dir: Any = "",
    masks_dir: Any = "",
    hint: str = "pairing: dataset.image_pattern/mask_pattern",
) -> list[str]:
    """One-line DataError for unpaired files, or (``dataset.skip_bad``) the list of them as
    skipped samples."""
    skipped: list[str] = []
    if not lonely_images and not lonely_masks:
        return skipped
    parts = []
    if lonely_images:
        parts.append(
            f"{len(lonely_images)} image(s) without masks in {images_dir} ({_names(lonely_images)})"
        )
    if lonely_masks:
        parts.append(
            f"{len(lonely_masks)} mask(s) without images in {masks_dir} ({_names(lonely_masks)})"
        )
    if not cfg.skip_bad:
        raise DataError("; ".join(parts) + f" ({hint}; dataset.skip_bad=true skips them)")
    skipped.extend(f"{_display(p)}: image without mask" for p in lonely_images)
    skipped.extend(f"{_display(p)}: mask without image" for p in lonely_masks)
    return skipped


def paired_samples(
    images: Sequence[Path],
    masks: Sequence[Path],
    cfg: Any,
    images_dir: Path,
    masks_dir: Path,
    *,
    what: str = "image/mask",
) -> tuple[list[Sample], list[str]]:
    """Pair image and mask files (by stem or ``dataset.image_pattern`` / ``mask_pattern``).

    Unpaired files fail with one line, or are recorded in the returned skipped list when
    ``dataset.skip_bad`` is true.
    """
    pairs, lonely_images, lonely_masks = pair_files(
        images, masks, image_pattern=cfg.get("image_pattern"), mask_pattern=cfg.get("mask_pattern")
    )
    skipped = check_unpaired(
        lonely_images, lonely_masks, cfg, images_dir=images_dir, masks_dir=masks_dir
    )
    if not pairs:
        raise DataError(f"no {what} pairs in {images_dir} and {masks_dir}")
    return [Sample(k, i, [m]) for k, i, m in pairs], skipped
