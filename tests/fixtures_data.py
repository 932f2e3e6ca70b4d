"""Tiny data sets in the real on-disk formats, shared by the loader tests and the e2e tests.

Each builder writes files under a given directory and returns what a test needs to point a
dataset preset at them. Masks are simple and known, so tests can assert exact class ids and
class pixel frequencies.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

from segexp.config import load_preset


def dataset_cfg(name: str, **overrides):
    """The ``conf/dataset/<name>.yaml`` preset merged with ``overrides``."""
    cfg = load_preset("dataset", name)
    cfg.merge_with(overrides)
    return cfg


# --- Oxford-IIIT Pet -------------------------------------------------------------------------


def trimap(h: int, w: int) -> np.ndarray:
    """A trimap as stored in the release: 2 background, 3 border band, 1 pet."""
    t = np.full((h, w), 2, np.uint8)
    t[4 : h - 4, 4 : w - 4] = 3
    t[6 : h - 6, 6 : w - 6] = 1
    return t


def make_oxford_raw(root: Path, n: int = 5) -> Path:
    """``<root>/images/*.jpg`` + ``<root>/annotations/trimaps/*.png`` of sizes 30x40, 31x39, ..."""
    (root / "images").mkdir(parents=True)
    (root / "annotations" / "trimaps").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        name = f"Abyssinian_{i + 1}"
        h, w = 30 + i, 40 - i
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(
            root / "images" / f"{name}.jpg"
        )
        Image.fromarray(trimap(h, w)).save(root / "annotations" / "trimaps" / f"{name}.png")
    # Release clutter that must be ignored: macOS resource forks and .mat files.
    (root / "annotations" / "trimaps" / "._Abyssinian_1.png").write_bytes(b"\0\0")
    (root / "images" / "Abyssinian_100.mat").write_bytes(b"MATLAB")
    return root


class _TfdsSplit:
    def __init__(self, n: int) -> None:
        self.num_examples = n


class MockTfdsBuilder:
    """Enough of ``tfds.core.DatasetBuilder`` for the oxford_pets tfds loader (20x22 RGB
    images whose pixel value is ``10 * index``, trimap masks)."""

    def __init__(self, data_dir, prepared: bool = True, train: int = 10, test: int = 3) -> None:
        self.data_dir = str(data_dir)
        self.prepared = prepared
        self.info = types.SimpleNamespace(
            version="3.2.0", splits={"train": _TfdsSplit(train), "test": _TfdsSplit(test)}
        )

    def is_prepared(self) -> bool:
        return self.prepared

    def as_dataset(self, split: str, shuffle_files: bool = False):
        import tensorflow as tf

        n = self.info.splits[split].num_examples
        images = np.stack([np.full((20, 22, 3), i * 10, np.uint8) for i in range(n)])
        masks = np.stack([trimap(20, 22)[..., None] for _ in range(n)])
        return tf.data.Dataset.from_tensor_slices({"image": images, "segmentation_mask": masks})


def install_mock_tfds(monkeypatch, prepared=lambda data_dir: True, calls: dict | None = None):
    """Put a fake ``tensorflow_datasets`` module (``builder(name, data_dir)``) in sys.modules."""

    def builder(name, data_dir=None):
        if calls is not None:
            calls["args"] = (name, data_dir)
        return MockTfdsBuilder(data_dir, prepared=prepared(data_dir))

    monkeypatch.setitem(sys.modules, "tensorflow_datasets", types.SimpleNamespace(builder=builder))


# --- ISBI 2012 -------------------------------------------------------------------------------


def isbi_stacks(n: int = 6, size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Volume ``[n, size, size]`` uint8 and labels with 255 cell and 0 membrane every 8th row."""
    rng = np.random.default_rng(0)
    volume = rng.integers(0, 255, (n, size, size), dtype=np.uint8)
    labels = np.full((n, size, size), 255, np.uint8)
    labels[:, ::8, :] = 0
    return volume, labels


def write_isbi_tiff(root: Path, n: int = 6, size: int = 64) -> Path:
    """Multi-page ``train-volume.tif`` / ``train-labels.tif`` (membrane share 1/8)."""
    root.mkdir(parents=True, exist_ok=True)
    volume, labels = isbi_stacks(n, size)
    tifffile.imwrite(root / "train-volume.tif", volume)
    tifffile.imwrite(root / "train-labels.tif", labels)
    return root


def write_isbi_slices(root: Path, n: int = 4, size: int = 32) -> Path:
    """``images/NN.png`` + ``labels/NN.png`` slices of the same stacks."""
    volume, labels = isbi_stacks(n, size)
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    for i in range(n):
        Image.fromarray(volume[i]).save(root / "images" / f"{i:02d}.png")
        Image.fromarray(labels[i]).save(root / "labels" / f"{i:02d}.png")
    return root


# --- DSB 2018 --------------------------------------------------------------------------------

DSB_NUCLEI = 3  # mask files per sample, each a 4x6 nucleus


def make_dsb_tree(base: Path, n: int = 4) -> Path:
    """``<base>/stage1_train/<id>/images/<id>.png`` (RGBA, heights 24, 28, ...; width 32) and
    ``<id>/masks/nucleusK.png`` (one 4x6 nucleus each). Returns the stage1_train folder."""
    root = base / "stage1_train"
    for i in range(n):
        sid = f"{i:04x}abcdef"
        h, w = 24 + 4 * i, 32
        (root / sid / "images").mkdir(parents=True)
        (root / sid / "masks").mkdir()
        rgba = np.zeros((h, w, 4), np.uint8)
        rgba[..., :3] = 40 * i
        rgba[..., 3] = 255
        Image.fromarray(rgba, "RGBA").save(root / sid / "images" / f"{sid}.png")
        for k in range(DSB_NUCLEI):
            m = np.zeros((h, w), np.uint8)
            m[2 + 6 * k : 6 + 6 * k, 3:9] = 255
            Image.fromarray(m).save(root / sid / "masks" / f"nucleus{k}.png")
    return root


# --- image / mask folders --------------------------------------------------------------------


def make_pairs(
    base: Path,
    n: int = 6,
    size: tuple[int, int] = (20, 24),
    mask_ext: str = "png",
    values: tuple[int, int] = (0, 255),
) -> tuple[Path, Path]:
    """``<base>/img/sNN.jpg`` and ``<base>/gt/sNN.<mask_ext>`` (mask: values[1] in a box of
    8 x (2 + i) pixels, values[0] elsewhere). Returns (images dir, masks dir)."""
    img_dir, mask_dir = base / "img", base / "gt"
    img_dir.mkdir(parents=True, exist_ok=True)
    mask_dir.mkdir(exist_ok=True)
    rng = np.random.default_rng(1)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, size + (3,), dtype=np.uint8)).save(
            img_dir / f"s{i:02d}.jpg"
        )
        mask = np.full(size, values[0], np.uint8)
        mask[4:12, 6 : 6 + 2 + i] = values[1]
        Image.fromarray(mask).save(mask_dir / f"s{i:02d}.{mask_ext}")
    return img_dir, mask_dir


def make_drive(base: Path, ids=(21, 22, 23), size: tuple[int, int] = (12, 14)) -> None:
    """DRIVE-style names: ``images/NN_training.tif`` (pixel value NN) and
    ``1st_manual/NN_manual1.gif`` (rows 2..4 = 255, the rest 0)."""
    img_dir, mask_dir = base / "images", base / "1st_manual"
    img_dir.mkdir(parents=True)
    mask_dir.mkdir()
    for k in ids:
        tifffile.imwrite(img_dir / f"{k}_training.tif", np.full(size + (3,), k, np.uint8))
        m = np.zeros(size, np.uint8)
        m[2:5] = 255
        Image.fromarray(m).save(mask_dir / f"{k}_manual1.gif")


# Rows of each ``make_ignore_band_drive`` mask (16 rows): 0-3 background, 4 the 255 band,
# 5-11 vessel, 12-15 background. Class shares of the valid (non-ignored) pixels:
BAND_FREQ = {"background": 8 / 15, "vessel": 7 / 15}


def make_ignore_band_drive(base: Path, ids=range(21, 27), size: int = 16) -> None:
    """DRIVE-style pairs whose GIF masks store 0 background, 1 vessel and a 255 "don't care"
    band (row 4): for ``image_pattern='(\\d+)_training' mask_pattern='(\\d+)_manual1'``,
    ``mask_values={0: 0, 1: 1}``, ``ignore_value=255``."""
    img_dir, mask_dir = base / "images", base / "1st_manual"
    img_dir.mkdir(parents=True)
    mask_dir.mkdir()
    rng = np.random.default_rng(2)
    for k in ids:
        tifffile.imwrite(
            img_dir / f"{k}_training.tif", rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
        )
        m = np.zeros((size, size), np.uint8)
        m[4] = 255
        m[5:12] = 1
        Image.fromarray(m).save(mask_dir / f"{k}_manual1.gif")


def make_palette_pairs(base: Path, n: int = 3, size: int = 16) -> tuple[Path, Path]:
    """VOC-style palette PNG masks: index 2 in a square, 0 elsewhere, a 255 band in row 3."""
    img_dir, mask_dir = base / "img", base / "gt"
    img_dir.mkdir(parents=True)
    mask_dir.mkdir()
    for i in range(n):
        Image.fromarray(np.zeros((size, size, 3), np.uint8)).save(img_dir / f"{i}.png")
        idx = np.zeros((size, size), np.uint8)
        idx[4:12, 4:12] = 2
        idx[3, :] = 255
        p = Image.fromarray(idx, "P")
        p.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0] + [0] * 3 * 252 + [224, 224, 192])
        p.save(mask_dir / f"{i}.png")
    return img_dir, mask_dir


# --- arrays / MNIST --------------------------------------------------------------------------

# Each ``make_onehot_arrays`` mask: a 6x6 object in a 16x16 image.
ONEHOT_OBJECT_FREQ = 36 / 256


def make_onehot_arrays(root: Path, n: int = 10, size: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """The lecture notes' ``images_training.npy`` (uint8 RGB) and one-hot ``seg_training.npy``.
    Returns (images, index masks)."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (n, size, size, 3), dtype=np.uint8)
    ids = np.zeros((n, size, size), np.int64)
    ids[:, 4:10, 4:10] = 1
    np.save(root / "images_training.npy", images)
    np.save(root / "seg_training.npy", np.eye(2, dtype=np.float32)[ids])
    return images, ids


def make_mnist_npz(root: Path, n_train: int = 60, n_test: int = 20) -> Path:
    """A Keras-layout ``mnist.npz`` with random digits and labels ``arange % 10``."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    path = root / "mnist.npz"
    np.savez(
        path,
        x_train=rng.integers(0, 255, (n_train, 28, 28), dtype=np.uint8),
        y_train=np.arange(n_train) % 10,
        x_test=rng.integers(0, 255, (n_test, 28, 28), dtype=np.uint8),
        y_test=np.arange(n_test) % 10,
    )
    return path
