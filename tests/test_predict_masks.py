"""segexp-predict masks=: a trained model's predictions scored against true mask files, checked
against an independent NumPy count on the written masks; and its one-line refusals."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segexp.predict.app import main as predict_main
from segexp.predict.store import load_model_and_meta, save_local
from tests._e2e import train_run
from tests.test_predict import threshold_model
from tests.test_predict_parity import BASE, write_blobs


def counts(truth: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """[[tp, fp, fn] for class 0, 1] of one 0/1 image."""
    return np.array(
        [
            [np.sum((truth == c) & (pred == c)), np.sum((truth != c) & (pred == c))]
            + [np.sum((truth == c) & (pred != c))]
            for c in (0, 1)
        ],
        np.float64,
    )


def expected_scores(pairs: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, float]:
    """Per-image mean IoU over the classes in truth or prediction, per-image foreground Dice
    (1 when neither has foreground), both averaged over images; pooled IoU over all pixels."""
    ious, dices, pooled = [], [], np.zeros((2, 3))
    for truth, pred in pairs:
        c = counts(truth, pred)
        pooled += c
        union = c.sum(axis=1)
        ious.append(np.mean([c[k, 0] / union[k] for k in (0, 1) if union[k] > 0]))
        tp, fp, fn = c[1]
        dices.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0)
    union = pooled.sum(axis=1)
    return {
        "image_mean_iou": float(np.mean(ious)),
        "image_dice": float(np.mean(dices)),
        "mean_iou": float(np.mean([pooled[k, 0] / union[k] for k in (0, 1) if union[k] > 0])),
    }


def test_expected_scores_against_hand_count():
    """truth 0011, prediction 0111: class 0 IoU 1/2, class 1 IoU 2/3, Dice 4/5; an all-0 pair
    scores IoU 1 (class 0 only) and Dice 1. Pooled: class 0 3/4 (3 shared of 4), class 1 2/3."""
    a = (np.array([[0, 0, 1, 1]]), np.array([[0, 1, 1, 1]]))
    b = (np.zeros((1, 2), int), np.zeros((1, 2), int))
    got = expected_scores([a, b])
    assert got["image_mean_iou"] == pytest.approx(((1 / 2 + 2 / 3) / 2 + 1) / 2)
    assert got["image_dice"] == pytest.approx((4 / 5 + 1) / 2)
    assert got["mean_iou"] == pytest.approx((3 / 4 + 2 / 3) / 2)


def read_pairs(img_dir: Path, mask_dir: Path, out: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    """(truth, prediction) class ids of every input: 0/255 true files, 0/1 predicted files."""
    pairs = []
    for image in sorted(img_dir.iterdir()):
        truth = (np.asarray(Image.open(mask_dir / image.name)) == 255).astype(int)
        pred = np.asarray(Image.open(out / image.name)).astype(int)
        assert pred.shape == truth.shape == (40, 48)
        pairs.append((truth, pred))
    return pairs


def test_predict_scores_true_masks(compose, tmp_path, store, capsys):
    """A run trained on 0/255 masks records the dataset's mask map ({0: 0, 255: 1}) and
    challenge metrics with its model. segexp-predict masks= writes metrics.json with those
    metrics and the pooled mean IoU of its 0/1 mask files against the true files, for the
    trained model and for a fixed intensity-threshold model carrying the run's metadata (whose
    masks have foreground and errors by construction); metrics= picks other metrics; a missing
    mask, and masks whose values the recorded map does not accept, are refused in one line."""
    img_dir, mask_dir = write_blobs(tmp_path / "data", 12, (40, 48), seed=3)
    _, run = train_run(
        compose,
        tmp_path / "work",
        store,
        "masks",
        [
            *BASE,
            f"dataset.images={img_dir}",
            f"dataset.masks={mask_dir}",
            "dataset.image_size=[32,32]",
            "trainer.epochs=3",
        ],
    )
    assert run.info.status == "FINISHED", run.data.tags.get("error")
    uri = f"runs:/{run.info.run_id}/model"
    trained = tmp_path / "pred_trained"
    args = [f"input={img_dir}", f"tracking_uri={store}", f"masks={mask_dir}"]
    assert predict_main([f"model={uri}", *args, f"output={trained}"]) == 0
    result = json.loads((trained / "metrics.json").read_text())
    expected = expected_scores(read_pairs(img_dir, mask_dir, trained))
    assert result["metrics"] == pytest.approx(expected, abs=1e-9)

    _, meta = load_model_and_meta(uri, tracking_uri=store)
    assert meta["mask_values"] == {"0": 0, "255": 1}
    assert meta["challenge_metrics"] == ["image_mean_iou", "image_dice"]
    model = save_local(threshold_model(None), meta, tmp_path / "threshold")
    capsys.readouterr()

    out = tmp_path / "pred"
    args = [f"model={model}", f"input={img_dir}"]
    assert predict_main([*args, f"output={out}", f"masks={mask_dir}"]) == 0
    said = capsys.readouterr().out
    pairs = read_pairs(img_dir, mask_dir, out)
    assert all(set(np.unique(p)) == {0, 1} for _, p in pairs)
    assert sum(int(np.sum(t != p)) for t, p in pairs) > 0
    expected = expected_scores(pairs)
    result = json.loads((out / "metrics.json").read_text())
    assert result["metrics"] == pytest.approx(expected, abs=1e-9)
    assert set(result["metrics"]) == set(expected)
    assert result["complete"] and result["failed"] == [] and len(result["images"]) == 12
    assert "challenge_metrics" in result["metrics_from"]
    for name, value in expected.items():
        assert re.search(rf"^{name}\s+{value:.4f}", said, re.M), said

    # metrics= chooses the challenge metrics: pixel error pooled over all pixels
    out2 = tmp_path / "pred2"
    assert (
        predict_main([*args, f"output={out2}", f"masks={mask_dir}", "metrics=[pixel_error]"]) == 0
    )
    got = json.loads((out2 / "metrics.json").read_text())["metrics"]
    wrong = sum(int(np.sum(t != p)) for t, p in pairs)
    assert got == pytest.approx(
        {"pixel_error": wrong / (12 * 40 * 48), "mean_iou": expected["mean_iou"]}, abs=1e-9
    )
    capsys.readouterr()

    # the predicted 0/1 files as "true" masks: 1 is no stored value of the recorded map
    assert predict_main([*args, f"output={tmp_path / 'p3'}", f"masks={out}"]) == 2
    err = capsys.readouterr().err.strip()
    assert "has values [1] outside the model's class map" in err and "[0, 255]" in err
    assert len(err.splitlines()) == 1

    # a true mask of another size than its image
    small = tmp_path / "small"
    small.mkdir()
    for m in mask_dir.iterdir():
        Image.fromarray(np.asarray(Image.open(m))[:20]).save(small / m.name)
    assert predict_main([*args, f"output={tmp_path / 'p5'}", f"masks={small}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        f"segexp-predict: error: masks: {small / 's00.png'} is 48x20, its image "
        f"{img_dir / 's00.png'} 48x40"
    )

    # a missing mask: the image and the key named, before the model is loaded
    (mask_dir / "s05.png").unlink()
    assert predict_main([*args, f"output={tmp_path / 'p4'}", f"masks={mask_dir}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        f"segexp-predict: error: masks={mask_dir}: no mask for image {img_dir / 's05.png'}; "
        "expected a file named s05.<ext> there"
    )
    assert not (tmp_path / "p4").exists()


def test_metrics_key_needs_masks(capsys):
    assert predict_main(["model=m", "input=i", "output=o", "metrics=[image_dice]"]) == 2
    assert "masks=<dir>" in capsys.readouterr().err
    assert predict_main(["model=m", "input=i", "output=o", "masks=m", "metrics=[iou]"]) == 2
    assert "metrics=['iou']: unknown metric(s) iou; expected names from" in capsys.readouterr().err


def test_models_command_starts_quietly():
    """segexp-models prints no TensorFlow start-up lines (oneDNN, CUDA probes, absl notice)."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])
    done = subprocess.run(
        [sys.executable, "-m", "segexp.models.cli", "unet_small"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "unet_small: segexp default; input 64x64x1" in done.stdout
    for marker in ("oneDNN", "cuInit", "cuda", "absl::InitializeLog", "cpu_feature_guard"):
        assert marker not in done.stderr, done.stderr
