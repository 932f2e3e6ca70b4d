"""NumPy arrays (one-hot and index masks) and the local MNIST file."""

from __future__ import annotations

import numpy as np
import pytest

from segexp.data import load_source
from segexp.errors import DataError
from tests.fixtures_data import dataset_cfg, make_mnist_npz, make_onehot_arrays


def test_onehot_npy_like_the_lecture_notes(tmp_path):
    images, ids = make_onehot_arrays(tmp_path)
    seg = np.eye(2, dtype=np.float32)[ids]  # [N, H, W, 2] one-hot
    src = load_source(dataset_cfg("arrays", root=str(tmp_path)), (8, 8), 3, 0)
    assert src.sizes == {"train": 8, "val": 1, "test": 1}
    assert src.extra["mask_format"] == "onehot"
    image, mask = next(iter(src.splits["train"]))
    assert image.shape == (8, 8, 3) and mask.shape == (8, 8, 1)
    assert sorted(np.unique(mask.numpy())) == [0, 1]
    assert src.extra["class_frequencies"]["object"] == pytest.approx(36 / 256)
    full = load_source(dataset_cfg("arrays", root=str(tmp_path)), (16, 16), 3, 0)
    i0, m0 = next(iter(full.splits["test"]))
    k = [j for j in range(10) if np.allclose(images[j] / 255.0, i0.numpy(), atol=1e-6)]
    assert len(k) == 1 and np.array_equal(m0.numpy()[..., 0], ids[k[0]])
    np.save(tmp_path / "seg_training.npy", seg[:9])
    with pytest.raises(DataError, match="images_training.npy has 10 samples but seg_training.npy"):
        load_source(dataset_cfg("arrays", root=str(tmp_path)), (8, 8), 3, 0)


def test_index_npz_with_labels_and_bad_values(tmp_path):
    images = np.random.default_rng(1).random((6, 12, 12)).astype(np.float32)
    masks = np.zeros((6, 12, 12), np.uint8)
    masks[:, :4] = 255
    labels = np.arange(6)
    np.savez(tmp_path / "data.npz", x=images, y=masks)
    np.save(tmp_path / "labels.npy", labels)
    cfg = dataset_cfg(
        "arrays",
        root=str(tmp_path),
        images="data.npz",
        images_key="x",
        masks="data.npz",
        masks_key="y",
        labels="labels.npy",
        mask_values={0: 0, 255: 1},
        split={"train": 0.66, "val": 0.17, "test": 0.17},
    )
    src = load_source(cfg, (12, 12), 1, 3)
    assert src.extra["mask_format"] == "index"
    assert sorted(np.concatenate(list(src.labels.values())).tolist()) == list(range(6))
    for split, ds in src.splits.items():
        got = [float(i.numpy()[0, 0, 0]) for i, _ in ds]
        want = [float(images[j, 0, 0]) for j in src.labels[split]]
        np.testing.assert_allclose(got, want, atol=1e-6)
    masks[2, 0, 0] = 7
    np.savez(tmp_path / "data.npz", x=images, y=masks)
    with pytest.raises(DataError, match=r"data.npz:y\[2\] has values \[7\] outside the class map"):
        load_source(cfg, (12, 12), 1, 3)
    cfg.skip_bad = True
    assert sum(load_source(cfg, (12, 12), 1, 3).sizes.values()) == 5


def test_mnist_npz_digits_labels_and_dummy_masks(tmp_path):
    make_mnist_npz(tmp_path)
    src = load_source(dataset_cfg("mnist", root=str(tmp_path)), (28, 28), 1, 0)
    assert src.sizes == {"train": 16, "val": 2, "test": 6}
    assert set(np.concatenate(list(src.labels.values())).tolist()) == {1, 5, 6}
    assert src.extra["task"] == "reconstruction"
    image, mask = next(iter(src.splits["train"]))
    assert image.shape == (28, 28, 1) and float(image.numpy().max()) <= 1.0
    assert mask.shape == (28, 28, 1) and int(mask.numpy().max()) == 0
    all_digits = load_source(
        dataset_cfg("mnist", root=str(tmp_path), digits=None, limit=5), (28, 28), 1, 0
    )
    assert all_digits.sizes == {"train": 5, "val": 5, "test": 5}
    with pytest.raises(DataError, match=r"none does not exist; expected .*mnist.npz.*x_train"):
        load_source(dataset_cfg("mnist", root=str(tmp_path / "none")), (28, 28), 1, 0)
