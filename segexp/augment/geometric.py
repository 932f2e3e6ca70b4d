"""Geometric options: ``flip``, ``affine`` (one projective transform) and ``elastic``, on batches.

Affine and elastic are :class:`~segexp.augment.warp.Warp` s (coordinate maps, resampled once
together, see :mod:`segexp.augment.warp`); flips reverse the batch's axes per sample. Image
bilinear, mask nearest neighbour: masks stay int32 with their exact label set.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict

import numpy as np
import tensorflow as tf

from segexp.augment.params import FILL_MODES, BatchFn, to_number, to_probability, to_range
from segexp.augment.sampling import coin, normal, split_keys, uniform
from segexp.augment.warp import Warp, apply_warps, fold
from segexp.config import typed
from segexp.config.schema.augment import AffineConf, ElasticConf, FlipConf
from segexp.errors import ConfigError


def _where(do: tf.Tensor, a: tf.Tensor, b: tf.Tensor) -> tf.Tensor:
    """Per-sample choice between two batches (``do`` is ``[B]``)."""
    return tf.where(tf.reshape(do, [-1, 1, 1, 1]), a, b)


# --------------------------------------------------------------------------------------- flip
def make_flip(cfg: Mapping | None = None) -> BatchFn:
    """Random horizontal / vertical flips, each with probability ``p``."""
    prm = asdict(typed(cfg, FlipConf, "augmentation(flip)"))
    p = to_probability(prm["p"], "augmentation.p")
    horizontal, vertical = bool(prm["horizontal"]), bool(prm["vertical"])

    def flip(images: tf.Tensor, masks: tf.Tensor, keys: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        k_h, k_v = split_keys(keys, 2)
        for enabled, k, axis in ((horizontal, k_h, 2), (vertical, k_v, 1)):
            if enabled:
                do = coin(k, p)
                images = _where(do, tf.reverse(images, [axis]), images)
                masks = _where(do, tf.reverse(masks, [axis]), masks)
        return images, masks

    return flip


# ------------------------------------------------------------------------------------- affine
def affine_matrix(
    height: tf.Tensor | int,
    width: tf.Tensor | int,
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
    """Projective transforms ``[B, 8]`` (output pixel -> input pixel) about the image centre.

    Parameters are ``[B]`` tensors or scalars (scalars give ``[1, 8]``). Angles in radians,
    shifts in pixels, ``flip_*`` = +1 or -1. Composition as in Keras' ``ImageDataGenerator``:
    rotation @ shear @ zoom (@ flip), then shift.
    """
    f32 = tf.float32
    params = [rotation, shear, zoom_x, zoom_y, shift_x, shift_y, flip_x, flip_y]
    rotation, shear, zoom_x, zoom_y, shift_x, shift_y, flip_x, flip_y = (
        tf.reshape(tf.cast(v, f32), [-1]) for v in params
    )
    n = tf.reduce_max(tf.stack([tf.size(v) for v in params]))
    cos_r, sin_r = tf.cos(rotation), tf.sin(rotation)
    sin_s, cos_s = tf.sin(shear), tf.cos(shear)
    zx, zy = zoom_x * flip_x, zoom_y * flip_y
    # rot @ shear = [[c, -c sin_s - s cos_s], [s, c cos_s - s sin_s]], then @ diag(zx, zy)
    a00, a01 = cos_r * zx, (-cos_r * sin_s - sin_r * cos_s) * zy
    a10, a11 = sin_r * zx, (cos_r * cos_s - sin_r * sin_s) * zy
    cx = (tf.cast(width, f32) - 1.0) / 2.0
    cy = (tf.cast(height, f32) - 1.0) / 2.0
    a2 = cx + shift_x - (a00 * cx + a01 * cy)
    b2 = cy + shift_y - (a10 * cx + a11 * cy)
    zero = tf.zeros([n], f32)
    cols = [a00, a01, a2, a10, a11, b2, zero, zero]
    return tf.stack([tf.broadcast_to(c, [n]) for c in cols], axis=1)


def affine_source(transform: tf.Tensor, mode: str) -> Warp.source:
    """The source-coordinate map of ``[B, 8]`` transforms (output -> input), folded by ``mode``."""

    def source(keys, rows, cols, valid, h, w):
        t = [tf.reshape(transform[:, i], [-1, 1, 1]) for i in range(6)]
        src_cols = t[0] * cols + t[1] * rows + t[2]
        src_rows = t[3] * cols + t[4] * rows + t[5]
        src_rows, inside_r = fold(src_rows, h, mode)
        src_cols, inside_c = fold(src_cols, w, mode)
        if inside_r is not None:
            valid = valid & inside_r & inside_c
        return src_rows, src_cols, valid

    return source


def apply_transform(
    image: tf.Tensor,
    mask: tf.Tensor,
    transform: tf.Tensor,
    *,
    fill_mode: str = "reflect",
    fill_value: float = 0.0,
    mask_fill_value: int = 0,
) -> tuple[tf.Tensor, tf.Tensor]:
    """Apply ``[B, 8]`` projective transforms to a batch (or ``[1, 8]`` to one ``[H, W, C]``
    sample): image bilinear, mask nearest (int32 kept)."""
    single = image.shape.rank == 3
    images, masks = (image[None], mask[None]) if single else (image, mask)
    warp = Warp(
        affine_source(tf.cast(transform, tf.float32), fill_mode),
        constant=fill_mode == "constant",
        fill_value=fill_value,
        mask_fill_value=mask_fill_value,
    )
    img, msk = apply_warps([warp], [None], images, masks)
    return (img[0], msk[0]) if single else (img, msk)


def make_affine(cfg: Mapping | None = None) -> Warp:
    """Random rotation / shift / zoom / shear (/ flips) with ImageDataGenerator-style ranges."""
    where = "augmentation"
    prm = asdict(typed(cfg, AffineConf, "augmentation(affine)"))
    rot = math.radians(to_number(prm["rotation_range"], f"{where}.rotation_range"))
    shear = math.radians(to_number(prm["shear_range"], f"{where}.shear_range", high=80.0))
    wshift = to_number(prm["width_shift_range"], f"{where}.width_shift_range")
    hshift = to_number(prm["height_shift_range"], f"{where}.height_shift_range")
    zoom_lo, zoom_hi = to_range(prm["zoom_range"], f"{where}.zoom_range", centre=1.0)
    keep_aspect = bool(prm["keep_aspect"])
    hflip, vflip = bool(prm["horizontal_flip"]), bool(prm["vertical_flip"])
    fill_mode = str(prm["fill_mode"]).lower()
    if fill_mode not in FILL_MODES:
        raise ConfigError(
            f"{where}.fill_mode={prm['fill_mode']!r}: expected one of {sorted(FILL_MODES)}"
        )
    fill_value = to_number(prm["fill_value"], f"{where}.fill_value", low=-math.inf)
    mask_fill = int(to_number(prm["mask_fill_value"], f"{where}.mask_fill_value", low=-math.inf))
    p = to_probability(prm["p"], f"{where}.p")

    def _shift(keys: tf.Tensor, rng: float, size: tf.Tensor) -> tf.Tensor:
        if rng == 0:
            return tf.zeros((), tf.float32)
        pixels = rng * tf.cast(size, tf.float32) if rng < 1 else tf.constant(rng, tf.float32)
        return uniform(keys, -1.0, 1.0) * pixels

    def _sign(keys: tf.Tensor, enabled: bool) -> tf.Tensor:
        if not enabled:
            return tf.ones((), tf.float32)
        return tf.where(coin(keys, 0.5), -1.0, 1.0)

    def transforms(keys: tf.Tensor, h: tf.Tensor, w: tf.Tensor) -> tf.Tensor:
        """The ``[B, 8]`` output -> input transforms of a batch (identity where p says no)."""
        k = split_keys(keys, 9)
        zoom_x = uniform(k[2], zoom_lo, zoom_hi)
        zoom_y = zoom_x if keep_aspect else uniform(k[3], zoom_lo, zoom_hi)
        transform = affine_matrix(
            h,
            w,
            rotation=uniform(k[0], -rot, rot),
            shear=uniform(k[1], -shear, shear),
            zoom_x=zoom_x,
            zoom_y=zoom_y,
            shift_x=_shift(k[4], wshift, w),
            shift_y=_shift(k[5], hshift, h),
            flip_x=_sign(k[6], hflip),
            flip_y=_sign(k[7], vflip),
        )
        if p < 1.0:
            identity = tf.constant([[1, 0, 0, 0, 1, 0, 0, 0]], tf.float32)
            transform = tf.where(coin(k[8], p)[:, None], transform, identity)
        return transform

    def source(keys, rows, cols, valid, h, w):
        return affine_source(transforms(keys, h, w), fill_mode)(keys, rows, cols, valid, h, w)

    return Warp(
        source,
        constant=fill_mode == "constant",
        fill_value=fill_value,
        mask_fill_value=mask_fill,
    )


# ------------------------------------------------------------------------------------ elastic
def coarse_grid(keys: tf.Tensor, grid: tuple[int, int], sigma: float) -> tf.Tensor:
    """The random ``[B, rows, cols, 2]`` (dy, dx) displacement vectors, N(0, sigma) pixels."""
    return tf.reshape(normal(keys, grid[0] * grid[1] * 2, sigma), [-1, grid[0], grid[1], 2])


def upsample_matrix(n_out: int, n_in: int, interpolation: str = "bicubic") -> np.ndarray:
    """``[n_out, n_in]`` weights resampling ``n_in`` grid points to ``n_out`` pixels with the
    end points on the first and last pixel (align_corners): linear, or Keys' cubic convolution
    (a = -0.5, edge values repeated). Each row sums to 1; at a grid node it picks that node."""
    pos = np.arange(n_out) * (n_in - 1) / max(n_out - 1, 1)
    weights = np.zeros((n_out, n_in))
    base = np.floor(pos).astype(int)
    frac = pos - base
    if interpolation == "bilinear":
        taps = {0: 1 - frac, 1: frac}
    else:
        a = -0.5

        def keys(t: np.ndarray) -> np.ndarray:
            t = np.abs(t)
            near = ((a + 2) * t - (a + 3)) * t * t + 1
            far = ((a * t - 5 * a) * t + 8 * a) * t - 4 * a
            return np.where(t <= 1, near, np.where(t < 2, far, 0.0))

        taps = {k: keys(frac - k) for k in (-1, 0, 1, 2)}
    for k, w in taps.items():
        np.add.at(weights, (np.arange(n_out), np.clip(base + k, 0, n_in - 1)), w)
    return weights.astype(np.float32)


def displacement_field(
    keys: tf.Tensor,
    height: int,
    width: int,
    *,
    grid: tuple[int, int],
    sigma: float,
    interpolation: str = "bicubic",
) -> tf.Tensor:
    """Smooth ``[B, H, W, 2]`` (dy, dx) fields: :func:`coarse_grid` upsampled separably (two
    small matrix products; grid points on the image corners/edges, as in the U-Net paper)."""
    if not isinstance(height, int) or not isinstance(width, int):
        raise ConfigError(
            "augmentation(elastic): needs images of one known size in the pipeline, got "
            f"{height} x {width}; set dataset.image_size"
        )
    coarse = coarse_grid(keys, grid, sigma)
    rows = tf.constant(upsample_matrix(int(height), grid[0], interpolation))
    cols = tf.constant(upsample_matrix(int(width), grid[1], interpolation))
    return tf.einsum("hi,bijc,wj->bhwc", rows, coarse, cols)


def make_elastic(cfg: Mapping | None = None) -> Warp:
    """U-Net paper elastic deformation: coarse-grid random displacements, smooth per pixel."""
    where = "augmentation"
    prm = asdict(typed(cfg, ElasticConf, "augmentation(elastic)"))
    grid_cfg = prm["grid_size"]
    grid = tuple(grid_cfg) if isinstance(grid_cfg, list | tuple) else (grid_cfg, grid_cfg)
    if len(grid) != 2 or not all(isinstance(g, int) and g >= 2 for g in grid):
        raise ConfigError(f"{where}.grid_size={grid_cfg!r}: expected an int >= 2 or [rows, cols]")
    sigma = to_number(prm["sigma"], f"{where}.sigma")
    interpolation = str(prm["interpolation"]).lower()
    if interpolation not in ("bicubic", "bilinear"):
        raise ConfigError(
            f"{where}.interpolation={prm['interpolation']!r}: expected bicubic or bilinear"
        )
    p = to_probability(prm["p"], f"{where}.p")

    def source(keys, rows, cols, valid, h, w):
        k_field, k_apply = split_keys(keys, 2)
        field = displacement_field(
            k_field, h, w, grid=grid, sigma=sigma, interpolation=interpolation
        )
        if p < 1.0:
            field = field * tf.reshape(tf.cast(coin(k_apply, p), tf.float32), [-1, 1, 1, 1])
        # the field is defined on the output pixel grid, which is what rows/cols are here
        src_rows, _ = fold(rows + field[..., 0], h, "mirror")
        src_cols, _ = fold(cols + field[..., 1], w, "mirror")
        return src_rows, src_cols, valid

    return Warp(source, grid_input=True)
