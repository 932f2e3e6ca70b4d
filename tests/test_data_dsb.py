"""DSB2018 nuclei: the Kaggle stage1_train tree, per-nucleus masks merged, RGBA, many sizes."""

from __future__ import annotations

import numpy as np
import pytest
from omegaconf import OmegaConf
from PIL import Image

from segexp.config import CONF_DIR
from segexp.data import load_source
from segexp.errors import DataError


def cfg_for(**overrides):
    cfg = OmegaConf.load(CONF_DIR / "dataset" / "dsb2018.yaml")
    cfg.merge_with(overrides)
    return cfg


def make_tree(base, n=4):
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
        for k in range(3):  # one file per nucleus
            m = np.zeros((h, w), np.uint8)
            m[2 + 6 * k : 6 + 6 * k, 3:9] = 255
            Image.fromarray(m).save(root / sid / "masks" / f"nucleus{k}.png")
    return root


def test_kaggle_tree_merges_masks(tmp_path):
    root = make_tree(tmp_path)
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
    root = make_tree(tmp_path)
    sid = sorted(p.name for p in root.iterdir())[1]
    for f in (root / sid / "masks").iterdir():
        f.unlink()
    with pytest.raises(DataError, match=rf"1 image\(s\) without masks .*{sid}/images/{sid}.png"):
        load_source(cfg_for(root=str(root)), (8, 8), 3, 0)
    src = load_source(cfg_for(root=str(root), skip_bad=True), (8, 8), 3, 0)
    assert src.extra["num_skipped"] == 1 and sum(src.sizes.values()) == 3
    root = make_tree(tmp_path / "fresh")
    other = sorted(p.name for p in root.iterdir())[2]
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(root / other / "masks" / "small.png")
    with pytest.raises(DataError, match=r"masks .*nucleus0.png \(\d+x32\) and .*small.png"):
        load_source(cfg_for(root=str(root)), (8, 8), 3, 0)
