"""Oxford-IIIT Pet: the raw release layout (trimaps) and a mocked prepared TFDS directory."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from PIL import Image

from segexp.data import load_source
from segexp.errors import DataError
from tests.fixtures_data import dataset_cfg, install_mock_tfds, make_oxford_raw


def cfg_for(**overrides):
    return dataset_cfg("oxford_pets", **overrides)


def test_raw_trimaps_map_to_three_classes(tmp_path):
    make_oxford_raw(tmp_path)
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
    make_oxford_raw(tmp_path)
    Image.fromarray(np.full((30, 40), 9, np.uint8)).save(
        tmp_path / "annotations" / "trimaps" / "Abyssinian_1.png"
    )
    with pytest.raises(DataError, match=r"Abyssinian_1.png has values \[9\]"):
        load_source(cfg_for(root=str(tmp_path)), (8, 8), 3, 0)


def test_tfds_format_with_a_mocked_builder(tmp_path, monkeypatch):
    calls = {}
    install_mock_tfds(monkeypatch, prepared=lambda _dir: (tmp_path / "ok").exists(), calls=calls)
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
