"""ISBI 2012 EM segmentation challenge (neuronal membranes).

Two layouts under ``dataset.root``:
- ``tiff`` (the challenge release): ``train-volume.tif`` and ``train-labels.tif``, multi-page
  TIFF stacks of 30 slices of 512x512 (8-bit). The stacks are small (~8 MB each), so they are
  decoded eagerly with tifffile into memory.
- ``slices``: the same data as folders of per-slice images (``images/``, ``labels/``), paired
  by stem and streamed like any folder.
``format: auto`` picks ``tiff`` when the volume file exists.

Classes: labels store 255 for cell interior and 0 for membrane. The preset maps membrane -> 1
and cell -> 0 (``mask_values: {0: 1, 255: 0}``), so the positive class of a sigmoid head, the
Dice score and ``iou_membrane`` measure the structure the challenge asks for. Use
``dataset.mask_values='{0:0,255:1}' dataset.class_names=[membrane,cell]`` for the article's
raw ``label / 255`` target (cell = 1).

Cells for the challenge's Rand error (``challenge_metrics: [rand_error, pixel_error]``) are not
stored: segexp/challenge.py takes them as the connected components of class 0 (cell interior)
of each slice or tile, so the preset's mapping (cell -> 0) is what it relies on.

``tile: 256`` cuts every slice into 256x256 patches (4 per slice), as article 000 does; the
split is made per slice before tiling, so patches of one slice never straddle splits.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from segexp.data import split as splitlib
from segexp.data.array_source import build_array_source
from segexp.data.file_source import build_file_source
from segexp.data.keys import require_dirs, require_root
from segexp.data.pairing import list_files, paired_samples
from segexp.data.source import DataSource
from segexp.errors import ConfigError, DataError, first_line

LAYOUT = (
    "<root>/train-volume.tif + <root>/train-labels.tif (multi-page TIFF stacks), or "
    "<root>/images/*.png + <root>/labels/*.png slices"
)
WHERE = (
    "the data set comes from the ISBI 2012 EM segmentation challenge "
    "(https://imagej.net/events/isbi-2012-segmentation-challenge)"
)


def read_stack(path: Any) -> np.ndarray:
    """A TIFF stack as ``[N, H, W]`` (or ``[N, H, W, C]``); DataError naming the file."""
    import tifffile

    if not path.is_file():
        raise DataError(
            f"{path} does not exist; expected {LAYOUT} (set with dataset.root=, "
            f"dataset.volume=, dataset.labels=, dataset.format=slices); {WHERE}"
        )
    try:
        arr = tifffile.imread(str(path))
    except Exception as err:
        raise DataError(
            f"cannot read {path}: corrupt or unsupported TIFF ({first_line(err)})"
        ) from None
    if arr.size == 0:
        raise DataError(f"cannot read {path}: corrupt or unsupported TIFF (no image data)")
    if arr.ndim == 2 or (arr.ndim == 3 and arr.shape[-1] in (3, 4) and arr.shape[0] > 4):
        arr = arr[None]
    if arr.ndim not in (3, 4):
        raise DataError(f"{path}: unexpected TIFF shape {arr.shape}, expected [slices, H, W]")
    return arr


def load(cfg: Any, image_size: tuple[int, int], channels: int, seed: int) -> DataSource:
    """Load the ISBI 2012 training stack (or slices), optionally tiled into patches."""
    root = require_root(cfg, dataset="isbi2012", layout=LAYOUT, where=WHERE)
    fmt = str(cfg.format)
    volume = root / str(cfg.volume)
    labels = root / str(cfg.labels)
    if fmt == "auto":
        fmt = "tiff" if volume.exists() or labels.exists() else "slices"
    if fmt == "tiff":
        images = read_stack(volume)
        masks = read_stack(labels)
        if masks.ndim == 4:
            raise DataError(f"{labels}: labels must be single-channel, got shape {masks.shape}")
        if len(images) != len(masks):
            raise DataError(f"{volume} has {len(images)} slices but {labels} has {len(masks)}")
        mode = str(cfg.fingerprint)
        fingerprint = (
            ""
            if mode == "none"
            else splitlib.fingerprint_files(
                [volume, labels], root=root, mode="stat" if mode == "stat" else "content"
            )
        )
        return build_array_source(
            "isbi2012",
            images,
            masks,
            cfg,
            image_size,
            channels,
            seed,
            root=str(root),
            names=(volume.name, labels.name),
            fingerprint=fingerprint,
            extra={"format": "tiff", "slices": int(len(images))},
        )
    if fmt != "slices":
        raise ConfigError(f"dataset.format={fmt!r}: expected auto, tiff or slices")
    images_dir = root / str(cfg.images)
    masks_dir = root / str(cfg.masks)
    require_dirs(
        root,
        {"dataset.images": images_dir, "dataset.masks": masks_dir},
        LAYOUT,
        WHERE,
        f"; no TIFF stacks {volume.name}, {labels.name} there either: dataset.volume=, "
        "dataset.labels=",
    )
    samples, skipped = paired_samples(
        list_files(images_dir),
        list_files(masks_dir),
        cfg,
        images_dir,
        masks_dir,
        what="image/label slice",
    )
    return build_file_source(
        "isbi2012",
        samples,
        cfg,
        image_size,
        channels,
        seed,
        root=root,
        skipped=skipped,
        extra={"format": "slices"},
    )
