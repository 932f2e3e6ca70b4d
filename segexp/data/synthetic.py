"""Built-in synthetic segmentation data, generated deterministically from the seed.

Each image has a textured background (smooth random field, uneven illumination, stripes) and
several objects of different shapes and sizes (ellipses, rotated rectangles, triangles) with
their own texture and blurred edges, plus pixel noise. Object and background intensities
overlap, so a per-pixel threshold cannot solve it: the network has to use texture and shape.

Modes:
- ``trimap``: 3 classes, background / object / boundary (a thin band across each object's
  edge), like the Oxford-IIIT Pet trimaps.
- ``binary``: 2 classes, background / object, like nuclei or membrane masks.
"""

from __future__ import annotations

import hashlib

import numpy as np
from omegaconf import DictConfig
from scipy import ndimage

from segexp.data.source import DataSource
from segexp.errors import ConfigError

CLASS_NAMES = {"trimap": ["background", "object", "boundary"], "binary": ["background", "object"]}


def _smooth_field(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma, mode="wrap")
    return field / (field.std() + 1e-8)


def _shape_mask(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """One random object: ellipse, rotated rectangle or triangle, of random size and place."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    size = min(h, w)
    cy, cx = rng.uniform(0.1, 0.9) * h, rng.uniform(0.1, 0.9) * w
    r1 = rng.uniform(0.06, 0.2) * size
    r2 = r1 * rng.uniform(0.5, 1.0)
    theta = rng.uniform(0, np.pi)
    dy, dx = yy - cy, xx - cx
    u = dx * np.cos(theta) + dy * np.sin(theta)
    v = -dx * np.sin(theta) + dy * np.cos(theta)
    kind = rng.integers(3)
    if kind == 0:
        return (u / r1) ** 2 + (v / r2) ** 2 <= 1.0
    if kind == 1:
        return (np.abs(u) <= r1) & (np.abs(v) <= r2 * 0.8)
    angles = theta + np.array([0.0, 2.1, 4.2]) + rng.uniform(-0.3, 0.3, 3)
    py, px = cy + r1 * 1.2 * np.sin(angles), cx + r1 * 1.2 * np.cos(angles)
    inside = np.ones((h, w), bool)
    sign = None
    for i in range(3):
        j = (i + 1) % 3
        cross = (px[j] - px[i]) * (yy - py[i]) - (py[j] - py[i]) * (xx - px[i])
        s = cross >= 0
        if sign is None:
            sign = np.sign(
                (px[j] - px[i]) * (py[(i + 2) % 3] - py[i])
                - (py[j] - py[i]) * (px[(i + 2) % 3] - px[i])
            )
        inside &= s if sign >= 0 else ~s
    return inside


def make_sample(
    rng: np.random.Generator,
    size: tuple[int, int],
    channels: int,
    mode: str,
    boundary_width: int,
    noise: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Generate one ``(image float32 [H,W,C] in [0,1], mask uint8 [H,W])`` pair."""
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32) / max(h, w)
    # Background: uneven illumination + smooth texture + faint stripes.
    tilt = rng.uniform(-0.25, 0.25, 2)
    illumination = tilt[0] * (yy - 0.5) + tilt[1] * (xx - 0.5)
    stripes_f = rng.uniform(4, 10)
    stripes_a = rng.uniform(0, np.pi)
    stripes = np.sin(2 * np.pi * stripes_f * (xx * np.cos(stripes_a) + yy * np.sin(stripes_a)))
    base = rng.uniform(0.35, 0.6)
    background = (
        base + illumination + 0.08 * _smooth_field(rng, (h, w), max(h, w) / 16) + 0.04 * stripes
    )
    # Objects: own brightness (overlapping the background's range) and a fine speckle texture.
    objects = np.zeros((h, w), bool)
    alpha_total = np.zeros((h, w), np.float32)
    image = background.copy()
    for _ in range(int(rng.integers(2, 6))):
        shape = _shape_mask(rng, h, w)
        if not shape.any():
            continue
        alpha = ndimage.gaussian_filter(shape.astype(np.float32), 1.0)
        brightness = base + rng.choice([-1.0, 1.0]) * rng.uniform(0.18, 0.35)
        texture = 0.08 * _smooth_field(rng, (h, w), 0.7)
        image = image * (1 - alpha) + (brightness + texture) * alpha
        objects |= shape
        alpha_total = np.maximum(alpha_total, alpha)
    image = image + noise * rng.standard_normal((h, w))
    if channels == 3:
        tint = rng.uniform(0.85, 1.15, 3)
        image = image[..., None] * tint[None, None, :]
    elif channels == 1:
        image = image[..., None]
    else:
        raise ConfigError(f"dataset.channels={channels}: expected 1 or 3")
    mask = objects.astype(np.uint8)
    if mode == "trimap":
        half = boundary_width / 2.0
        inside = ndimage.distance_transform_edt(objects)
        outside = ndimage.distance_transform_edt(~objects)
        band = (objects & (inside <= half)) | (~objects & (outside <= half))
        mask[band] = 2
    return np.clip(image, 0.0, 1.0).astype(np.float32), mask


def resolve_mode(cfg: DictConfig) -> str:
    """``auto`` follows the model's class count: 3 -> trimap, otherwise binary."""
    mode = str(cfg.mode)
    if mode == "auto":
        return "trimap" if cfg.get("num_classes") == 3 else "binary"
    return mode


def generate(cfg: DictConfig, image_size: tuple[int, int], channels: int, seed: int):
    """Generate all images and masks as NumPy arrays: ``(images [N,H,W,C], masks [N,H,W,1])``."""
    mode = resolve_mode(cfg)
    if mode not in CLASS_NAMES:
        raise ConfigError(f"dataset.mode={mode!r}: expected auto or one of {sorted(CLASS_NAMES)}")
    n = int(cfg.num_images)
    if n < 3:
        raise ConfigError(f"dataset.num_images={n}: expected at least 3 (train, val, test)")
    rng = np.random.default_rng([int(seed), 7919])
    pairs = [
        make_sample(rng, image_size, channels, mode, int(cfg.boundary_width), float(cfg.noise))
        for _ in range(n)
    ]
    images = np.stack([p[0] for p in pairs])
    masks = np.stack([p[1] for p in pairs])[..., None]
    return images, masks


def split_counts(n: int, split: DictConfig | dict) -> dict[str, int]:
    """Turn split fractions into counts that add up to ``n`` (each split gets at least one)."""
    from segexp.data.split import split_fractions

    fractions = split_fractions(split)
    n_val = max(1, round(n * fractions["val"]))
    n_test = max(1, round(n * fractions["test"]))
    n_train = n - n_val - n_test
    if n_train < 1:
        raise ConfigError(f"dataset.split={dict(split)} leaves no training images of {n}")
    return {"train": n_train, "val": n_val, "test": n_test}


def load(cfg: DictConfig, image_size: tuple[int, int], channels: int, seed: int) -> DataSource:
    """Generate the synthetic dataset and wrap it as a :class:`DataSource`."""
    import tensorflow as tf

    images, masks = generate(cfg, image_size, channels, seed)
    counts = split_counts(len(images), cfg.split)
    # Optional cap on the training-set size (for training-set-size sweeps); val/test unchanged.
    train_limit = cfg.get("train_size")
    if cfg.get("num_classes") not in (None, 2, 3):
        raise ConfigError(
            f"model.num_classes={cfg.num_classes}: the synthetic dataset has 2 or 3 classes"
        )
    bounds = {"train": (0, counts["train"])}
    bounds["val"] = (counts["train"], counts["train"] + counts["val"])
    bounds["test"] = (bounds["val"][1], len(images))
    if train_limit is not None:
        bounds["train"] = (0, min(int(train_limit), counts["train"]))
    splits, sizes = {}, {}
    for name, (a, b) in bounds.items():
        splits[name] = tf.data.Dataset.from_tensor_slices(
            (images[a:b], masks[a:b].astype(np.int32))
        )
        sizes[name] = b - a
    class_names = CLASS_NAMES[resolve_mode(cfg)]
    frequencies = np.bincount(masks[: bounds["train"][1]].ravel(), minlength=len(class_names))
    digest = hashlib.sha256(images.tobytes() + masks.tobytes()).hexdigest()[:16]
    return DataSource(
        name="synthetic",
        splits=splits,
        sizes=sizes,
        num_classes=len(class_names),
        class_names=list(class_names),
        channels=channels,
        ignore_value=cfg.get("ignore_value"),
        root=None,
        fingerprint=digest,
        extra={
            "class_frequencies": {
                c: float(f)
                for c, f in zip(class_names, frequencies / frequencies.sum(), strict=True)
            }
        },
    )
