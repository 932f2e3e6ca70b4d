"""Challenge metrics against values worked out by hand on tiny label arrays."""

from __future__ import annotations

import numpy as np
import pytest

from segexp import challenge as ch
from segexp.errors import ConfigError


def _two_images():
    """Image 1: truth [[1,1],[0,0]], prediction [[1,0],[0,0]]; image 2: all background."""
    trues = [np.array([[1, 1], [0, 0]]), np.zeros((2, 2), int)]
    preds = [np.array([[1, 0], [0, 0]]), np.zeros((2, 2), int)]
    return preds, trues


def test_image_means_differ_from_pooled_values():
    preds, trues = _two_images()
    got = ch.scores(preds, trues, ["image_mean_iou", "image_dice"], num_classes=2)
    # Image 1: IoU(1) = 1/2, IoU(0) = 2/3, Dice = 2/3. Image 2: class 1 absent from truth and
    # prediction -> left out; IoU(0) = 1; Dice of an empty, correctly empty image = 1.
    assert got["image_mean_iou"] == pytest.approx((7 / 12 + 1) / 2)  # 19/24
    assert got["image_dice"] == pytest.approx((2 / 3 + 1) / 2)
    # Pooled over both images: IoU(1) = 1/2, IoU(0) = 6/7 -> 19/28, not 19/24.
    assert got["image_mean_iou"] != pytest.approx(19 / 28)


def test_ignored_pixels_and_three_classes():
    true = np.array([[0, 1, 2, 9]])
    pred = np.array([[0, 1, 1, 0]])
    got = ch.scores(
        [pred],
        [true],
        ["image_mean_iou", "image_dice", "pixel_error"],
        num_classes=3,
        ignore_value=9,
    )
    # Valid pixels 0..2: IoU(0) = 1, IoU(1) = 1/2, IoU(2) = 0; Dice 1, 2/3, 0.
    assert got["image_mean_iou"] == pytest.approx(1.5 / 3)
    assert got["image_dice"] == pytest.approx((1 + 2 / 3) / 3)
    assert got["pixel_error"] == pytest.approx(1 / 3)


def test_instance_map_two_nuclei_with_known_overlap():
    true = np.zeros((8, 12), int)
    true[0:4, 0:4] = 1  # nucleus A, 4x4
    true[0:4, 6:10] = 2  # nucleus B, 4x4
    pred = np.zeros((8, 12), int)
    pred[0:4, 0:4] = 1  # exactly A: IoU 1
    pred[0:5, 6:11] = 1  # 5x5 over B: IoU 16/25 = 0.64
    pred[6:8, 0:2] = 1  # a false positive
    # t = 0.50, 0.55, 0.60: TP 2, FP 1, FN 0 -> 2/3; the 7 higher t: TP 1, FP 2, FN 1 -> 1/4.
    want = (3 * 2 / 3 + 7 * 1 / 4) / 10
    got = ch.scores(
        [pred], [(true > 0).astype(int)], ["instance_map"], num_classes=2, instances=[true]
    )
    assert got["instance_map"] == pytest.approx(want)
    assert ch.instance_ap(true, ch.components(pred)) == pytest.approx(0.375)


def test_instance_map_without_objects_uses_true_components_and_empty_rules():
    true = np.zeros((6, 6), int)
    true[0:2, 0:2] = 1
    true[3:6, 3:6] = 1
    # No instances given: the two true components are the objects; one predicted exactly.
    pred = np.zeros((6, 6), int)
    pred[0:2, 0:2] = 1
    got = ch.scores([pred], [true], ["instance_map"], num_classes=2)
    assert got["instance_map"] == pytest.approx(1 / 2)  # TP 1, FN 1 at every threshold
    empty = np.zeros((4, 4), int)
    assert ch.instance_ap(empty, empty) == 1.0
    assert ch.instance_ap(true, np.zeros_like(true)) == 0.0


def test_hd95_is_the_95th_percentile_not_the_maximum():
    true = np.zeros((11, 20), bool)
    true[0, :] = True  # a one-pixel line: every pixel is boundary
    pred = true.copy()
    pred[10, 0] = pred[10, 19] = True  # two outliers, each 10 pixels from the line
    # pred -> true: 20 zeros and two 10s; the 95th percentile of 22 sorted values lies at
    # position 0.95 * 21 = 19.95, between 0 and 10: 9.5. true -> pred: all 0. Hausdorff = 10.
    assert ch.hd95(pred, true) == pytest.approx(9.5)
    assert ch.hd95(true, pred) == pytest.approx(9.5)


def test_hd95_of_two_separate_squares_and_empty_masks():
    true = np.zeros((4, 14), bool)
    true[:, 0:4] = True
    pred = np.zeros((4, 14), bool)
    pred[:, 10:14] = True
    # Boundary distances pred -> true column 3: 7 (x4), 8, 8, 9, 9, 10 (x4): 95th pct = 10.
    assert ch.hd95(pred, true) == pytest.approx(10.0)
    assert ch.hd95(np.zeros_like(true), np.zeros_like(true)) == 0.0
    assert ch.hd95(np.zeros_like(true), true) == pytest.approx(np.hypot(4, 14))
    got = ch.scores(
        [pred.astype(int), true.astype(int)], [true.astype(int)] * 2, ["hd95"], num_classes=2
    )
    assert got["hd95"] == pytest.approx(5.0)


def _membrane_row() -> np.ndarray:
    """5x4 classes: membrane (1) on row 2 between cell A (rows 0-1) and cell B (rows 3-4)."""
    cls = np.zeros((5, 4), int)
    cls[2] = 1
    return cls


def test_rand_error_of_merged_cells_by_hand():
    true = _membrane_row()
    # No membrane predicted: one segment over both cells. On the 16 true cell pixels,
    # same-segment pixel pairs (ordered): truth 2 * 8 * 7 = 112, prediction 16 * 15 = 240,
    # both 112 -> precision 112/240, recall 1, F = 7/11, error 4/11.
    got = ch.scores([np.zeros_like(true)], [true], ["rand_error", "pixel_error"], num_classes=2)
    assert got["rand_error"] == pytest.approx(4 / 11)
    assert got["pixel_error"] == pytest.approx(4 / 20)
    assert ch.scores([true], [true], ["rand_error"], num_classes=2)["rand_error"] == 0.0


def test_rand_error_gives_predicted_membrane_pixels_to_the_nearest_cell():
    true = _membrane_row()
    pred = true.copy()
    pred[0, 1] = 1  # a stray membrane pixel inside cell A, not splitting it
    got = ch.scores([pred], [true], ["rand_error", "pixel_error"], num_classes=2)
    assert got["rand_error"] == 0.0 and got["pixel_error"] == pytest.approx(1 / 20)
    # A predicted two-pixel-wide membrane through cell A (5x6 image, cells of 12 pixels)
    # splits it; after expansion the halves hold 6 pixels each. Same-cell pairs: truth
    # 2 * 12 * 11 = 264, prediction 2 * 6 * 5 + 12 * 11 = 192, both 192 -> error 3/19.
    true = np.zeros((5, 6), int)
    true[2] = 1
    split = true.copy()
    split[0:2, 2:4] = 1
    got = ch.scores([split], [true], ["rand_error"], num_classes=2)
    assert got["rand_error"] == pytest.approx(3 / 19)


def test_unknown_metric_names_fail_with_the_key():
    assert ch.check_names(None) == []
    assert ch.check_names(["hd95", "hd95"]) == ["hd95"]
    with pytest.raises(
        ConfigError, match=r"dataset.challenge_metrics: unknown .*map.*instance_map"
    ):
        ch.check_names(["image_mean_iou", "map"])
    with pytest.raises(ConfigError, match=r"dataset.challenge_metrics='hd95': expected a list"):
        ch.check_names("hd95")


def test_rand_error_skips_images_without_scorable_cells():
    membrane = np.ones((3, 3), int)
    dots = np.ones((3, 3), int)
    dots[0, 0] = dots[2, 2] = 0  # two one-pixel cells: no pixel pair within a cell
    assert ch.rand_error(ch.components(membrane == 0, 1), np.ones((3, 3), int)) is None
    cells = ch.components(dots == 0, 1)
    assert ch.rand_error(cells, cells) is None
    # Merged by the prediction, the two one-pixel cells are a defined, total error.
    assert ch.rand_error(cells, np.ones((3, 3), int)) == 1.0
    got = ch.scores(
        [membrane, _membrane_row()], [membrane, _membrane_row()], ["rand_error"], num_classes=2
    )
    assert got == {"rand_error": 0.0}
