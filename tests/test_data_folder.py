"""The folder loader and the shared file backend: pairing, exact labels, splits, errors."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from segexp.data import load_source
from segexp.errors import ConfigError, DataError
from tests.fixtures_data import dataset_cfg, make_drive, make_pairs, make_palette_pairs


def cfg_for(**overrides):
    return dataset_cfg("folder", **overrides)


def labels_of(ds):
    return sorted({int(v) for _, m in ds for v in np.unique(m.numpy())})


def test_pairs_by_stem_with_exact_labels_and_lineage(tmp_path):
    img_dir, mask_dir = make_pairs(tmp_path)
    src = load_source(cfg_for(images=str(img_dir), masks=str(mask_dir)), (16, 16), 3, 0)
    assert src.sizes == {"train": 4, "val": 1, "test": 1}
    assert src.num_classes == 2 and src.class_names == ["background", "foreground"]
    image, mask = next(iter(src.splits["train"]))
    assert image.shape == (16, 16, 3) and image.dtype.name == "float32"
    assert mask.shape == (16, 16, 1) and mask.dtype.name == "int32"
    assert labels_of(src.splits["train"]) == [0, 1]
    freq = src.extra["class_frequencies"]
    assert set(freq) == {"background", "foreground"} and 0 < freq["foreground"] < 0.3
    assert len(src.fingerprint) == 16 and src.extra["num_skipped"] == 0
    # Same files, same seed -> same split and fingerprint; another seed -> another split.
    again = load_source(cfg_for(images=str(img_dir), masks=str(mask_dir)), (16, 16), 3, 0)
    assert again.fingerprint == src.fingerprint
    first = [m.numpy().sum() for _, m in src.splits["val"]]
    assert first == [m.numpy().sum() for _, m in again.splits["val"]]


def test_regex_pairing_drive_style(tmp_path):
    make_drive(tmp_path)
    cfg = cfg_for(
        root=str(tmp_path),
        images="images",
        masks="1st_manual",
        image_pattern=r"(\d+)_training",
        mask_pattern=r"(\d+)_manual1",
        split={"train": 0.34, "val": 0.33, "test": 0.33},
    )
    src = load_source(cfg, (12, 14), 3, 0)
    assert sum(src.sizes.values()) == 3
    for split in src.splits.values():
        for image, mask in split:
            k = round(float(image.numpy()[0, 0, 0]) * 255)
            assert k in (21, 22, 23)
            assert mask.numpy()[2:5].min() == 1 and mask.numpy()[5:].max() == 0
    with pytest.raises(DataError, match=r"3 image\(s\) without masks .*21_training.tif"):
        load_source(
            cfg_for(root=str(tmp_path), images="images", masks="1st_manual"), (12, 14), 3, 0
        )


def test_palette_masks_with_ignore_band_stay_exact(tmp_path):
    img_dir, mask_dir = make_palette_pairs(tmp_path)
    cfg = cfg_for(
        images=str(img_dir),
        masks=str(mask_dir),
        num_classes=3,
        class_names=["bg", "a", "b"],
        mask_values=None,
        ignore_value=255,
    )
    src = load_source(cfg, (16, 16), 1, 0)
    _, mask = next(iter(src.splits["train"]))
    assert np.array_equal(mask.numpy()[3, :, 0], np.full(16, 255))
    assert sorted(np.unique(mask.numpy())) == [0, 2, 255]
    assert src.ignore_value == 255 and src.extra["ignore_fraction"] == pytest.approx(1 / 16)
    # Downscaling keeps only stored ids (nearest neighbour).
    small = load_source(cfg, (7, 5), 1, 0)
    assert set(labels_of(small.splits["train"])) <= {0, 2, 255}


def test_errors_are_one_line_and_named(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(DataError, match=f"image folder {missing} does not exist"):
        load_source(cfg_for(images=str(missing), masks=str(tmp_path)), (8, 8), 3, 0)
    img_dir, mask_dir = make_pairs(tmp_path, n=5)
    (mask_dir / "s00.png").unlink()
    (mask_dir / "s01.png").unlink()
    Image.fromarray(np.zeros((20, 24), np.uint8)).save(mask_dir / "extra.png")
    with pytest.raises(DataError) as err:
        load_source(cfg_for(images=str(img_dir), masks=str(mask_dir)), (8, 8), 3, 0)
    msg = str(err.value)
    assert "\n" not in msg
    assert "2 image(s) without masks" in msg and "s00.jpg, s01.jpg" in msg
    assert "1 mask(s) without images" in msg and "extra.png" in msg
    cfg = cfg_for(images=str(img_dir), masks=str(mask_dir), skip_bad=True)
    src = load_source(cfg, (8, 8), 3, 0)
    assert src.extra["num_skipped"] == 3 and sum(src.sizes.values()) == 3


def test_corrupt_values_and_size_errors(tmp_path):
    img_dir, mask_dir = make_pairs(tmp_path, n=4)
    (img_dir / "s01.jpg").write_bytes(b"garbage")
    with pytest.raises(DataError, match=r"cannot read .*s01.jpg"):
        load_source(cfg_for(images=str(img_dir), masks=str(mask_dir)), (8, 8), 3, 0)
    src = load_source(
        cfg_for(images=str(img_dir), masks=str(mask_dir), skip_bad=True), (8, 8), 3, 0
    )
    assert src.extra["num_skipped"] == 1 and "s01" in src.extra["skipped"][0]

    img_dir, mask_dir = make_pairs(tmp_path / "b", n=4, values=(0, 128))
    with pytest.raises(DataError, match=r"mask .*s0\d.png has values \[128\] outside the class"):
        load_source(cfg_for(images=str(img_dir), masks=str(mask_dir)), (8, 8), 3, 0)

    img_dir, mask_dir = make_pairs(tmp_path / "c", n=4)
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(mask_dir / "s02.png")
    with pytest.raises(DataError, match=r"image .*s02.jpg \(20x24\) and mask .*s02.png \(10x10\)"):
        load_source(cfg_for(images=str(img_dir), masks=str(mask_dir)), (8, 8), 3, 0)

    with pytest.raises(ConfigError, match="dataset.resize"):
        load_source(
            cfg_for(images=str(img_dir), masks=str(mask_dir), resize="zoom", skip_bad=True),
            (8, 8),
            3,
            0,
        )


def test_dataset_name_of_a_helper_module_is_not_a_loader():
    """dataset.name must name a loader module; the shared helpers beside them are refused in
    one line naming the module."""
    cfg = dataset_cfg("folder")
    cfg.name = "pairing"
    with pytest.raises(ConfigError, match=r"segexp/data/pairing.py is not a loader"):
        load_source(cfg, (16, 16), 1, 0)
