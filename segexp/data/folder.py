"""The ``folder`` dataset: image and mask folders paired by file stem or pattern.

Image/mask folders: ``dataset=folder dataset.images=<dir> dataset.masks=<dir>``, paired by
file stem or ``dataset.image_pattern`` / ``mask_pattern`` (:mod:`segexp.data.pairing`) and
streamed by :func:`segexp.data.file_source.build_file_source`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from segexp.data.file_source import build_file_source
from segexp.data.keys import resolve
from segexp.data.pairing import list_files, paired_samples
from segexp.data.source import DataSource
from segexp.errors import ConfigError, DataError

LAYOUT = "dataset.images=<dir of images> and dataset.masks=<dir of masks>, paired by file stem"


def check_paths(cfg: Any) -> tuple[Path | None, Path, Path]:
    """``(root, images_dir, masks_dir)``; a one-line error naming the key of a missing one."""
    root = cfg.get("root")
    root_path = Path(str(root)).expanduser() if root not in (None, "") else None
    if root_path is not None and not root_path.exists():
        raise DataError(
            f"dataset.root={root_path} does not exist; expected {LAYOUT} (or dataset.root=null)"
        )
    if not cfg.get("images") or not cfg.get("masks"):
        raise ConfigError(f"dataset=folder needs {LAYOUT} (set both keys)")
    dirs = {key: resolve(root_path, cfg.get(key)) for key in ("images", "masks")}
    for key, d in dirs.items():
        if not d.is_dir():
            under = f" under dataset.root={root_path}" if root_path is not None else ""
            what = "image folder" if key == "images" else "mask folder"
            raise DataError(
                f"{what} {d} does not exist (dataset.{key}={cfg.get(key)}{under}); "
                f"expected {LAYOUT}"
            )
    return root_path, dirs["images"], dirs["masks"]


def load(cfg: Any, image_size: tuple[int, int], channels: int, seed: int) -> DataSource:
    """Load a pair of image/mask folders (keys ``images``, ``masks``, optional ``root``)."""
    root_path, images_dir, masks_dir = check_paths(cfg)
    exts = list(cfg.extensions)
    recursive = bool(cfg.recursive)
    images = list_files(images_dir, exts, recursive)
    masks = list_files(masks_dir, exts, recursive)
    if not images:
        raise DataError(
            f"no image files ({', '.join(exts)}) in {images_dir} (dataset.images= points "
            f"elsewhere, dataset.extensions= lists the suffixes); expected {LAYOUT}"
        )
    samples, skipped = paired_samples(images, masks, cfg, images_dir, masks_dir)
    base = root_path or Path(os.path.commonpath([images_dir, masks_dir]))
    return build_file_source(
        str(cfg.name),
        samples,
        cfg,
        image_size,
        channels,
        seed,
        root=base,
        skipped=skipped,
        extra={"images_dir": str(images_dir), "masks_dir": str(masks_dir)},
    )
