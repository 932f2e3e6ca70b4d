"""segexp-predict on a run's original test files reproduces the run's logged test mean IoU,
for a model trained on resized whole images and for one trained on native-resolution tiles."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient
from PIL import Image

from segexp import metrics
from segexp.data import decode, geometry
from segexp.data import split as splitlib
from segexp.predict.app import main as predict_main
from tests._e2e import train_run

SPLIT = {"train": 0.6, "val": 0.2, "test": 0.2}
BASE = [
    "dataset=folder",
    "dataset.channels=1",
    f"dataset.split={{train:{SPLIT['train']},val:{SPLIT['val']},test:{SPLIT['test']}}}",
    "model.depth=2",
    "model.filters=8",
    "loss=bce_dice",
    "trainer.batch_size=4",
    "trainer.verbose=0",
    "trainer.num_sample_images=2",
    "trainer.log_images_every=100",
    "optimizer.learning_rate=0.01",
]


def write_blobs(root: Path, n: int, shape: tuple[int, int], seed: int = 0) -> tuple[Path, Path]:
    """``n`` grayscale PNGs of ``shape`` (rows, cols) with bright ellipses on a noisy, unevenly
    lit background, and 0/255 masks of the ellipses (the folder preset's mask values)."""
    img_dir, mask_dir = root / "img", root / "gt"
    img_dir.mkdir(parents=True)
    mask_dir.mkdir()
    rng = np.random.default_rng(seed)
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w]
    for i in range(n):
        mask = np.zeros(shape, bool)
        for _ in range(rng.integers(2, 4)):
            cy, cx = rng.uniform(0.15, 0.85) * h, rng.uniform(0.15, 0.85) * w
            ry, rx = rng.uniform(0.08, 0.2) * h, rng.uniform(0.08, 0.2) * w
            mask |= ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0
        light = 60 + 40 * (xx / w)
        image = light + 110 * mask + rng.normal(0, 18, shape)
        Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(img_dir / f"s{i:02d}.png")
        Image.fromarray((mask * 255).astype(np.uint8)).save(mask_dir / f"s{i:02d}.png")
    return img_dir, mask_dir


def test_split_files(img_dir: Path, seed: int) -> list[str]:
    """Stems of the run's test split: the folder loader sorts samples by name and splits them
    with segexp.data.split.split_indices(n, fractions, seed)."""
    names = sorted(p.stem for p in img_dir.iterdir())
    idx = splitlib.split_indices(len(names), splitlib.split_fractions(SPLIT), seed)
    return [names[i] for i in idx["test"]]


test_split_files.__test__ = False  # a helper, not a test


def mean_iou(pairs: list[tuple[np.ndarray, np.ndarray]], num_classes: int = 2) -> float:
    """Mean IoU of (truth, prediction) pairs from one confusion matrix summed over all pixels,
    as the run's Keras metric accumulates it over the test batches."""
    cm = sum(metrics.confusion_matrix(t, p, num_classes) for t, p in pairs)
    return metrics.confusion_matrix_metrics(cm, ["background", "foreground"])["mean_iou"]


def test_mean_iou_helper_against_hand_count():
    """truth 0000/1110, prediction 0001/1100: background 4 shared of 6 pixels, foreground 2
    of 4 (counted by hand), so mean IoU (4/6 + 2/4) / 2, summed over two 'images'."""
    truth = np.array([[0, 0, 0, 0], [1, 1, 1, 0]])
    pred = np.array([[0, 0, 0, 1], [1, 1, 0, 0]])
    got = mean_iou([(truth[:1], pred[:1]), (truth[1:], pred[1:])])
    assert got == pytest.approx((4 / 6 + 2 / 4) / 2)


def read_ids(path: Path) -> np.ndarray:
    """A 0/255 (ground truth) or 0/1 (predicted) mask file as class ids."""
    plane = decode.read_mask(path)
    return (plane > 0).astype(np.int64)


def to_grid(ids: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Class ids resampled to the training grid the way the loader resamples masks."""
    return np.asarray(geometry.resample(ids[..., None], size, labels=True))[..., 0]


def run_and_predict(compose, tmp_path, store, overrides, images, *extra):
    client, run = train_run(compose, tmp_path / "work", store, "parity", [*BASE, *overrides])
    assert run.info.status == "FINISHED", run.data.tags.get("error")
    out = tmp_path / "pred"
    code = predict_main(
        [
            f"model=runs:/{run.info.run_id}/model",
            f"input={images}",
            f"output={out}",
            f"tracking_uri={store}",
            *extra,
        ]
    )
    assert code == 0
    return run, out


def test_resized_training_predict_reproduces_logged_test_iou(compose, tmp_path, store, capsys):
    """160x120 files trained at 64x64 (dataset.resize=resize): predict resizes each whole test
    image to 64x64 and the mask back to 160x120. Brought to the training grid the way the
    loader brings masks there, predict's masks score the logged test_mean_iou (within 0.002); at
    native resolution they also score it, up to the resolution loss of the 64x64 grid itself
    (the IoU of the ground truth resampled down and back up)."""
    img_dir, mask_dir = write_blobs(tmp_path / "data", 30, (120, 160))
    stems = test_split_files(img_dir, 42)
    test_in = tmp_path / "test_images"
    test_in.mkdir()
    for s in stems:
        (test_in / f"{s}.png").write_bytes((img_dir / f"{s}.png").read_bytes())
    run, out = run_and_predict(
        compose,
        tmp_path,
        store,
        [
            f"dataset.images={img_dir}",
            f"dataset.masks={mask_dir}",
            "dataset.image_size=[64,64]",
            "trainer.epochs=8",
        ],
        test_in,
    )
    said = capsys.readouterr().out
    assert "mode=resize because the model was trained on whole images resized to 64x64" in said
    logged = MlflowClient(store).get_run(run.info.run_id).data.metrics["test_mean_iou"]

    grid, native, gap = [], [], []
    for s in stems:
        truth = read_ids(mask_dir / f"{s}.png")
        pred = read_ids(out / f"{s}.png")
        assert pred.shape == truth.shape == (120, 160)
        truth64 = to_grid(truth, (64, 64))
        grid.append((truth64, to_grid(pred, (64, 64))))
        native.append((truth, pred))
        gap.append((truth, to_grid(truth64, (120, 160))))
    on_grid, at_native, best = mean_iou(grid), mean_iou(native), mean_iou(gap)
    print(f"logged {logged:.4f} grid {on_grid:.4f} native {at_native:.4f} best {best:.4f}")
    assert 0.55 < logged < 0.999  # the model learned something, and not everything
    # On the training grid the two are the same computation on the same pixels: only batch
    # versus single-image float differences remain, so the bound is far tighter than 0.01.
    assert on_grid == pytest.approx(logged, abs=0.002)
    assert abs(at_native - logged) <= 0.01 + (1.0 - best)


def test_tiled_training_predict_reproduces_logged_test_iou(compose, tmp_path, store, capsys):
    """96x64 files cut into native 32x32 tiles (dataset.tile=32): predict slides 32x32 windows
    over each whole test image at native resolution; its masks score the logged test_mean_iou
    within 0.01 with the default overlapping, blended windows, and exactly the same pixels with
    non-overlapping ones (tile_overlap=0), which are the training tiles."""
    img_dir, mask_dir = write_blobs(tmp_path / "data", 15, (64, 96), seed=1)
    stems = test_split_files(img_dir, 42)
    test_in = tmp_path / "test_images"
    test_in.mkdir()
    for s in stems:
        (test_in / f"{s}.png").write_bytes((img_dir / f"{s}.png").read_bytes())
    run, out = run_and_predict(
        compose,
        tmp_path,
        store,
        [
            f"dataset.images={img_dir}",
            f"dataset.masks={mask_dir}",
            "dataset.image_size=[32,32]",
            "dataset.tile=32",
            "trainer.epochs=8",
        ],
        test_in,
    )
    said = capsys.readouterr().out
    assert "mode=tile because the model was trained on native-resolution 32x32 tiles" in said
    logged = MlflowClient(store).get_run(run.info.run_id).data.metrics["test_mean_iou"]
    pairs = [(read_ids(mask_dir / f"{s}.png"), read_ids(out / f"{s}.png")) for s in stems]
    assert all(p.shape == (64, 96) for _, p in pairs)
    blended = mean_iou(pairs)

    exact_out = tmp_path / "pred_exact"
    code = predict_main(
        [
            f"model=runs:/{run.info.run_id}/model",
            f"input={test_in}",
            f"output={exact_out}",
            f"tracking_uri={store}",
            "tile_overlap=0",
            "blend=mean",
        ]
    )
    assert code == 0
    exact = mean_iou(
        [(t, read_ids(exact_out / f"{s}.png")) for s, (t, _) in zip(stems, pairs, strict=True)]
    )
    print(f"logged {logged:.4f} blended {blended:.4f} non-overlapping {exact:.4f}")
    assert 0.55 < logged < 0.999
    assert exact == pytest.approx(logged, abs=0.002)
    assert blended == pytest.approx(logged, abs=0.01)
