"""Oxford-IIIT Pet: images with trimaps (pet / background / border).

``format: raw`` (the release archives ``images.tar.gz`` + ``annotations.tar.gz`` unpacked, or
the Kaggle copy): ``<root>/images/*.jpg`` and ``<root>/annotations/trimaps/*.png``, paired by
stem; ``._*`` resource-fork files and the ``.mat`` files are ignored; split from the seed
(80 % train as in the articles). Files are validated eagerly and streamed.

``format: tfds``: a *prepared* TensorFlow Datasets directory (``oxford_iiit_pet``) under
``root`` (``tfds.builder(..., data_dir=root)``; nothing is downloaded). The TFDS train and
test splits are used; val is carved from train from the seed. Needs the optional extra
``pip install 'segexp[tfds]'``. TFDS records are not re-validated pixel by pixel (a stored
value outside ``mask_values`` fails the pipeline with a named error instead); class
frequencies are not computed for this format.

Trimap values 1 pet, 2 background, 3 border map to class ids background 0, pet 1, border 2
(``mask_values: {1: 1, 2: 0, 3: 2}``). To ignore the border band instead:
``'dataset.mask_values={1:1,2:0,3:255}' dataset.ignore_value=255 dataset.num_classes=2
dataset.class_names=[background,pet]`` (a plain override replaces the preset's map).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from segexp.data import decode
from segexp.data import split as splitlib
from segexp.data.file_source import build_file_source
from segexp.data.geometry import apply_geometry
from segexp.data.keys import class_info, fill_value, require_dirs, require_root
from segexp.data.mask_map import mask_map_from_cfg
from segexp.data.pairing import list_files, paired_samples
from segexp.data.source import DataSource
from segexp.errors import ConfigError, DataError, first_line

# The release's image files (JPEG, a few PNGs): a fixed layout, not a setting.
RELEASE_IMAGE_TYPES = (".jpg", ".jpeg", ".png")
LAYOUT = "<root>/images/*.jpg and <root>/annotations/trimaps/*.png (format=raw)"
TFDS_LAYOUT = "a prepared TFDS directory <root>/oxford_iiit_pet/<version>/ (format=tfds)"
WHERE = (
    "the data set comes from https://www.robots.ox.ac.uk/~vgg/data/pets/ "
    "(images.tar.gz, annotations.tar.gz) or Kaggle; prepare TFDS on a networked machine "
    "with tfds.builder('oxford_iiit_pet', data_dir=...).download_and_prepare()"
)


def load(cfg: Any, image_size: tuple[int, int], channels: int, seed: int) -> DataSource:
    """Load Oxford-IIIT Pet in the raw release layout or from a prepared TFDS directory."""
    fmt = str(cfg.format)
    if fmt == "tfds":
        return load_tfds(cfg, image_size, channels, seed)
    if fmt != "raw":
        raise ConfigError(f"dataset.format={fmt!r}: expected raw or tfds")
    root = require_root(cfg, dataset="oxford_pets", layout=LAYOUT, where=WHERE)
    images_dir = root / str(cfg.images)
    masks_dir = root / str(cfg.masks)
    require_dirs(root, {"dataset.images": images_dir, "dataset.masks": masks_dir}, LAYOUT, WHERE)
    images = list_files(images_dir, RELEASE_IMAGE_TYPES)
    masks = list_files(masks_dir, (".png",))
    if not images:
        raise DataError(
            f"no .jpg images in {images_dir} (dataset.images= under dataset.root={root}); "
            f"expected {LAYOUT}; {WHERE}"
        )
    samples, skipped = paired_samples(
        images, masks, cfg, images_dir, masks_dir, what="image/trimap"
    )
    return build_file_source(
        "oxford_pets",
        samples,
        cfg,
        image_size,
        channels,
        seed,
        root=root,
        skipped=skipped,
        extra={"format": "raw"},
    )


def _import_tfds() -> Any:
    try:
        import tensorflow_datasets as tfds
    except ImportError:
        raise DataError(
            "dataset.format=tfds needs tensorflow-datasets: "
            "pip install 'segexp[tfds]' (or use dataset.format=raw)"
        ) from None
    return tfds


def load_tfds(cfg: Any, image_size: tuple[int, int], channels: int, seed: int) -> DataSource:
    """Oxford-IIIT Pet from a prepared TFDS directory (``download=False``)."""
    import tensorflow as tf

    root = require_root(cfg, dataset="oxford_pets", layout=TFDS_LAYOUT, where=WHERE)
    tfds = _import_tfds()
    name = str(cfg.tfds_name)
    try:
        builder = tfds.builder(name, data_dir=str(root))
    except Exception as err:
        raise DataError(
            f"TFDS dataset {name} not found under dataset.root={root} ({err}); expected "
            f"{TFDS_LAYOUT} (set with dataset.root=, dataset.tfds_name=); {WHERE}"
        ) from None
    prepared = getattr(builder, "is_prepared", None)
    ready = prepared() if callable(prepared) else Path(str(builder.data_dir)).exists()
    if not ready:
        raise DataError(
            f"TFDS dataset {name} is not prepared under dataset.root={root} (nothing is "
            f"downloaded); expected {TFDS_LAYOUT}; {WHERE}"
        )
    num_classes, class_names = class_info(cfg)
    mask_map = mask_map_from_cfg(cfg, num_classes)
    lut = np.full(256, -1, np.int32)
    for stored, cls in mask_map.table.items():
        if 0 <= stored < 256:
            lut[stored] = cls
    lut_t = tf.constant(lut)
    fractions = splitlib.split_fractions(cfg.get("split"))
    val_share = fractions["val"] / (fractions["train"] + fractions["val"])
    train_split, test_split = str(cfg.train_split), str(cfg.test_split)
    try:
        n_train = int(builder.info.splits[train_split].num_examples)
        n_test = int(builder.info.splits[test_split].num_examples)
        base = {
            s: builder.as_dataset(split=s, shuffle_files=False) for s in (train_split, test_split)
        }
    except Exception as err:
        raise DataError(f"cannot read TFDS {name} under {root}: {first_line(err)}") from None
    train_idx, val_idx = splitlib.carve(np.arange(n_train), val_share, seed)
    train_idx = splitlib.limit(train_idx, cfg.get("train_size"), seed)
    in_val = np.zeros(n_train, bool)
    in_val[val_idx] = True
    in_train = np.zeros(n_train, bool)
    in_train[train_idx] = True
    fill = fill_value(cfg)

    if channels not in (1, 3):
        raise ConfigError(f"channels={channels}: Oxford-IIIT Pet images are RGB (1 or 3)")

    def to_input(raw: np.ndarray) -> np.ndarray:  # the file loaders' scaling and channels
        return decode.convert_channels(decode.to_float(raw), channels, name)

    def convert(example: Any) -> tuple[Any, Any]:
        image = tf.numpy_function(to_input, [example["image"]], tf.float32, stateful=False)
        image = tf.ensure_shape(image, (None, None, channels))
        raw = tf.cast(example["segmentation_mask"], tf.int32)
        ids = tf.gather(lut_t, tf.clip_by_value(raw, 0, 255))
        check = tf.debugging.assert_non_negative(
            ids, message=f"{name}: mask values outside dataset.mask_values {mask_map.describe()}"
        )
        with tf.control_dependencies([check]):
            ids = tf.identity(ids)
        return image, tf.ensure_shape(ids, (None, None, 1))

    def pick(ds: Any, table: np.ndarray) -> Any:
        t = tf.constant(table)
        return ds.enumerate().filter(lambda i, _ex: tf.gather(t, i)).map(lambda _i, ex: ex)

    raw_splits = {
        "train": pick(base[train_split], in_train),
        "val": pick(base[train_split], in_val),
        "test": base[test_split],
    }
    splits = {
        k: apply_geometry(
            v.map(convert, num_parallel_calls=tf.data.AUTOTUNE), cfg, image_size, fill
        )
        for k, v in raw_splits.items()
    }
    sizes = {"train": int(len(train_idx)), "val": int(len(val_idx)), "test": n_test}
    try:  # fail now, not in the first epoch, when the records cannot be read
        next(iter(splits["test"].take(1)))
    except Exception as err:
        raise DataError(f"cannot read TFDS {name} under {root}: {first_line(err)}") from None
    data_dir = Path(str(builder.data_dir))
    files = sorted(p for p in data_dir.rglob("*") if p.is_file()) if data_dir.exists() else []
    fingerprint = splitlib.digest(
        [
            str(getattr(builder.info, "version", "")),
            *[f"{p.relative_to(data_dir)}:{p.stat().st_size}" for p in files],
        ]
    )
    return DataSource(
        name="oxford_pets",
        splits=splits,
        sizes=sizes,
        num_classes=num_classes,
        class_names=class_names,
        channels=channels,
        ignore_value=cfg.get("ignore_value"),
        root=str(root),
        fingerprint=fingerprint,
        labels=None,
        extra={
            "format": "tfds",
            "tfds_name": name,
            "tfds_version": str(getattr(builder.info, "version", "")),
            "split_sizes": sizes,
            "fingerprint_mode": "stat",
        },
    )
