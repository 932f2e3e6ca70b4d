"""NumPy arrays: ``.npy`` / ``.npz`` images and masks (``dataset=arrays dataset.root=<dir>``).

Masks are index masks ``[N, H, W]`` / ``[N, H, W, 1]`` (mapped through ``mask_values``) or
one-hot ``[N, H, W, K]`` (argmax; the channel is the class, as in the lecture notes'
``seg_training.npy``). ``.npy`` files are memory-mapped, so arrays larger than RAM stream
sample by sample; ``.npz`` members are loaded into memory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from segexp.data import split as splitlib
from segexp.data.array_source import build_array_source
from segexp.data.keys import require_root, resolve
from segexp.data.source import DataSource
from segexp.errors import ConfigError, DataError, first_line

LAYOUT = (
    "<root>/images_training.npy and <root>/seg_training.npy (or .npz with "
    "dataset.images_key/masks_key): images [N,H,W(,C)], masks [N,H,W] index or "
    "[N,H,W,K] one-hot"
)


def load_array(path: Path, key: str | None = None, what: str = "array") -> np.ndarray:
    """Load a ``.npy`` (memory-mapped) or one member of a ``.npz``; DataError naming the file."""
    if not path.is_file():
        raise DataError(
            f"{what} file {path} does not exist; expected {LAYOUT} (set with dataset.root=, "
            f"dataset.{what}=)"
        )
    try:
        if path.suffix.lower() == ".npz":
            with np.load(path, allow_pickle=False) as npz:
                keys = list(npz.keys())
                if key is None:
                    if len(keys) != 1:
                        raise DataError(
                            f"{path} holds arrays {keys}; choose one with dataset.{what}_key"
                        )
                    key = keys[0]
                if key not in keys:
                    raise DataError(f"{path} has no array {key!r} (has {keys})")
                return np.asarray(npz[key])
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except DataError:
        raise
    except Exception as err:
        raise DataError(
            f"cannot read {path}: corrupt or not a NumPy file ({first_line(err)})"
        ) from None


def load(cfg: Any, image_size: tuple[int, int], channels: int, seed: int) -> DataSource:
    """Load images and masks from ``.npy`` / ``.npz`` files under ``cfg.root``."""
    root_path = require_root(cfg, dataset="arrays", layout=LAYOUT)
    paths = {k: resolve(root_path, cfg.get(k)) for k in ("images", "masks") if cfg.get(k)}
    if len(paths) < 2:
        raise ConfigError(f"dataset=arrays needs dataset.images and dataset.masks; {LAYOUT}")
    images = load_array(paths["images"], cfg.get("images_key"), "images")
    masks = load_array(paths["masks"], cfg.get("masks_key"), "masks")
    files = [paths["images"], paths["masks"]]
    labels = None
    if cfg.get("labels"):
        paths["labels"] = resolve(root_path, cfg.labels)
        labels = np.asarray(load_array(paths["labels"], cfg.get("labels_key"), "labels"))
        if len(labels) != len(images):
            raise DataError(f"{paths['labels']} has {len(labels)} labels for {len(images)} images")
        files.append(paths["labels"])
    split_idx = None
    if cfg.get("test_images") and cfg.get("test_masks"):
        # A separate test set: appended after the main arrays, val carved from the rest.
        t_img_path = resolve(root_path, cfg.test_images)
        t_mask_path = resolve(root_path, cfg.test_masks)
        t_images = load_array(t_img_path, cfg.get("images_key"), "images")
        t_masks = load_array(t_mask_path, cfg.get("masks_key"), "masks")
        files += [t_img_path, t_mask_path]
        n = len(images)
        images = np.concatenate([images, t_images])
        masks = np.concatenate([masks, t_masks])
        fractions = splitlib.split_fractions(cfg.get("split"))
        val_share = fractions["val"] / (fractions["train"] + fractions["val"])
        train, val = splitlib.carve(np.arange(n), val_share, seed)
        split_idx = {"train": train, "val": val, "test": np.arange(n, len(images))}
        if labels is not None:
            labels = np.concatenate([labels, np.full(len(t_images), -1, labels.dtype)])
    mode = str(cfg.fingerprint)
    fingerprint = (
        ""
        if mode == "none"
        else splitlib.fingerprint_files(
            files, root=None, mode="stat" if mode == "stat" else "content"
        )
    )
    return build_array_source(
        str(cfg.name),
        images,
        masks,
        cfg,
        image_size,
        channels,
        seed,
        root=str(root_path),
        names=(
            _label(paths["images"], cfg.get("images_key")),
            _label(paths["masks"], cfg.get("masks_key")),
        ),
        split_idx=split_idx,
        labels=labels,
        fingerprint=fingerprint,
        mask_format=str(cfg.mask_format),
        extra={"files": [str(f) for f in files]},
    )


def _label(path: Path, key: str | None) -> str:
    return f"{path.name}:{key}" if key and path.suffix.lower() == ".npz" else path.name
