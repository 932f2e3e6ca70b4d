"""Joint image/mask augmentation for the tf.data pipeline (the ``augmentation`` config group).

Every option is pure TensorFlow graph code (no ``py_function``) driven by a stateless ``seed``
(int64 ``[2]``), so a pipeline seed reproduces the exact stream. Geometric ops resample the
image bilinearly and the mask by nearest neighbour only: the mask stays int32 and keeps exactly
its label set (including the ignore value).

Keras 3 preprocessing layers are not used: they draw randomness from a stateful
``SeedGenerator`` instead of a per-sample stateless seed, ``RandomFlip`` returns masks as float32,
``RandomElasticTransform`` fails on int32 masks and interpolates float masks like images, and
chaining rotation/zoom/shift/shear layers resamples four times. Here the affine part is a single
projective transform (``ImageProjectiveTransformV3``) per sample.

Options (``name``): ``none``, ``flip``, ``affine``, ``elastic``, ``color``, ``unet_paper``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import tensorflow as tf

from segexp.augment._common import AugmentFn, _split, _to_dict
from segexp.augment.color import COLOR_DEFAULTS, make_color
from segexp.augment.geometric import (
    AFFINE_DEFAULTS,
    ELASTIC_DEFAULTS,
    FLIP_DEFAULTS,
    affine_matrix,
    apply_transform,
    displacement_field,
    make_affine,
    make_elastic,
    make_flip,
    remap,
)
from segexp.errors import ConfigError

__all__ = [
    "AFFINE_DEFAULTS",
    "COLOR_DEFAULTS",
    "ELASTIC_DEFAULTS",
    "FLIP_DEFAULTS",
    "UNET_PAPER_BLOCKS",
    "AugmentFn",
    "affine_matrix",
    "apply_transform",
    "build_augment",
    "compose",
    "displacement_field",
    "make_affine",
    "make_color",
    "make_elastic",
    "make_flip",
    "remap",
]

UNET_PAPER_BLOCKS: tuple[str, ...] = ("flip", "affine", "elastic", "color")

_BUILDERS: dict[str, Callable[[Mapping | None], AugmentFn]] = {
    "flip": make_flip,
    "affine": make_affine,
    "elastic": make_elastic,
    "color": make_color,
}


def compose(fns: list[AugmentFn]) -> AugmentFn:
    """Chain augmentations; each gets its own sub-seed split from the sample seed."""

    def augment(image: tf.Tensor, mask: tf.Tensor, seed: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        if not fns:
            return image, mask
        for fn, s in zip(fns, _split(seed, len(fns)), strict=True):
            image, mask = fn(image, mask, s)
        return image, mask

    return augment


def build_augment(aug_cfg: Any) -> AugmentFn | None:
    """Build ``augment(image, mask, seed) -> (image, mask)`` from ``aug_cfg``; None for ``none``.

    ``unet_paper`` chains the sub-blocks ``flip``, ``affine``, ``elastic``, ``color`` (each a
    mapping of that option's keys; a missing or null block is skipped).
    """
    cfg = _to_dict(aug_cfg)
    name = str(cfg.get("name", "none")).lower()
    if name in ("none", "null"):
        return None
    if name in _BUILDERS:
        return compose([_BUILDERS[name](cfg)])
    if name == "unet_paper":
        unknown = sorted(set(cfg) - set(UNET_PAPER_BLOCKS) - {"name"})
        if unknown:
            raise ConfigError(
                f"augmentation(unet_paper): unknown key(s) {unknown}; "
                f"expected blocks {list(UNET_PAPER_BLOCKS)}"
            )
        fns = []
        for block in UNET_PAPER_BLOCKS:
            sub = cfg.get(block)
            if sub is None or sub is False:
                continue
            if not isinstance(sub, Mapping):
                raise ConfigError(
                    f"augmentation.{block}={sub!r}: expected a mapping of {block} keys or null"
                )
            fns.append(_BUILDERS[block](sub))
        return compose(fns)
    raise ConfigError(
        f"augmentation.name={name!r}: expected one of {['none', *_BUILDERS, 'unet_paper']}"
    )
