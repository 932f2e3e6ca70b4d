"""Losses against NumPy / Keras references; ignore pixels; U-Net weight map; sample weights."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from segexp.config import load_preset
from segexp.errors import ConfigError
from segexp.losses import SegmentationLoss, build_loss, sample_weight_fn, unet_weight_map
from segexp.losses.weight_map import object_classes

CONF = Path(__file__).resolve().parents[1] / "conf" / "loss"
NAMES = ["auto", "bce", "cce", "dice", "bce_dice", "ce_dice", "focal", "unet_weighted"]
IGNORE = 255
EPS = 1e-7


def toy(head: str, seed: int = 0):
    """Labels [2, 8, 8, 1] with ignore pixels, random probabilities, perfect/wrong predictions."""
    rng = np.random.default_rng(seed)
    k = 2 if head == "sigmoid" else 3
    y = rng.integers(0, k, (2, 8, 8, 1)).astype(np.int32)
    y[0, :2] = IGNORE
    y[1, :, :1] = IGNORE
    safe = np.where(y[..., 0] == IGNORE, 0, y[..., 0])
    if head == "sigmoid":
        prob = rng.uniform(0.05, 0.95, (2, 8, 8, 1)).astype(np.float32)
        perfect = safe[..., None].astype(np.float32)
        wrong = 1.0 - perfect
    else:
        prob = rng.random((2, 8, 8, 3)).astype(np.float32) + 0.1
        prob /= prob.sum(-1, keepdims=True)
        perfect = np.eye(3, dtype=np.float32)[safe]
        wrong = np.eye(3, dtype=np.float32)[(safe + 1) % 3]
    return y, prob, perfect, wrong, k


def loss_value(loss, y, p, w=None) -> float:
    return float(loss(tf.constant(y), tf.constant(p), sample_weight=w))


@pytest.mark.parametrize("head", ["sigmoid", "softmax"])
@pytest.mark.parametrize("name", NAMES)
def test_perfect_wrong_and_ignore(name, head):
    y, prob, perfect, wrong, k = toy(head)
    loss = build_loss({"name": name}, head=head, num_classes=k, ignore_value=IGNORE)
    assert loss_value(loss, y, perfect) < 1e-3
    assert loss_value(loss, y, wrong) > (0.9 if name == "dice" else 5.0)
    base = loss_value(loss, y, prob)
    assert np.isfinite(base) and base > 0.01
    # changing predictions at ignored pixels does not change the loss
    changed = prob.copy()
    ignored = y[..., 0] == IGNORE
    changed[ignored] = wrong[ignored]
    assert loss_value(loss, y, changed) == pytest.approx(base, rel=1e-5)
    # every pixel ignored: 0, not NaN
    all_ignored = np.full_like(y, IGNORE)
    assert loss_value(loss, all_ignored, prob) == pytest.approx(0.0, abs=1e-6)


def np_ce(y, p, head):
    """Mean cross-entropy over valid pixels (NumPy reference)."""
    t = y[..., 0]
    valid = t != IGNORE
    p = np.clip(p, EPS, 1 - EPS)
    if head == "sigmoid":
        q = p[..., 0]
        ce = -(np.where(t == 1, np.log(q), np.log(1 - q)))
    else:
        ce = -np.log(np.take_along_axis(p, np.where(valid, t, 0)[..., None], -1)[..., 0])
    return ce, valid


@pytest.mark.parametrize("head", ["sigmoid", "softmax"])
def test_cross_entropy_matches_numpy_and_keras(head):
    y, prob, _, _, k = toy(head)
    ce, valid = np_ce(y, prob, head)
    name = "bce" if head == "sigmoid" else "cce"
    loss = build_loss({"name": name}, head=head, num_classes=k, ignore_value=IGNORE)
    assert loss_value(loss, y, prob) == pytest.approx(ce[valid].mean(), rel=1e-5)
    # without ignore pixels the value equals Keras' own loss
    y_clean = np.where(y == IGNORE, 0, y)
    ref = (
        keras.losses.BinaryCrossentropy()
        if head == "sigmoid"
        else keras.losses.SparseCategoricalCrossentropy()
    )
    expected = float(ref(y_clean.astype(np.float32), prob))
    assert loss_value(loss, y_clean, prob) == pytest.approx(expected, rel=1e-4)


def test_focal_and_dice_match_numpy():
    y, prob, _, _, k = toy("softmax", seed=3)
    t = y[..., 0]
    valid = t != IGNORE
    p = np.clip(prob, EPS, 1 - EPS)
    p_t = np.take_along_axis(p, np.where(valid, t, 0)[..., None], -1)[..., 0]
    focal = -((1 - p_t) ** 2) * np.log(p_t)
    loss = build_loss(
        {"name": "focal", "gamma": 2.0}, head="softmax", num_classes=k, ignore_value=IGNORE
    )
    assert loss_value(loss, y, prob) == pytest.approx(focal[valid].mean(), rel=1e-5)

    onehot = np.eye(3)[np.where(valid, t, 0)] * valid[..., None]
    pv = p * valid[..., None]
    inter = (pv * onehot).sum((1, 2))
    dice = (2 * inter + 1) / (pv.sum((1, 2)) + onehot.sum((1, 2)) + 1)
    expected = (1 - dice.mean(-1)).mean()
    loss = build_loss({"name": "dice"}, head="softmax", num_classes=k, ignore_value=IGNORE)
    assert loss_value(loss, y, prob) == pytest.approx(expected, rel=1e-5)
    combo = build_loss(
        {"name": "ce_dice", "ce_weight": 0.5, "dice_weight": 2.0},
        head="softmax",
        num_classes=k,
        ignore_value=IGNORE,
    )
    ce, _ = np_ce(y, prob, "softmax")
    assert loss_value(combo, y, prob) == pytest.approx(
        0.5 * ce[valid].mean() + 2 * expected, rel=1e-5
    )


def test_auto_resolves_by_head_and_bad_config_raises():
    assert (
        build_loss({"name": "auto"}, head="sigmoid", num_classes=2, ignore_value=None).kind == "bce"
    )
    assert build_loss({"name": "auto"}, head="auto", num_classes=4, ignore_value=None).kind == "cce"
    assert (
        build_loss({"name": "auto"}, head="linear", num_classes=2, ignore_value=None).kind == "mse"
    )
    with pytest.raises(ConfigError):
        build_loss({"name": "hinge"}, head="softmax", num_classes=3, ignore_value=None)
    with pytest.raises(ConfigError):
        build_loss({"name": "dice", "smoth": 1}, head="softmax", num_classes=3, ignore_value=None)
    with pytest.raises(ConfigError):
        build_loss(
            {"name": "cce", "class_weights": [1, 2]},
            head="softmax",
            num_classes=3,
            ignore_value=None,
        )


@pytest.mark.parametrize("path", sorted(CONF.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_yaml_option_builds_and_roundtrips(path):
    cfg = load_preset("loss", path.stem)
    loss = build_loss(cfg, head="softmax", num_classes=3, ignore_value=IGNORE)
    clone = SegmentationLoss.from_config(loss.get_config())
    y, prob, *_ = toy("softmax")
    assert loss_value(clone, y, prob) == pytest.approx(loss_value(loss, y, prob), rel=1e-6)


# ----------------------------------------------------------------------------- weight map
def two_objects() -> np.ndarray:
    m = np.zeros((24, 40), np.int32)
    m[6:18, 4:16] = 1  # object A
    m[6:18, 20:32] = 1  # object B, gap of 4 columns (16..19)
    return m


def test_weight_map_peaks_between_two_objects():
    m = two_objects()
    w = unet_weight_map(m, num_classes=2, w0=10.0, sigma=5.0)
    gap = w[6:18, 16:20]
    far = w[0:2, 36:40]
    assert w.max() == pytest.approx(gap.max())
    assert gap.min() > 5.0 > far.max()
    # explicit value at the gap centre: d1 = 2, d2 = 3 (edt to the nearest object pixels)
    bg = unet_weight_map(m, num_classes=2, w0=0.0)[0, 0]
    assert w[12, 17] == pytest.approx(bg + 10 * np.exp(-((2 + 3) ** 2) / 50), rel=1e-5)
    # balanced class weights have mean 1 over the mask
    assert unet_weight_map(m, num_classes=2, w0=0.0).mean() == pytest.approx(1.0, rel=1e-6)


def test_weight_map_single_object_and_ignore():
    m = two_objects()
    m[:, 18:] = 0  # only object A left
    w = unet_weight_map(m, num_classes=2, w0=10.0, sigma=5.0, class_weights="none")
    np.testing.assert_allclose(w, 1.0)  # no border term with fewer than two objects
    m2 = two_objects()
    m2[0:3] = IGNORE
    w2 = unet_weight_map(m2, num_classes=2, ignore_value=IGNORE)
    assert (w2[0:3] == 0).all() and (w2[3:] > 0).all()


def test_sample_weight_fn_in_tf_data():
    assert sample_weight_fn({"name": "cce"}, num_classes=2, ignore_value=None) is None
    fn = sample_weight_fn({"name": "unet_weighted"}, num_classes=2, ignore_value=None)
    m = two_objects()[..., None]
    ds = tf.data.Dataset.from_tensors(m).repeat(2).map(lambda x: (x, fn(x)), num_parallel_calls=2)
    assert ds.element_spec[1].shape == (24, 40)
    for _, w in ds:
        np.testing.assert_allclose(w.numpy(), unet_weight_map(m, num_classes=2), rtol=1e-6)


@pytest.mark.parametrize("jit", [False, True])
def test_keras_applies_per_pixel_sample_weight(jit):
    """model.evaluate on (x, y, w) equals sum(w * ce) / #valid pixels (NumPy reference)."""
    rng = np.random.default_rng(4)
    logits = rng.normal(size=(4, 8, 8, 3)).astype(np.float32)
    y = rng.integers(0, 3, (4, 8, 8, 1)).astype(np.int32)
    y[0, :3] = IGNORE
    w = rng.uniform(0.5, 5.0, (4, 8, 8)).astype(np.float32)
    w[y[..., 0] == IGNORE] = 0.0
    inputs = keras.Input((8, 8, 3))
    model = keras.Model(inputs, keras.layers.Softmax()(inputs))
    loss = build_loss({"name": "unet_weighted"}, head="softmax", num_classes=3, ignore_value=IGNORE)
    model.compile(loss=loss, jit_compile=jit)
    ds = tf.data.Dataset.from_tensor_slices((logits, y, w)).batch(4)
    value = model.evaluate(ds, verbose=0)
    prob = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    ce, valid = np_ce(y, prob, "softmax")
    expected = (w * ce)[valid].sum() / valid.sum()
    assert value == pytest.approx(expected, rel=1e-5)
    assert float(loss.call(tf.constant(y), tf.constant(prob)).shape.rank) == 3


# ------------------------------------------------------------- weight map: the object class
def two_cells_and_a_membrane() -> np.ndarray:
    """ISBI labelling (cell 0, membrane 1): a one-pixel membrane with a step between two cells,
    and a membrane frame around the image."""
    m = np.zeros((12, 16), np.int32)
    m[0, :] = m[-1, :] = m[:, 0] = m[:, -1] = 1
    m[1:6, 7] = 1
    m[6:11, 9] = 1
    m[6, 7:10] = 1
    return m


def reference_border(objects: np.ndarray, w0: float, sigma: float) -> np.ndarray:
    """w0 exp(-(d1 + d2)^2 / 2 sigma^2) from scipy distance transforms of each object, the two
    smallest found by sorting (independent of the running-minimum update in the module)."""
    from scipy import ndimage

    labels, n = ndimage.label(objects)
    dist = np.stack([ndimage.distance_transform_edt(labels != i) for i in range(1, n + 1)])
    dist = np.sort(dist, axis=0)
    return w0 * np.exp(-((dist[0] + dist[1]) ** 2) / (2 * sigma**2))


def test_weight_map_separates_cells_when_the_object_class_is_the_cell():
    m = two_cells_and_a_membrane()
    membrane = m == 1
    w0, sigma = 10.0, 5.0
    cells = unet_weight_map(m, num_classes=2, class_weights="none", object_classes=[0])
    border = reference_border(~membrane, w0, sigma)
    np.testing.assert_allclose(cells[membrane], 1.0 + border[membrane], rtol=1e-5)
    np.testing.assert_allclose(cells[~membrane], 1.0)  # border term on the membrane only
    # on the straight part of the dividing membrane both cells are one pixel away
    assert cells[3, 7] == pytest.approx(1.0 + w0 * np.exp(-((1 + 1) ** 2) / (2 * sigma**2)))
    assert cells[membrane].max() > 9.0
    # "label != 0" makes the connected membrane mesh the only object: no border term at all
    mesh = unet_weight_map(m, num_classes=2, class_weights="none")
    np.testing.assert_allclose(mesh, 1.0)


def test_object_class_config_names_and_errors():
    fn = sample_weight_fn(
        {"name": "unet_weighted", "object_class": "cell", "class_weights": "none"},
        num_classes=2,
        ignore_value=None,
        class_names=["cell", "membrane"],
    )
    m = two_cells_and_a_membrane()
    w = fn(tf.constant(m[..., None])).numpy()
    want = unet_weight_map(m, num_classes=2, class_weights="none", object_classes=[0])
    np.testing.assert_allclose(w, want, rtol=1e-6)
    assert object_classes("auto", 2) is None
    assert object_classes([2, "b"], 3, ["a", "b", "c"]) == [2, 1]
    with pytest.raises(ConfigError, match=r"loss.object_class='cel': .*\['cell', 'membrane'\]"):
        sample_weight_fn(
            {"name": "unet_weighted", "object_class": "cel"},
            num_classes=2,
            ignore_value=None,
            class_names=["cell", "membrane"],
        )


def test_isbi_preset_names_the_cell_class(compose):
    cfg = compose(["loss=unet_weighted", "dataset=isbi2012", "dataset.root=/nowhere"])
    assert cfg.loss.object_class == "cell"
    assert compose(["loss=unet_weighted"]).loss.object_class == "auto"


def test_weight_maps_are_computed_once_and_follow_augmentation():
    """Three epochs of a flipped training stream compute each sample's map exactly once, and the
    map that arrives with each (flipped) mask is the map of that mask."""
    from segexp.augment import build_augment
    from segexp.data.pipeline import make_dataset

    base = two_cells_and_a_membrane()
    masks = np.stack([base, base[::-1], base[:, ::-1]])[..., None]
    images = masks.astype(np.float32)
    calls = []

    def np_weights(mask):
        calls.append(1)
        return unet_weight_map(mask, num_classes=2, object_classes=[0])

    def weight_fn(mask):
        w = tf.numpy_function(np_weights, [mask], tf.float32, stateful=False)
        return tf.reshape(w, tf.shape(mask)[:2])

    ds = make_dataset(
        tf.data.Dataset.from_tensor_slices((images, masks)),
        batch_size=3,
        training=True,
        seed=1,
        augment=build_augment({"name": "flip", "horizontal": True, "vertical": True, "p": 0.5}),
        sample_weight_fn=weight_fn,
        epochs=3,
    )
    batches = list(ds.as_numpy_iterator())
    assert len(batches) == 3 and len(calls) == 3  # 3 samples x 3 epochs, 3 computations
    flipped = 0
    for _, mask, weights in batches:
        assert mask.shape == (3, 12, 16, 1) and mask.dtype == np.int32
        for m, w in zip(mask, weights, strict=True):
            want = unet_weight_map(m, num_classes=2, object_classes=[0])
            np.testing.assert_allclose(w, want, rtol=1e-6)
            flipped += not any(np.array_equal(m, s) for s in masks)
    assert flipped > 0  # augmentation did move masks (and their maps)
