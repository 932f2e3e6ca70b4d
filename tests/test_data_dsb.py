"""DSB2018 nuclei: the Kaggle stage1_train tree, per-nucleus masks merged, RGBA, many sizes."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from segexp.data import load_source
from segexp.errors import DataError
from tests.fixtures_data import dataset_cfg, make_dsb_tree


def cfg_for(**overrides):
    return dataset_cfg("dsb2018", **overrides)


def test_kaggle_tree_merges_masks(tmp_path):
    root = make_dsb_tree(tmp_path)
    src = load_source(cfg_for(root=str(tmp_path)), (24, 32), 3, 0)  # parent of stage1_train
    assert src.root == str(root) and sum(src.sizes.values()) == 4
    assert src.extra["mask_files"] == 12 and src.extra["image_shapes"].startswith("4 sizes")
    found = False
    for split in src.splits.values():
        for image, mask in split:
            assert image.shape == (24, 32, 3) and mask.shape == (24, 32, 1)
            assert sorted(np.unique(mask.numpy())) == [0, 1]
            if mask.numpy().shape[0] == 24 and int(image.numpy()[0, 0, 0] * 255) == 0:
                # sample 0 is 24x32: all three nuclei present after merging
                np.testing.assert_array_equal(mask.numpy()[2:6, 3:9], 1)
                np.testing.assert_array_equal(mask.numpy()[14:18, 3:9], 1)
                found = True
    assert found


def test_kaggle_tree_errors(tmp_path):
    with pytest.raises(DataError, match=r"does not exist; expected .*masks/\*.png.*Kaggle"):
        load_source(cfg_for(root=str(tmp_path / "x")), (8, 8), 3, 0)
    root = make_dsb_tree(tmp_path)
    sid = sorted(p.name for p in root.iterdir())[1]
    for f in (root / sid / "masks").iterdir():
        f.unlink()
    with pytest.raises(DataError, match=rf"1 image\(s\) without masks .*{sid}/images/{sid}.png"):
        load_source(cfg_for(root=str(root)), (8, 8), 3, 0)
    src = load_source(cfg_for(root=str(root), skip_bad=True), (8, 8), 3, 0)
    assert src.extra["num_skipped"] == 1 and sum(src.sizes.values()) == 3
    root = make_dsb_tree(tmp_path / "fresh")
    other = sorted(p.name for p in root.iterdir())[2]
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(root / other / "masks" / "small.png")
    with pytest.raises(DataError, match=r"masks .*nucleus0.png \(\d+x32\) and .*small.png"):
        load_source(cfg_for(root=str(root)), (8, 8), 3, 0)
