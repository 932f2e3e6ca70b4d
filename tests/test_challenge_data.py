"""DSB2018 keeps every nucleus as an object, aligned with the test split, and the instance score
of a model over that split matches the value worked out by hand."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segexp.challenge import evaluate_split
from segexp.data import load_source
from segexp.data.pipeline import make_dataset
from tests.fixtures_data import dataset_cfg

# Nucleus A (4x4) touches nucleus B (4x8); C (4x4) stands alone. Rows, columns of each.
NUCLEI = {
    "a": (slice(2, 6), slice(2, 6)),
    "b": (slice(2, 6), slice(6, 14)),
    "c": (slice(20, 24), slice(20, 24)),
}


def touching_tree(base: Path, n: int = 3, size: int = 32) -> Path:
    """A Kaggle stage1_train tree whose images are bright exactly on the nuclei."""
    root = base / "stage1_train"
    for i in range(n):
        sid = f"s{i}"
        (root / sid / "images").mkdir(parents=True)
        (root / sid / "masks").mkdir()
        rgba = np.zeros((size, size, 4), np.uint8)
        rgba[..., 3] = 255
        for name, (rows, cols) in NUCLEI.items():
            rgba[rows, cols, :3] = 255
            m = np.zeros((size, size), np.uint8)
            m[rows, cols] = 255
            Image.fromarray(m).save(root / sid / "masks" / f"{name}.png")
        Image.fromarray(rgba, "RGBA").save(root / sid / "images" / f"{sid}.png")
    return root


def _cfg(root: Path, **kw):
    return dataset_cfg(
        "dsb2018", root=str(root), split={"train": 0.334, "val": 0.333, "test": 0.333}, **kw
    )


def test_dsb2018_keeps_touching_nuclei_apart(tmp_path):
    touching_tree(tmp_path)
    src = load_source(_cfg(tmp_path), (32, 32), 3, 0)
    assert src.instances is not None
    [(_, mask)] = list(src.splits["test"])
    (ids,) = list(src.instances["test"])
    ids = ids.numpy()[..., 0]
    assert sorted(np.unique(ids)) == [0, 1, 2, 3]  # a, b, c in file-name order
    for k, (rows, cols) in enumerate(NUCLEI.values(), start=1):
        assert (ids[rows, cols] == k).all() and (ids == k).sum() == 16 * (2 if k == 2 else 1)
    np.testing.assert_array_equal(ids > 0, mask.numpy()[..., 0] == 1)
    # Resized (nearest neighbour) like the masks: objects stay where the class mask is.
    small = load_source(_cfg(tmp_path), (16, 16), 3, 0)
    for split in ("train", "test"):
        ((_, m),), (i,) = list(small.splits[split]), list(small.instances[split])
        np.testing.assert_array_equal(i.numpy() > 0, m.numpy() == 1)


class Echo:
    """A 'model' whose sigmoid output is the image's red channel: exactly the nuclei."""

    def predict_on_batch(self, x):
        return np.asarray(x)[..., :1]


def test_instance_score_of_a_perfect_pixel_prediction_by_hand(tmp_path):
    touching_tree(tmp_path)
    cfg = _cfg(tmp_path)
    src = load_source(cfg, (32, 32), 3, 0)
    batches = make_dataset(src.splits["test"], batch_size=2, training=False, seed=0)
    got = evaluate_split(Echo(), batches, src, cfg, "sigmoid")
    # Every pixel right, but A and B form one predicted component (48 pixels):
    # IoU(A) = 16/48, IoU(B) = 32/48, IoU(C) = 1. For t <= 0.65: TP 2 (B, C), FN 1 -> 2/3;
    # for the six t >= 0.70: TP 1, FP 1, FN 2 -> 1/4.
    assert got["test_instance_map"] == pytest.approx((4 * 2 / 3 + 6 * 1 / 4) / 10)
    assert got["test_image_mean_iou"] == 1.0 and got["test_hd95"] == 0.0
    assert set(got) == {"test_image_mean_iou", "test_image_dice", "test_instance_map", "test_hd95"}
    # Without the per-nucleus objects the merged pair would count as one correct object.
    src.instances = None
    assert evaluate_split(Echo(), batches, src, cfg, "sigmoid")["test_instance_map"] == 1.0


def test_unknown_challenge_metric_fails_before_any_file_is_read(tmp_path):
    from segexp.errors import ConfigError

    cfg = dataset_cfg("dsb2018", root=str(tmp_path / "missing"), challenge_metrics=["iou95"])
    with pytest.raises(ConfigError, match=r"dataset.challenge_metrics: unknown metric\(s\) iou95"):
        load_source(cfg, (32, 32), 3, 0)
