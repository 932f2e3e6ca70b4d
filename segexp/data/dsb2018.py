"""Kaggle Data Science Bowl 2018 nuclei (``stage1_train``).

Layout: ``<root>/<id>/images/<id>.png`` and ``<root>/<id>/masks/*.png``, one mask file per
nucleus; the masks of a sample are merged (maximum) into one binary mask for training, and each
nucleus is also kept as its own object (``DataSource.instances``: object k + 1 is the k-th mask
file in name order, a later file winning where two overlap) for the instance score
``instance_map`` (see segexp/challenge.py). ``root`` may be the
``stage1_train`` folder itself or its parent. Images are RGBA PNGs of many sizes: alpha is
dropped, the model size is reached by ``resize`` (or ``crop``/``pad``). Files are streamed.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from segexp.data import decode
from segexp.data.file_source import build_file_source
from segexp.data.keys import class_info, require_root
from segexp.data.mask_map import MaskMap, mask_map_from_cfg
from segexp.data.pairing import Sample, check_unpaired, list_files
from segexp.data.source import DataSource
from segexp.errors import DataError

LAYOUT = "<root>/<id>/images/<id>.png and <root>/<id>/masks/*.png (Kaggle stage1_train)"
WHERE = (
    "the data set comes from the Kaggle Data Science Bowl 2018 "
    "(https://www.kaggle.com/c/data-science-bowl-2018/data, stage1_train.zip)"
)


def read_instances(sample: Sample, mask_map: MaskMap, palette: str = "auto") -> np.ndarray:
    """The sample's nuclei as object ids ``[H, W]``: k + 1 where mask file k is foreground."""
    ids = None
    for k, path in enumerate(sample.masks):
        classes = mask_map.apply(decode.read_mask(path, None, palette))
        nucleus = (classes > 0) & (classes < mask_map.num_classes)
        ids = np.zeros(nucleus.shape, np.int32) if ids is None else ids
        ids[nucleus] = k + 1
    assert ids is not None
    return ids


def load(cfg: Any, image_size: tuple[int, int], channels: int, seed: int) -> DataSource:
    """Load the nuclei samples, merging each sample's per-nucleus masks."""
    root = require_root(cfg, dataset="dsb2018", layout=LAYOUT, where=WHERE)
    sub = str(cfg.subset)
    if (root / sub).is_dir():
        root = root / sub
    dirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    dirs = [d for d in dirs if (d / "images").is_dir() or (d / "masks").is_dir()]
    if not dirs:
        raise DataError(
            f"no sample folders in {root} (dataset.root=, dataset.subset={sub}); "
            f"expected {LAYOUT}; {WHERE}"
        )
    samples, lonely_images, lonely_masks = [], [], []
    for d in dirs:
        images = list_files(d / "images") if (d / "images").is_dir() else []
        masks = list_files(d / "masks") if (d / "masks").is_dir() else []
        preferred = [p for p in images if p.stem == d.name]
        image = preferred[0] if preferred else images[0] if len(images) == 1 else None
        if image is None and len(images) > 1:
            raise DataError(
                f"{d / 'images'} holds {len(images)} images and none is named "
                f"{d.name}.png; expected {LAYOUT}"
            )
        if image is None:
            lonely_masks.append(f"{d.name}/masks")
        elif not masks:
            lonely_images.append(f"{d.name}/images/{image.name}")
        else:
            samples.append(Sample(d.name, image, masks))
    skipped = check_unpaired(
        lonely_images,
        lonely_masks,
        cfg,
        images_dir=root,
        masks_dir=root,
        hint="each <id>/ needs images/<id>.png and masks/*.png",
    )
    if not samples:
        raise DataError(f"no usable samples in {root}; expected {LAYOUT}")
    mask_map = mask_map_from_cfg(cfg, class_info(cfg)[0])
    palette = str(cfg.mask_palette)
    return build_file_source(
        "dsb2018",
        samples,
        cfg,
        image_size,
        channels,
        seed,
        root=root,
        skipped=skipped,
        extra={"mask_files": sum(len(s.masks) for s in samples)},
        instance_fn=lambda sample: read_instances(sample, mask_map, palette),
    )
