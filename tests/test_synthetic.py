"""The built-in synthetic dataset: determinism, label sets, difficulty, splits."""

from __future__ import annotations

import numpy as np
import pytest
from omegaconf import OmegaConf

from segexp.config import load_preset
from segexp.data.synthetic import generate, split_counts
from segexp.errors import ConfigError


def _cfg(**kw):
    base = load_preset("dataset", "synthetic")
    return OmegaConf.merge(base, kw)


def test_same_seed_same_data_other_seed_other_data():
    cfg = _cfg(num_images=6)
    a = generate(cfg, (32, 32), 1, seed=3)
    b = generate(cfg, (32, 32), 1, seed=3)
    c = generate(cfg, (32, 32), 1, seed=4)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[1], c[1])


@pytest.mark.parametrize(("mode", "labels"), [("trimap", {0, 1, 2}), ("binary", {0, 1})])
def test_label_sets_and_shapes(mode, labels):
    images, masks = generate(_cfg(mode=mode, num_images=8), (48, 40), 3, seed=0)
    assert images.shape == (8, 48, 40, 3) and images.dtype == np.float32
    assert masks.shape == (8, 48, 40, 1)
    assert set(np.unique(masks)) == labels
    assert images.min() >= 0.0 and images.max() <= 1.0


def test_boundary_is_a_thin_band_around_objects():
    _, masks = generate(_cfg(mode="trimap", num_images=8, boundary_width=2), (64, 64), 1, 0)
    frac = np.bincount(masks.ravel(), minlength=3) / masks.size
    assert 0.02 < frac[2] < frac[1]  # boundary present but thinner than the objects
    assert frac[0] > 0.5


def test_not_solvable_by_a_per_pixel_threshold():
    """The best single intensity threshold stays far from a perfect object mask."""
    images, masks = generate(_cfg(mode="binary", num_images=24), (64, 64), 1, seed=1)
    x, y = images[..., 0].ravel(), masks[..., 0].ravel()
    best = 0.0
    for t in np.quantile(x, np.linspace(0.02, 0.98, 49)):
        for pred in (x > t, x <= t):
            inter, union = np.sum(pred & (y == 1)), np.sum(pred | (y == 1))
            best = max(best, inter / union)
    assert best < 0.5


def test_several_objects_per_image():
    from scipy import ndimage

    _, masks = generate(_cfg(mode="binary", num_images=10), (64, 64), 1, seed=0)
    counts = [ndimage.label(m[..., 0])[1] for m in masks]
    assert np.mean(counts) >= 2


def test_split_counts():
    assert split_counts(100, {"train": 0.6, "val": 0.2, "test": 0.2}) == {
        "train": 60,
        "val": 20,
        "test": 20,
    }
    assert sum(split_counts(7, {"train": 0.7, "val": 0.15, "test": 0.15}).values()) == 7
    with pytest.raises(ConfigError, match="dataset.split"):
        split_counts(3, {"train": 0.0, "val": 0.5, "test": 0.5})


def test_bad_mode_is_one_line_error():
    with pytest.raises(ConfigError, match="dataset.mode='stripes'"):
        generate(_cfg(mode="stripes"), (32, 32), 1, 0)
