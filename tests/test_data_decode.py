"""Decoding, mask maps, geometry, prediction modes and split helpers (segexp.data.decode /
mask_map / geometry / split, segexp.predict.contract)."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from PIL import Image

from segexp.data import decode, geometry
from segexp.data import split as splitlib
from segexp.data.mask_map import MaskMap
from segexp.errors import ConfigError, DataError
from segexp.predict.contract import predict_mode


def test_read_image_formats(tmp_path):
    gray16 = (np.arange(12 * 10).reshape(12, 10) * 500).astype(np.uint16)
    Image.fromarray(gray16).save(tmp_path / "g16.png")
    img = decode.read_image(tmp_path / "g16.png", 1)
    assert img.shape == (12, 10, 1) and img.dtype == np.float32
    np.testing.assert_allclose(img[..., 0], gray16 / 65535.0, atol=1e-6)

    rgba = np.zeros((8, 9, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 255, 10
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    img = decode.read_image(tmp_path / "rgba.png", 3)
    assert img.shape == (8, 9, 3)
    np.testing.assert_allclose(img[0, 0], [1.0, 0.0, 0.0])
    gray = decode.read_image(tmp_path / "rgba.png", 1)
    np.testing.assert_allclose(gray[0, 0, 0], 0.299, atol=1e-5)

    tifffile.imwrite(tmp_path / "t16.tif", gray16)
    np.testing.assert_allclose(decode.read_image(tmp_path / "t16.tif", 3)[..., 2], gray16 / 65535.0)

    Image.fromarray(np.full((6, 7), 128, np.uint8)).save(tmp_path / "g.jpg")
    assert decode.read_image(tmp_path / "g.jpg", 3).shape == (6, 7, 3)


def test_palette_masks_keep_indices_and_grey_gifs_keep_levels(tmp_path):
    idx = np.zeros((10, 10), np.uint8)
    idx[2:8, 2:8] = 1
    idx[1, :] = 255  # VOC-style "void" band
    pal = Image.fromarray(idx, "P")
    palette = [0, 0, 0, 128, 0, 0] + [0, 0, 0] * 253 + [224, 224, 192]
    pal.putpalette(palette)
    pal.save(tmp_path / "voc.png")
    np.testing.assert_array_equal(decode.read_mask(tmp_path / "voc.png"), idx)

    levels = np.zeros((10, 10), np.uint8)
    levels[3:6] = 255
    Image.fromarray(levels).save(tmp_path / "drive.gif")
    assert Image.open(tmp_path / "drive.gif").mode == "P"
    np.testing.assert_array_equal(decode.read_mask(tmp_path / "drive.gif"), levels)


def test_colour_mask_and_corrupt_file_are_named(tmp_path):
    rgb = np.zeros((4, 4, 3), np.uint8)
    rgb[0, 0] = (255, 0, 0)
    Image.fromarray(rgb).save(tmp_path / "colour.png")
    with pytest.raises(DataError, match="colour.png: colour"):
        decode.read_mask(tmp_path / "colour.png")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(DataError, match=r"cannot read .*broken.png"):
        decode.read_image(tmp_path / "broken.png", 3)


def test_mask_map():
    m = MaskMap(2, {0: 0, 255: 1}, ignore_value=None)
    raw = np.array([[0, 255], [7, 3]], np.uint8)
    assert m.invalid_values(raw) == [3, 7]
    m = MaskMap(3, {1: 1, 2: 0, 3: 2}, ignore_value=255)
    raw = np.array([[1, 2], [3, 255]], np.uint8)
    assert m.invalid_values(raw) == []
    np.testing.assert_array_equal(m.apply(raw), [[1, 0], [2, 255]])
    np.testing.assert_array_equal(m.class_counts(m.apply(raw)), [1, 1, 1])
    thr = MaskMap(2, None, threshold=128)
    np.testing.assert_array_equal(thr.apply(np.array([0, 127, 128, 250])), [0, 0, 1, 1])
    with pytest.raises(ConfigError, match="maps 255 to 4"):
        MaskMap(2, {255: 4})


def test_resize_keeps_exact_labels_and_tiles():
    import tensorflow as tf

    rng = np.random.default_rng(0)
    mask = rng.choice([0, 1, 2, 255], size=(37, 53, 1)).astype(np.int32)
    image = rng.random((37, 53, 3)).astype(np.float32)
    for mode in ("resize", "crop", "pad"):
        im, m = geometry.resize_pair(tf.constant(image), tf.constant(mask), (32, 32), mode, 255)
        assert im.shape == (32, 32, 3) and m.shape == (32, 32, 1) and m.dtype == tf.int32
        assert set(np.unique(m.numpy())) <= {0, 1, 2, 255}
        assert float(tf.reduce_min(im)) >= 0.0 and float(tf.reduce_max(im)) <= 1.0
    _, m = geometry.resize_pair(tf.constant(image), tf.constant(mask), (64, 64), "crop", 255)
    assert (m.numpy()[0] == 255).all()  # padded rows carry the ignore value
    ti, tm = geometry.tile_pair(tf.constant(image), tf.constant(mask), 16)
    assert ti.shape == (6, 16, 16, 3) and tm.shape == (6, 16, 16, 1)
    np.testing.assert_array_equal(tm[1].numpy(), mask[0:16, 16:32])
    assert geometry.tiles_per_image((37, 53), 16) == 6


def test_splits_are_deterministic_and_disjoint():
    fr = splitlib.split_fractions({"train": 0.7, "val": 0.15, "test": 0.15})
    a = splitlib.split_indices(30, fr, seed=3)
    b = splitlib.split_indices(30, fr, seed=3)
    c = splitlib.split_indices(30, fr, seed=4)
    assert {k: len(v) for k, v in a.items()} == {"train": 22, "val": 4, "test": 4}
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not all(np.array_equal(a[k], c[k]) for k in a)
    assert sorted(np.concatenate(list(a.values())).tolist()) == list(range(30))
    assert splitlib.split_counts(3, fr) == {"train": 1, "val": 1, "test": 1}
    with pytest.raises(ConfigError, match="dataset.split"):
        splitlib.split_fractions({"train": 0.5, "tset": 0.5})


def test_fingerprints_follow_content(tmp_path):
    (tmp_path / "a.bin").write_bytes(b"abc")
    f1 = splitlib.fingerprint_files([tmp_path / "a.bin"], root=tmp_path)
    (tmp_path / "a.bin").write_bytes(b"abd")
    assert splitlib.fingerprint_files([tmp_path / "a.bin"], root=tmp_path) != f1
    assert splitlib.class_frequencies([1, 3], ["a", "b"]) == {"a": 0.25, "b": 0.75}


def test_training_geometry_and_predict_mode():
    """The contract names what training did; auto maps whole-image resizing to resize and
    native-resolution training (tiles, crops, generated images) to tile, and says why."""
    resize = geometry.training_geometry({"resize": "resize", "tile": None}, (64, 48))
    assert resize == {
        "size": [64, 48],
        "image_interpolation": "bilinear_antialias",
        "mask_interpolation": "nearest",
        "kind": "resize",
    }
    assert predict_mode(resize) == (
        "resize",
        "because the model was trained on whole images resized to 64x48",
    )
    pad = geometry.training_geometry({"resize": "pad"}, (32, 32))
    assert predict_mode(pad)[0] == "resize" and "letterbox" in predict_mode(pad)[1]
    tile = geometry.training_geometry({"resize": "resize", "tile": 256}, (256, 256))
    assert tile["kind"] == "tile" and tile["tile"] == 256
    assert predict_mode(tile) == (
        "tile",
        "because the model was trained on native-resolution 256x256 tiles (dataset.tile=256)",
    )
    assert predict_mode(geometry.training_geometry({"resize": "crop"}, (8, 8)))[0] == "tile"
    native = geometry.training_geometry({"image_size": [64, 64]}, (64, 64))  # synthetic: no resize
    assert native["kind"] == "native" and predict_mode(native)[0] == "tile"
    mode, why = predict_mode(tile, "resize")
    assert mode == "resize" and why.startswith("as requested")
    mode, why = predict_mode(None)
    assert mode == "tile" and "records no training geometry" in why and "mode=resize" in why
    with pytest.raises(ConfigError, match=r"mode='grid': expected one of auto, resize, tile"):
        predict_mode(resize, "grid")


@pytest.mark.parametrize("kind", ["resize", "pad"])
def test_model_grid_is_the_training_resampling(kind):
    """Predict's image on the model grid is exactly what the loader's resize_pair feeds
    training, and the way back puts a prediction of the training mask over the original
    pixels: the letterbox padding (here the ignore value 255) is cut off, not stretched in."""
    import tensorflow as tf

    rng = np.random.default_rng(1)
    image = rng.random((45, 70, 3)).astype(np.float32)
    mask = np.zeros((45, 70, 1), np.int32)
    mask[10:30, 20:50] = 1
    geo = geometry.training_geometry({"resize": kind}, (32, 32))
    train_im, train_mask = geometry.resize_pair(
        tf.constant(image), tf.constant(mask), (32, 32), kind, 255
    )
    np.testing.assert_allclose(
        geometry.to_model_grid(image, geo, "resize"), train_im.numpy(), atol=1e-6
    )
    back = geometry.from_model_grid(
        train_mask.numpy()[..., 0], (45, 70), geo, "resize", labels=True
    )
    assert back.shape == (45, 70) and set(np.unique(back)) == {0, 1}
    inner = back[14:26, 26:44]  # well inside the box, away from resampled edges
    assert (inner == 1).all() and back[:5].max() == 0 and back[:, :12].max() == 0
    m = train_mask.numpy()[..., 0]
    probs = np.stack([m == 0, m == 1], -1).astype(np.float32)  # padded pixels sum to 0
    assert (kind == "pad") == bool((probs.sum(-1) == 0).any())
    soft = geometry.from_model_grid(probs, (45, 70), geo, "resize", labels=False)
    assert soft.shape == (45, 70, 2) and soft.dtype == np.float32
    np.testing.assert_allclose(soft.sum(-1), 1.0, atol=1e-5)  # no padding resampled in


@pytest.mark.parametrize("kind", ["resize", "pad"])
def test_model_grid_keeps_a_0_255_input_range(kind):
    """A model that rescales inside (input_range 255) gets the training pixels times 255 on the
    model grid, not an image clipped to 1 (training scales after resize_pair)."""
    import tensorflow as tf

    image = np.random.default_rng(2).random((45, 70, 3)).astype(np.float32)
    mask = np.zeros((45, 70, 1), np.int32)
    geo = geometry.training_geometry({"resize": kind}, (32, 32))
    train_im, _ = geometry.resize_pair(tf.constant(image), tf.constant(mask), (32, 32), kind, 0)
    grid = geometry.to_model_grid(image * np.float32(255), geo, "resize")
    assert grid.max() > 100  # not clipped to 1
    np.testing.assert_allclose(grid, train_im.numpy() * 255, atol=1e-3)


def test_tile_grid_rescales_like_resized_tiles():
    """Training cut 64-px tiles and resized them to 32x32: predict halves the image first."""
    geo = geometry.training_geometry({"resize": "resize", "tile": 64}, (32, 32))
    image = np.random.default_rng(2).random((100, 60, 1)).astype(np.float32)
    assert geometry.to_model_grid(image, geo, "tile").shape == (50, 30, 1)
    native = geometry.training_geometry({"resize": "resize", "tile": 32}, (32, 32))
    assert geometry.to_model_grid(image, native, "tile") is image
    labels = np.zeros((50, 30), np.uint8)
    assert geometry.from_model_grid(labels, (100, 60), geo, "tile", labels=True).shape == (100, 60)


def test_value_range_is_one_rule_for_files_and_arrays():
    """dtype range for integers; floats kept in [0, 1], /255 in [0, 255], else min-max."""
    assert decode.value_range(np.zeros(3, np.uint8)) == (0.0, 255.0)
    assert decode.value_range(np.zeros(3, np.uint16)) == (0.0, 65535.0)
    assert decode.value_range(np.array([0.0, 0.5, 1.0])) == (0.0, 1.0)
    assert decode.value_range(np.array([0.0, 200.0])) == (0.0, 255.0)
    assert decode.value_range(np.array([-2.0, 6.0])) == (-2.0, 8.0)
    x = np.array([[-2.0, 2.0], [6.0, np.nan]])
    np.testing.assert_allclose(decode.to_float(x), [[0.0, 0.5], [1.0, 0.0]])
    # An array loader scales every image by the whole array's range, not its own.
    np.testing.assert_allclose(decode.to_float(np.array([2.0]), scaling=(-2.0, 8.0)), [0.5])


def test_to_model_input_scales_arrays_and_tensors_alike():
    """One model-input rule for NumPy (predict, panels) and tf tensors (the pipeline): times
    input_range in the images' own dtype, the images themselves at 1."""
    import tensorflow as tf

    images = np.array([[[0.0], [0.5]], [[1.0], [0.2]]], np.float32)
    expected = np.array([[[0.0], [127.5]], [[255.0], [51.0]]], np.float32)
    out = decode.to_model_input(images, 255)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, expected, rtol=1e-6)
    assert decode.to_model_input(images, 1.0) is images
    half = decode.to_model_input(images.astype(np.float16), 255.0)
    assert half.dtype == np.float16
    tensor = decode.to_model_input(tf.constant(images), 255)
    assert tensor.dtype == tf.float32
    np.testing.assert_allclose(tensor.numpy(), expected, rtol=1e-6)
    np.testing.assert_array_equal(
        decode.to_model_input(tf.constant(images, tf.float64), 2.0).numpy(), images * 2.0
    )
