"""ISBI 2012: multi-page TIFF stacks (tiled) and folders of PNG slices."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from segexp.data import load_source
from segexp.errors import DataError
from tests.fixtures_data import dataset_cfg, isbi_stacks, write_isbi_slices, write_isbi_tiff


def cfg_for(**overrides):
    return dataset_cfg("isbi2012", **overrides)


def test_tiff_stacks_tiled_with_membrane_as_class_one(tmp_path):
    write_isbi_tiff(tmp_path)
    assert len(tifffile.TiffFile(tmp_path / "train-volume.tif").pages) == 6
    cfg = cfg_for(root=str(tmp_path), tile=32, split={"train": 0.66, "val": 0.17, "test": 0.17})
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
    write_isbi_slices(tmp_path, n=4, size=32)
    volume, labels = isbi_stacks(n=4, size=32)
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
