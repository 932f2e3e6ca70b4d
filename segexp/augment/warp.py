"""One resampling pass for a chain of geometric augmentations.

One resampling pass for a chain of geometric options: source coordinates, fill modes and the
bilinear (image) / nearest (mask) gather of a batch.

A geometric option is a :class:`Warp`: it maps each output pixel's coordinates to the
coordinates it reads in its input. Consecutive warps compose into one coordinate map (elastic
after affine reads the affine's input at ``affine(elastic(p))``), so the image and the mask are
resampled once, whatever the chain. Sampling is one set of four gathers on the image and the
mask packed together (the mask's int32 bits travel as float32 and come back unchanged), so the
mask keeps its exact labels and moves with the image.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import tensorflow as tf

# (keys [B], rows [B, H, W], cols [B, H, W], valid [B, H, W], height, width) -> rows, cols, valid
SourceFn = Callable[
    [tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor],
    tuple[tf.Tensor, tf.Tensor, tf.Tensor],
]


@dataclass(frozen=True)
class Warp:
    """A geometric option: ``source`` maps output coordinates to input coordinates; pixels it
    marks invalid (``fill_mode=constant`` outside the image) get the fill values."""

    source: SourceFn
    constant: bool = False  # fill_mode=constant: pixels read from outside get the fill values
    # its map is defined on the output pixel grid (a displacement field), so it must be the
    # last warp of a group (the first to see the output coordinates)
    grid_input: bool = False
    fill_value: float = 0.0
    mask_fill_value: int = 0


def fold(coord: tf.Tensor, size: tf.Tensor, mode: str) -> tuple[tf.Tensor, tf.Tensor | None]:
    """Bring coordinates outside ``[0, size - 1]`` back in by ``mode``; for ``constant`` the
    coordinates stay and the second value says which pixels lie inside (nearest pixel in range).

    reflect: d c b a | a b c d | d c b a (about the outer pixel edges); mirror: c b | a b c d |
    c b (about the outer pixel centres); wrap: a b c d | a b c d; nearest: a a | a b c d | d d.
    """
    n = tf.cast(size, tf.float32)
    if mode == "reflect":  # about -0.5 and n - 0.5
        c = tf.abs(tf.math.floormod(coord + 0.5, 2.0 * n)) - 0.5
        return (n - 0.5) - tf.abs((n - 0.5) - c), None
    if mode == "mirror":  # about 0 and n - 1
        last = n - 1.0
        c = tf.math.floormod(coord, tf.maximum(2.0 * last, 1.0))
        return last - tf.abs(last - c), None
    if mode == "wrap":
        return tf.math.floormod(coord + 0.5, n) - 0.5, None
    if mode == "nearest":
        return coord, None
    if mode == "constant":
        return coord, (coord >= -0.5) & (coord < n - 0.5)
    raise ValueError(f"fill mode {mode!r}")


def output_grid(batch: tf.Tensor, height: tf.Tensor, width: tf.Tensor):
    """Output pixel coordinates ``rows, cols`` ``[B, H, W]`` and an all-True validity map."""
    rows = tf.range(height, dtype=tf.float32)[None, :, None]
    cols = tf.range(width, dtype=tf.float32)[None, None, :]
    shape = tf.stack([batch, height, width])
    return tf.broadcast_to(rows, shape), tf.broadcast_to(cols, shape), tf.ones(shape, tf.bool)


def resample(
    images: tf.Tensor,
    masks: tf.Tensor,
    rows: tf.Tensor,
    cols: tf.Tensor,
    valid: tf.Tensor,
    *,
    fill_value: float = 0.0,
    mask_fill_value: int = 0,
) -> tuple[tf.Tensor, tf.Tensor]:
    """Images bilinear and masks nearest at source ``rows``/``cols`` ``[B, H, W]`` (clamped to
    the image), fill values where ``valid`` is False; masks come back int32, labels exact."""
    shape = tf.shape(images)
    b, h, w, c = shape[0], shape[1], shape[2], shape[3]
    cm = tf.shape(masks)[3]
    rows = tf.clip_by_value(rows, 0.0, tf.cast(h - 1, tf.float32))
    cols = tf.clip_by_value(cols, 0.0, tf.cast(w - 1, tf.float32))
    r0, c0 = tf.floor(rows), tf.floor(cols)
    wr, wc = (rows - r0)[..., None], (cols - c0)[..., None]
    r0i, c0i = tf.cast(r0, tf.int32), tf.cast(c0, tf.int32)
    r1i, c1i = tf.minimum(r0i + 1, h - 1), tf.minimum(c0i + 1, w - 1)
    mask_bits = tf.bitcast(tf.cast(masks, tf.int32), tf.float32)
    packed = tf.reshape(tf.concat([images, mask_bits], axis=-1), [-1, c + cm])
    base = (tf.range(b) * h * w)[:, None, None]
    corners = [tf.gather(packed, base + r * w + q) for r in (r0i, r1i) for q in (c0i, c1i)]
    tl, tr, bl, br = (x[..., :c] for x in corners)
    img = (tl * (1.0 - wc) + tr * wc) * (1.0 - wr) + (bl * (1.0 - wc) + br * wc) * wr
    # nearest: the corner the coordinate rounds to
    down, right = wr >= 0.5, wc >= 0.5
    m = [tf.bitcast(x[..., c:], tf.int32) for x in corners]
    msk = tf.where(down, tf.where(right, m[3], m[2]), tf.where(right, m[1], m[0]))
    inside = valid[..., None]
    img = tf.where(inside, img, tf.constant(fill_value, tf.float32))
    msk = tf.where(inside, msk, tf.constant(int(mask_fill_value), tf.int32))
    return tf.ensure_shape(img, images.shape), tf.ensure_shape(msk, masks.shape)


def group_warps(fns: list) -> list[list]:
    """Split a chain into runs: consecutive warps that compose into one resampling pass (a
    ``grid_input`` warp closes its run), and every other option on its own."""
    groups: list[list] = []
    for fn in fns:
        joins = groups and isinstance(fn, Warp) and isinstance(groups[-1][-1], Warp)
        if joins and not groups[-1][-1].grid_input:
            groups[-1].append(fn)
        else:
            groups.append([fn])
    return groups


def apply_warps(
    warps: list[Warp], keys: list[tf.Tensor], images: tf.Tensor, masks: tf.Tensor
) -> tuple[tf.Tensor, tf.Tensor]:
    """Apply consecutive warps (in order, each with its key) in one resampling pass."""
    shape = tf.shape(images)
    h = images.shape[1] if images.shape[1] is not None else shape[1]
    w = images.shape[2] if images.shape[2] is not None else shape[2]
    rows, cols, valid = output_grid(shape[0], h, w)
    for warp, k in reversed(list(zip(warps, keys, strict=True))):
        rows, cols, valid = warp.source(k, rows, cols, valid, h, w)
    fill = next((wp for wp in warps if wp.constant), Warp(warps[0].source))
    return resample(
        images,
        masks,
        rows,
        cols,
        valid,
        fill_value=fill.fill_value,
        mask_fill_value=fill.mask_fill_value,
    )
