"""Geometric options: ``flip``, ``affine`` (one projective transform) and ``elastic``.

Image bilinear, mask nearest neighbour: masks stay int32 with their exact label set.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import tensorflow as tf

from segexp.augment._common import (
    _FILL_MODES,
    AugmentFn,
    _coin,
    _keep_shape,
    _number,
    _probability,
    _range,
    _split,
    _to_dict,
    _uniform,
)
from segexp.config import with_defaults
from segexp.errors import ConfigError

FLIP_DEFAULTS: dict[str, Any] = {"horizontal": True, "vertical": False, "p": 0.5}
AFFINE_DEFAULTS: dict[str, Any] = {
    "rotation_range": 0.0,  # degrees, uniform in [-r, r]
    "width_shift_range": 0.0,  # fraction of width (< 1) or pixels (>= 1)
    "height_shift_range": 0.0,
    "zoom_range": 0.0,  # z -> [1 - z, 1 + z], or [lo, hi]; < 1 zooms in (ImageDataGenerator)
    "keep_aspect": False,  # False: x and y zoom drawn independently, like ImageDataGenerator
    "shear_range": 0.0,  # degrees, uniform in [-s, s]
    "horizontal_flip": False,
    "vertical_flip": False,
    "fill_mode": "reflect",  # reflect | constant | nearest | wrap
    "fill_value": 0.0,  # image fill for fill_mode=constant
    "mask_fill_value": 0,  # mask fill for fill_mode=constant (e.g. the ignore value)
    "p": 1.0,
}
ELASTIC_DEFAULTS: dict[str, Any] = {
    "grid_size": 3,  # coarse grid of random displacement vectors (int or [rows, cols])
    "sigma": 10.0,  # displacement standard deviation in pixels
    "interpolation": "bicubic",  # bicubic | bilinear upsampling of the displacement field
    "p": 1.0,
}


# --------------------------------------------------------------------------------------- flip
def make_flip(cfg: Mapping | None = None) -> AugmentFn:
    """Random horizontal / vertical flips, each with probability ``p``."""
    prm = with_defaults(_to_dict(cfg), FLIP_DEFAULTS, "augmentation(flip)")
    p = _probability(prm["p"], "augmentation.p")
    horizontal, vertical = bool(prm["horizontal"]), bool(prm["vertical"])

    def flip(image: tf.Tensor, mask: tf.Tensor, seed: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        s_h, s_v = _split(seed, 2)
        for enabled, s, axis in ((horizontal, s_h, 1), (vertical, s_v, 0)):
            if enabled:
                do = _coin(s, p)
                image = tf.cond(do, lambda a=axis, x=image: tf.reverse(x, [a]), lambda x=image: x)
                mask = tf.cond(do, lambda a=axis, m=mask: tf.reverse(m, [a]), lambda m=mask: m)
        return image, mask

    return flip


# ------------------------------------------------------------------------------------- affine
def affine_matrix(
    height: tf.Tensor,
    width: tf.Tensor,
    *,
    rotation: tf.Tensor,
    shear: tf.Tensor,
    zoom_x: tf.Tensor,
    zoom_y: tf.Tensor,
    shift_x: tf.Tensor,
    shift_y: tf.Tensor,
    flip_x: tf.Tensor,
    flip_y: tf.Tensor,
) -> tf.Tensor:
    """Projective transform ``[1, 8]`` (output pixel -> input pixel) about the image centre.

    Angles in radians, shifts in pixels, ``flip_*`` = +1 or -1. Composition as in Keras'
    ``ImageDataGenerator``: rotation @ shear @ zoom (@ flip), then shift.
    """
    f32 = tf.float32
    cos_r, sin_r = tf.cos(rotation), tf.sin(rotation)
    rot = tf.stack([[cos_r, -sin_r], [sin_r, cos_r]])
    shr = tf.stack([[tf.ones((), f32), -tf.sin(shear)], [tf.zeros((), f32), tf.cos(shear)]])
    zoom = tf.stack([[zoom_x * flip_x, tf.zeros((), f32)], [tf.zeros((), f32), zoom_y * flip_y]])
    a = rot @ shr @ zoom
    cx = (tf.cast(width, f32) - 1.0) / 2.0
    cy = (tf.cast(height, f32) - 1.0) / 2.0
    a2 = cx + shift_x - (a[0, 0] * cx + a[0, 1] * cy)
    b2 = cy + shift_y - (a[1, 0] * cx + a[1, 1] * cy)
    zero = tf.zeros((), f32)
    return tf.reshape(tf.stack([a[0, 0], a[0, 1], a2, a[1, 0], a[1, 1], b2, zero, zero]), [1, 8])


def apply_transform(
    image: tf.Tensor,
    mask: tf.Tensor,
    transform: tf.Tensor,
    *,
    fill_mode: str = "reflect",
    fill_value: float = 0.0,
    mask_fill_value: int = 0,
) -> tuple[tf.Tensor, tf.Tensor]:
    """Apply one ``[1, 8]`` projective transform: image bilinear, mask nearest (int32 kept)."""
    size = tf.shape(image)[:2]
    mode = _FILL_MODES[fill_mode]
    img = tf.raw_ops.ImageProjectiveTransformV3(
        images=image[None],
        transforms=transform,
        output_shape=size,
        fill_value=tf.constant(fill_value, tf.float32),
        interpolation="BILINEAR",
        fill_mode=mode,
    )[0]
    msk = tf.raw_ops.ImageProjectiveTransformV3(
        images=tf.cast(mask, tf.int32)[None],
        transforms=transform,
        output_shape=size,
        fill_value=tf.constant(float(mask_fill_value), tf.float32),
        interpolation="NEAREST",
        fill_mode=mode,
    )[0]
    return _keep_shape(img, image), _keep_shape(msk, mask)


def make_affine(cfg: Mapping | None = None) -> AugmentFn:
    """Random rotation / shift / zoom / shear (/ flips) with ImageDataGenerator-style ranges."""
    where = "augmentation"
    prm = with_defaults(_to_dict(cfg), AFFINE_DEFAULTS, "augmentation(affine)")
    rot = math.radians(_number(prm["rotation_range"], f"{where}.rotation_range"))
    shear = math.radians(_number(prm["shear_range"], f"{where}.shear_range", high=80.0))
    wshift = _number(prm["width_shift_range"], f"{where}.width_shift_range")
    hshift = _number(prm["height_shift_range"], f"{where}.height_shift_range")
    zoom_lo, zoom_hi = _range(prm["zoom_range"], f"{where}.zoom_range", centre=1.0)
    keep_aspect = bool(prm["keep_aspect"])
    hflip, vflip = bool(prm["horizontal_flip"]), bool(prm["vertical_flip"])
    fill_mode = str(prm["fill_mode"]).lower()
    if fill_mode not in _FILL_MODES:
        raise ConfigError(
            f"{where}.fill_mode={prm['fill_mode']!r}: expected one of {sorted(_FILL_MODES)}"
        )
    fill_value = _number(prm["fill_value"], f"{where}.fill_value", low=-math.inf)
    mask_fill = int(_number(prm["mask_fill_value"], f"{where}.mask_fill_value", low=-math.inf))
    p = _probability(prm["p"], f"{where}.p")

    def _shift(seed: tf.Tensor, rng: float, size: tf.Tensor) -> tf.Tensor:
        if rng == 0:
            return tf.zeros((), tf.float32)
        pixels = rng * tf.cast(size, tf.float32) if rng < 1 else tf.constant(rng, tf.float32)
        return _uniform(seed, -1.0, 1.0) * pixels

    def _sign(seed: tf.Tensor, enabled: bool) -> tf.Tensor:
        if not enabled:
            return tf.ones((), tf.float32)
        return tf.where(_coin(seed, 0.5), -1.0, 1.0)

    def affine(image: tf.Tensor, mask: tf.Tensor, seed: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        s = _split(seed, 9)
        h, w = tf.shape(image)[0], tf.shape(image)[1]
        zoom_x = _uniform(s[2], zoom_lo, zoom_hi)
        zoom_y = zoom_x if keep_aspect else _uniform(s[3], zoom_lo, zoom_hi)
        transform = affine_matrix(
            h,
            w,
            rotation=_uniform(s[0], -rot, rot),
            shear=_uniform(s[1], -shear, shear),
            zoom_x=zoom_x,
            zoom_y=zoom_y,
            shift_x=_shift(s[4], wshift, w),
            shift_y=_shift(s[5], hshift, h),
            flip_x=_sign(s[6], hflip),
            flip_y=_sign(s[7], vflip),
        )
        if p < 1.0:
            identity = tf.constant([[1, 0, 0, 0, 1, 0, 0, 0]], tf.float32)
            transform = tf.where(_coin(s[8], p), transform, identity)
        return apply_transform(
            image,
            mask,
            transform,
            fill_mode=fill_mode,
            fill_value=fill_value,
            mask_fill_value=mask_fill,
        )

    return affine


# ------------------------------------------------------------------------------------ elastic
def _mirror(coord: tf.Tensor, size: tf.Tensor) -> tf.Tensor:
    """Mirror continuous coordinates into ``[0, size - 1]`` (… c b | a b c d | c b …)."""
    last = tf.cast(size - 1, tf.float32)
    period = tf.maximum(2.0 * last, 1.0)
    c = tf.math.floormod(coord, period)
    c = tf.where(c > last, period - c, c)
    return tf.clip_by_value(c, 0.0, last)


def displacement_field(
    seed: tf.Tensor,
    height: tf.Tensor,
    width: tf.Tensor,
    *,
    grid: tuple[int, int],
    sigma: float,
    interpolation: str = "bicubic",
) -> tf.Tensor:
    """Smooth ``[H, W, 2]`` (dy, dx) field: N(0, sigma) vectors on a coarse grid, upsampled.

    Grid points sit on the image corners/edges (align_corners), as in the U-Net paper.
    """
    coarse = tf.random.stateless_normal((1, grid[0], grid[1], 2), seed=seed, stddev=sigma)
    size = tf.stack([height, width])
    if interpolation == "bicubic":
        field = tf.raw_ops.ResizeBicubic(images=coarse, size=size, align_corners=True)
    else:
        field = tf.raw_ops.ResizeBilinear(images=coarse, size=size, align_corners=True)
    return field[0]


def remap(
    image: tf.Tensor, mask: tf.Tensor, rows: tf.Tensor, cols: tf.Tensor
) -> tuple[tf.Tensor, tf.Tensor]:
    """Sample image (bilinear) and mask (nearest) at source coordinates ``rows``/``cols`` [H, W].

    Coordinates outside the image are mirrored back inside.
    """
    h, w = tf.shape(image)[0], tf.shape(image)[1]
    channels = tf.shape(image)[2]
    rows, cols = _mirror(rows, h), _mirror(cols, w)
    flat_img = tf.reshape(image, [-1, channels])
    r0, c0 = tf.floor(rows), tf.floor(cols)
    wr, wc = (rows - r0)[..., None], (cols - c0)[..., None]
    r0i, c0i = tf.cast(r0, tf.int32), tf.cast(c0, tf.int32)
    r1i, c1i = tf.minimum(r0i + 1, h - 1), tf.minimum(c0i + 1, w - 1)

    def at(r: tf.Tensor, c: tf.Tensor) -> tf.Tensor:
        return tf.gather(flat_img, r * w + c)

    top = at(r0i, c0i) * (1.0 - wc) + at(r0i, c1i) * wc
    bottom = at(r1i, c0i) * (1.0 - wc) + at(r1i, c1i) * wc
    img = top * (1.0 - wr) + bottom * wr
    rn = tf.clip_by_value(tf.cast(tf.round(rows), tf.int32), 0, h - 1)
    cn = tf.clip_by_value(tf.cast(tf.round(cols), tf.int32), 0, w - 1)
    msk = tf.gather(tf.reshape(tf.cast(mask, tf.int32), [-1, tf.shape(mask)[2]]), rn * w + cn)
    return _keep_shape(img, image), _keep_shape(msk, mask)


def make_elastic(cfg: Mapping | None = None) -> AugmentFn:
    """U-Net paper elastic deformation: coarse-grid random displacements, smooth per pixel."""
    where = "augmentation"
    prm = with_defaults(_to_dict(cfg), ELASTIC_DEFAULTS, "augmentation(elastic)")
    grid_cfg = prm["grid_size"]
    grid = tuple(grid_cfg) if isinstance(grid_cfg, list | tuple) else (grid_cfg, grid_cfg)
    if len(grid) != 2 or not all(isinstance(g, int) and g >= 2 for g in grid):
        raise ConfigError(f"{where}.grid_size={grid_cfg!r}: expected an int >= 2 or [rows, cols]")
    sigma = _number(prm["sigma"], f"{where}.sigma")
    interpolation = str(prm["interpolation"]).lower()
    if interpolation not in ("bicubic", "bilinear"):
        raise ConfigError(
            f"{where}.interpolation={prm['interpolation']!r}: expected bicubic or bilinear"
        )
    p = _probability(prm["p"], f"{where}.p")

    def elastic(image: tf.Tensor, mask: tf.Tensor, seed: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        s_field, s_apply = _split(seed, 2)
        h, w = tf.shape(image)[0], tf.shape(image)[1]
        field = displacement_field(
            s_field, h, w, grid=grid, sigma=sigma, interpolation=interpolation
        )
        if p < 1.0:
            field = field * tf.cast(_coin(s_apply, p), tf.float32)
        rr, cc = tf.meshgrid(
            tf.range(h, dtype=tf.float32), tf.range(w, dtype=tf.float32), indexing="ij"
        )
        return remap(image, mask, rr + field[..., 0], cc + field[..., 1])

    return elastic
