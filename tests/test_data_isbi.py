"""ISBI 2012: multi-page TIFF stacks (tiled) and folders of PNG slices."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from omegaconf import OmegaConf
from PIL import Image

from segexp.config import CONF_DIR
from segexp.data import load_source
from segexp.errors import DataError


def cfg_for(**overrides):
    cfg = OmegaConf.load(CONF_DIR / "dataset" / "isbi2012.yaml")
    cfg.merge_with(overrides)
    return cfg


def stacks(n=6, size=64):
    rng = np.random.default_rng(0)
    volume = rng.integers(0, 255, (n, size, size), dtype=np.uint8)
    labels = np.full((n, size, size), 255, np.uint8)  # cell
    labels[:, ::8, :] = 0  # membranes
    return volume, labels


def test_tiff_stacks_tiled_with_membrane_as_class_one(tmp_path):
    volume, labels = stacks()
    tifffile.imwrite(tmp_path / "train-volume.tif", volume)
    tifffile.imwrite(tmp_path / "train-labels.tif", labels)
    assert len(tifffile.TiffFile(tmp_path / "train-volume.tif").pages) == 6
    cfg = cfg_for(root=str(tmp_path), tile=32, split={"train": 4, "val": 1, "test": 1})
    src = load_source(cfg, (32, 32), 1, 0)
    assert src.sizes == {"train": 16, "val": 4, "test": 4}  # 4 patches per slice
    assert src.class_names == ["cell", "membrane"] and src.extra["format"] == "tiff"
    patches = list(src.splits["train"])
    assert len(patches) == 16
    image, mask = patches[0]
    assert image.shape == (32, 32, 1) and mask.shape == (32, 32, 1)
    np.testing.assert_array_equal(mask.numpy()[::8, :, 0], 1)  # membrane rows
    np.testing.assert_array_equal(mask.numpy()[1::8, :, 0], 0)
    assert src.extra["class_frequencies"]["membrane"] == pytest.approx(1 / 8)
    # Whole slices resized instead of tiles.
    whole = load_source(cfg_for(root=str(tmp_path), tile=None), (16, 16), 1, 0)
    assert sum(whole.sizes.values()) == 6


def test_png_slices_and_stack_errors(tmp_path):
    volume, labels = stacks(n=4, size=32)
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    for i in range(4):
        Image.fromarray(volume[i]).save(tmp_path / "images" / f"{i:02d}.png")
        Image.fromarray(labels[i]).save(tmp_path / "labels" / f"{i:02d}.png")
    src = load_source(cfg_for(root=str(tmp_path), tile=None), (32, 32), 1, 0)
    assert src.extra["format"] == "slices" and sum(src.sizes.values()) == 4
    for split in src.splits.values():
        for _, mask in split:
            assert sorted(np.unique(mask.numpy())) == [0, 1]

    tifffile.imwrite(tmp_path / "train-volume.tif", volume)
    tifffile.imwrite(tmp_path / "train-labels.tif", labels[:3])
    with pytest.raises(DataError, match=r"volume.tif has 4 slices but .*labels.tif has 3"):
        load_source(cfg_for(root=str(tmp_path)), (32, 32), 1, 0)
    (tmp_path / "train-labels.tif").write_bytes(b"II*\0broken")
    with pytest.raises(DataError, match=r"cannot read .*train-labels.tif"):
        load_source(cfg_for(root=str(tmp_path)), (32, 32), 1, 0)
    with pytest.raises(DataError, match=r"does not exist; expected .*train-volume.tif.*ISBI 2012"):
        load_source(cfg_for(root=str(tmp_path / "none")), (32, 32), 1, 0)
