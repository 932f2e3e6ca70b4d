"""Oxford-IIIT Pet: the raw release layout (trimaps) and a mocked prepared TFDS directory."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest
from omegaconf import OmegaConf
from PIL import Image

from segexp.config import CONF_DIR
from segexp.data import load_source
from segexp.errors import DataError


def cfg_for(**overrides):
    cfg = OmegaConf.load(CONF_DIR / "dataset" / "oxford_pets.yaml")
    cfg.merge_with(overrides)
    return cfg


def trimap(h, w, k):
    t = np.full((h, w), 2, np.uint8)  # background
    t[4 : h - 4, 4 : w - 4] = 3  # border band
    t[6 : h - 6, 6 : w - 6] = 1  # pet
    return t


def make_raw(root, n=5):
    (root / "images").mkdir(parents=True)
    (root / "annotations" / "trimaps").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        name = f"Abyssinian_{i + 1}"
        h, w = 30 + i, 40 - i
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(
            root / "images" / f"{name}.jpg"
        )
        Image.fromarray(trimap(h, w, i)).save(root / "annotations" / "trimaps" / f"{name}.png")
    # Release clutter that must be ignored: macOS resource forks and .mat files.
    (root / "annotations" / "trimaps" / "._Abyssinian_1.png").write_bytes(b"\0\0")
    (root / "images" / "Abyssinian_100.mat").write_bytes(b"MATLAB")


def test_raw_trimaps_map_to_three_classes(tmp_path):
    make_raw(tmp_path)
    src = load_source(cfg_for(root=str(tmp_path)), (24, 24), 3, 7)
    assert src.name == "oxford_pets" and src.num_classes == 3
    assert src.class_names == ["background", "pet", "border"]
    assert sum(src.sizes.values()) == 5 and src.sizes["train"] == 3
    seen = set()
    for split in src.splits.values():
        for image, mask in split:
            assert image.shape == (24, 24, 3) and mask.shape == (24, 24, 1)
            seen |= {int(v) for v in np.unique(mask.numpy())}
            assert int(mask.numpy()[0, 0, 0]) == 0 and int(mask.numpy()[12, 12, 0]) == 1
    assert seen == {0, 1, 2}
    assert src.extra["image_shapes"].startswith("5 sizes")


def test_raw_errors(tmp_path):
    with pytest.raises(DataError, match=r"does not exist; expected .*images/\*.jpg.*robots.ox"):
        load_source(cfg_for(root=str(tmp_path / "missing")), (8, 8), 3, 0)
    make_raw(tmp_path)
    Image.fromarray(np.full((30, 40), 9, np.uint8)).save(
        tmp_path / "annotations" / "trimaps" / "Abyssinian_1.png"
    )
    with pytest.raises(DataError, match=r"Abyssinian_1.png has values \[9\]"):
        load_source(cfg_for(root=str(tmp_path)), (8, 8), 3, 0)


class _Split:
    def __init__(self, n):
        self.num_examples = n


class _Builder:
    def __init__(self, data_dir, prepared=True):
        self.data_dir = str(data_dir)
        self.prepared = prepared
        self.info = types.SimpleNamespace(
            version="3.2.0", splits={"train": _Split(10), "test": _Split(3)}
        )

    def is_prepared(self):
        return self.prepared

    def as_dataset(self, split, shuffle_files=False):
        import tensorflow as tf

        n = self.info.splits[split].num_examples
        images = np.stack([np.full((20, 22, 3), i * 10, np.uint8) for i in range(n)])
        masks = np.stack([trimap(20, 22, i)[..., None] for i in range(n)])
        return tf.data.Dataset.from_tensor_slices({"image": images, "segmentation_mask": masks})


def test_tfds_format_with_a_mocked_builder(tmp_path, monkeypatch):
    calls = {}

    def builder(name, data_dir=None):
        calls["args"] = (name, data_dir)
        return _Builder(data_dir, prepared=(tmp_path / "ok").exists())

    monkeypatch.setitem(sys.modules, "tensorflow_datasets", types.SimpleNamespace(builder=builder))
    cfg = cfg_for(root=str(tmp_path), format="tfds", split={"train": 0.8, "val": 0.2, "test": 0})
    with pytest.raises(DataError, match="not prepared"):
        load_source(cfg, (16, 16), 3, 0)
    (tmp_path / "ok").mkdir()
    src = load_source(cfg, (16, 16), 1, 0)
    assert calls["args"] == ("oxford_iiit_pet", str(tmp_path))
    assert src.sizes == {"train": 8, "val": 2, "test": 3}
    assert sum(1 for _ in src.splits["train"]) == 8 and sum(1 for _ in src.splits["val"]) == 2
    train_vals = {round(float(i.numpy()[0, 0, 0]) * 255) for i, _ in src.splits["train"]}
    val_vals = {round(float(i.numpy()[0, 0, 0]) * 255) for i, _ in src.splits["val"]}
    assert not train_vals & val_vals and len(train_vals | val_vals) == 10
    image, mask = next(iter(src.splits["test"]))
    assert image.shape == (16, 16, 1) and mask.dtype.name == "int32"
    assert sorted(np.unique(mask.numpy())) == [0, 1, 2]


def test_tfds_not_installed(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)
    with pytest.raises(DataError, match=r"needs tensorflow-datasets: pip install 'segexp\[tfds\]'"):
        load_source(cfg_for(root=str(tmp_path), format="tfds"), (8, 8), 3, 0)
