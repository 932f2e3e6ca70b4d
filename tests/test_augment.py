"""Augmentation: image and mask move together, masks keep int32 and their label set, seeds."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from omegaconf import OmegaConf

from segexp.augment import (
    affine_matrix,
    apply_transform,
    build_augment,
    coarse_grid,
    displacement_field,
)
from segexp.augment.geometric import upsample_matrix
from segexp.augment.sampling import sample_keys
from segexp.config import load_preset
from segexp.errors import ConfigError

CONF = Path(__file__).resolve().parents[1] / "conf" / "augmentation"
GEOMETRIC = {
    "affine": {
        "name": "affine",
        "rotation_range": 30,
        "width_shift_range": 0.1,
        "height_shift_range": 0.1,
        "zoom_range": 0.2,
        "shear_range": 10,
        "horizontal_flip": True,
    },
    "elastic": {"name": "elastic", "grid_size": 3, "sigma": 4.0},
    "unet_paper": OmegaConf.to_container(load_preset("augmentation", "unet_paper")),
}


def toy_mask(size: int = 32, ignore: int | None = None) -> np.ndarray:
    m = np.zeros((size, size, 1), np.int32)
    m[6:20, 4:18] = 1
    m[14:28, 20:29] = 2
    m[22:26, 6:12] = 1
    if ignore is not None:
        m[0:2, :] = ignore
    return m


def run(cfg: dict, image: np.ndarray, mask: np.ndarray, seed: tuple[int, int]):
    fn = build_augment(cfg)
    img, msk = fn(tf.constant(image), tf.constant(mask), tf.constant(seed, tf.int64))
    return img.numpy(), msk.numpy(), msk.dtype


def all_option_cfgs() -> list[dict]:
    return [
        OmegaConf.to_container(load_preset("augmentation", p.stem))
        for p in sorted(CONF.glob("*.yaml"))
    ]


def test_none_is_none():
    assert build_augment({"name": "none"}) is None


@pytest.mark.parametrize("cfg", all_option_cfgs(), ids=lambda c: c["name"])
def test_yaml_options_keep_dtype_shape_and_label_set(cfg):
    fn = build_augment(cfg)
    if fn is None:
        return
    mask = toy_mask(ignore=255)
    image = np.random.default_rng(0).random((32, 32, 3)).astype(np.float32)
    for seed in [(1, 2), (3, 4), (5, 6)]:
        img, msk = fn(tf.constant(image), tf.constant(mask), tf.constant(seed, tf.int64))
        assert msk.dtype == tf.int32 and img.dtype == tf.float32
        assert img.shape == image.shape and msk.shape == mask.shape
        assert set(np.unique(msk.numpy())) <= {0, 1, 2, 255}
        assert np.isfinite(img.numpy()).all()


@pytest.mark.parametrize("name", list(GEOMETRIC))
def test_image_and_mask_move_together(name):
    """The image holds each pixel's own (row, col), the mask its index row * 32 + col: after
    augmentation the image says where each output pixel was read (bilinear of a ramp is the
    source coordinate) and the mask which input pixel it took; nearest neighbour must be that
    coordinate rounded, at every pixel."""
    rows, cols = np.meshgrid(np.arange(32.0), np.arange(32.0), indexing="ij")
    image = np.stack([rows, cols], axis=-1).astype(np.float32)
    mask = (rows * 32 + cols).astype(np.int32)[..., None]
    cfg = dict(GEOMETRIC[name])
    if name == "unet_paper":
        cfg["color"] = None  # intensity changes would break the encoding
    moved = 0.0
    for seed in [(0, 1), (7, 9), (11, 3)]:
        img, msk, dtype = run(cfg, image, mask, seed)
        assert dtype == tf.int32
        src_row, src_col = np.divmod(msk[..., 0], 32)
        assert np.abs(img[..., 0] - src_row).max() <= 0.5 + 1e-3
        assert np.abs(img[..., 1] - src_col).max() <= 0.5 + 1e-3
        moved = max(moved, (msk != mask).mean())
    assert moved > 0.5  # the transform did something


@pytest.mark.parametrize("name", ["affine", "elastic", "unet_paper", "color"])
def test_same_seed_same_output_different_seed_different_output(name):
    cfg = GEOMETRIC.get(name, {"name": "color"})
    mask = toy_mask()
    image = np.random.default_rng(1).random((32, 32, 1)).astype(np.float32)
    a_img, a_msk, _ = run(cfg, image, mask, (3, 5))
    b_img, b_msk, _ = run(cfg, image, mask, (3, 5))
    c_img, _, _ = run(cfg, image, mask, (4, 5))
    np.testing.assert_array_equal(a_img, b_img)
    np.testing.assert_array_equal(a_msk, b_msk)
    assert np.abs(a_img - c_img).max() > 1e-3


def test_reproducible_inside_tf_data_map():
    fn = build_augment(GEOMETRIC["unet_paper"])
    mask = toy_mask()
    image = mask.astype(np.float32) / 2

    def stream():
        ds = tf.data.Dataset.from_tensors((image, mask)).repeat(4)
        seeds = tf.data.Dataset.random(seed=42).batch(2)
        ds = tf.data.Dataset.zip(ds, seeds).map(
            lambda pair, s: fn(pair[0], pair[1], s), num_parallel_calls=2, deterministic=True
        )
        return [(i.numpy(), m.numpy()) for i, m in ds]

    first, second = stream(), stream()
    for (i1, m1), (i2, m2) in zip(first, second, strict=True):
        np.testing.assert_array_equal(i1, i2)
        np.testing.assert_array_equal(m1, m2)
        assert m1.shape == (32, 32, 1) and set(np.unique(m1)) <= {0, 1, 2}
    assert not np.array_equal(first[0][1], first[1][1])


def test_flip_matches_numpy():
    mask = toy_mask()
    image = np.random.default_rng(2).random((32, 32, 1)).astype(np.float32)
    img, msk, _ = run(
        {"name": "flip", "horizontal": True, "vertical": True, "p": 1.0}, image, mask, (1, 1)
    )
    np.testing.assert_array_equal(msk, mask[::-1, ::-1])
    np.testing.assert_allclose(img, image[::-1, ::-1])
    img, msk, _ = run(
        {"name": "flip", "horizontal": True, "vertical": True, "p": 0.0}, image, mask, (1, 1)
    )
    np.testing.assert_array_equal(msk, mask)


def test_affine_identity_and_quarter_turn_match_numpy():
    mask = toy_mask()
    image = np.random.default_rng(3).random((32, 32, 1)).astype(np.float32)
    img, msk, _ = run(
        {
            "name": "affine",
            "rotation_range": 0,
            "width_shift_range": 0,
            "height_shift_range": 0,
            "zoom_range": 0,
            "shear_range": 0,
        },
        image,
        mask,
        (1, 2),
    )
    np.testing.assert_array_equal(msk, mask)
    np.testing.assert_allclose(img, image, atol=1e-6)

    zero, one = tf.constant(0.0), tf.constant(1.0)
    transform = affine_matrix(
        32,
        32,
        rotation=tf.constant(math.pi / 2),
        shear=zero,
        zoom_x=one,
        zoom_y=one,
        shift_x=zero,
        shift_y=zero,
        flip_x=one,
        flip_y=one,
    )
    img, msk = apply_transform(tf.constant(image), tf.constant(mask), transform)
    matches = [k for k in (1, 3) if np.array_equal(msk.numpy(), np.rot90(mask, k, axes=(0, 1)))]
    assert matches, "a 90 degree rotation must equal np.rot90 exactly for the mask"
    np.testing.assert_allclose(img.numpy(), np.rot90(image, matches[0], axes=(0, 1)), atol=1e-5)


def test_elastic_field_hits_coarse_grid_at_nodes():
    keys = sample_keys(tf.constant([[5, 6], [7, 8]], tf.int64))
    field = displacement_field(keys, 33, 33, grid=(3, 3), sigma=10.0).numpy()
    coarse = coarse_grid(keys, (3, 3), 10.0).numpy()
    assert field.shape == (2, 33, 33, 2)
    np.testing.assert_allclose(field[:, ::16, ::16], coarse, atol=1e-4)
    assert 2.0 < np.abs(coarse).mean() < 20.0
    # smooth between the nodes: neighbouring pixels differ by far less than the node spacing
    assert np.abs(np.diff(field, axis=1)).max() < np.abs(coarse).max() / 4


def test_upsample_matrix_matches_an_independent_interpolation():
    # linear: numpy's interp at the corner-aligned positions; cubic: reproduces quadratics
    # exactly away from the ends (Keys' kernel is third-order accurate)
    pos = np.arange(9) * 3 / 8
    values = np.array([1.0, -2.0, 0.5, 4.0])
    lin = upsample_matrix(9, 4, "bilinear") @ values
    np.testing.assert_allclose(lin, np.interp(pos, np.arange(4), values), atol=1e-6)
    cubic = upsample_matrix(9, 4, "bicubic")
    np.testing.assert_allclose(cubic.sum(axis=1), 1.0, atol=1e-6)
    quad = cubic @ (np.arange(4.0) ** 2)
    inner = (pos >= 1) & (pos <= 2)
    np.testing.assert_allclose(quad[inner], pos[inner] ** 2, atol=1e-5)


def test_color_changes_image_only():
    mask = toy_mask(ignore=255)
    image = np.full((32, 32, 1), 0.5, np.float32)
    img, msk, _ = run({"name": "color", "brightness": 0.2, "noise_std": 0.05}, image, mask, (2, 3))
    np.testing.assert_array_equal(msk, mask)
    assert np.abs(img - image).max() > 1e-3
    assert img.min() >= 0.0 and img.max() <= 1.0


@pytest.mark.parametrize(
    "cfg",
    [
        {"name": "warp"},
        {"name": "affine", "rotaton_range": 10},
        {"name": "affine", "fill_mode": "mirror"},
        {"name": "affine", "rotation_range": -5},
        {"name": "elastic", "grid_size": 1},
        {"name": "unet_paper", "blur": {}},
    ],
)
def test_bad_config_raises_config_error(cfg):
    with pytest.raises(ConfigError):
        build_augment(cfg)


def test_a_batch_gives_each_sample_what_it_gets_alone():
    """Augmenting after batch() keeps each sample a function of its own seed: the same sample
    and seed give the same result alone and in any batch, whatever the other samples."""
    fn = build_augment(GEOMETRIC["unet_paper"])
    rng = np.random.default_rng(4)
    images = rng.random((3, 32, 32, 1)).astype(np.float32)
    masks = np.stack([toy_mask(), toy_mask()[::-1], toy_mask()[:, ::-1]])
    seeds = np.array([[9, 0], [9, 1], [9, 2]], np.int64)
    b_img, b_msk = fn.batch(tf.constant(images), tf.constant(masks), tf.constant(seeds))
    for i in range(3):
        img, msk = fn(tf.constant(images[i]), tf.constant(masks[i]), tf.constant(seeds[i]))
        np.testing.assert_array_equal(b_msk.numpy()[i], msk.numpy())
        np.testing.assert_allclose(b_img.numpy()[i], img.numpy(), atol=1e-6)
    # another batch around sample 1 (other neighbours, another position) changes nothing
    order = [2, 1]
    _, o_msk = fn.batch(tf.constant(images[order]), tf.constant(masks[order]), seeds[order])
    np.testing.assert_array_equal(o_msk.numpy()[1], b_msk.numpy()[1])
    assert not np.array_equal(b_msk.numpy()[0], b_msk.numpy()[1])
