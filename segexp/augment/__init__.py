"""Joint image/mask augmentation for the tf.data pipeline (the ``augmentation`` config group).

Every option is pure TensorFlow graph code (no ``py_function``) driven by a per-sample seed
(int64 ``[2]``), so a pipeline seed reproduces the exact stream. Options work on whole batches
(per-sample parameters hashed from each sample's seed, so a sample's result does not depend on
the batch it travels in), compiled with XLA; :class:`Augment` also takes one sample. Consecutive
geometric options resample once (:mod:`segexp.augment.warp`). Geometric ops resample the
image bilinearly and the mask by nearest neighbour only: the mask stays int32 and keeps exactly
its label set (including the ignore value).

Keras 3 preprocessing layers are not used: they draw randomness from a stateful
``SeedGenerator`` instead of a per-sample stateless seed, ``RandomFlip`` returns masks as float32,
``RandomElasticTransform`` fails on int32 masks and interpolates float masks like images, and
chaining rotation/zoom/shift/shear layers resamples four times. Here the affine part is a single
projective transform (``ImageProjectiveTransformV3``, batched) per sample.

Options (``name``): ``none``, ``flip``, ``affine``, ``elastic``, ``color``, ``unet_paper``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict
from typing import Any

import tensorflow as tf

from segexp.augment.color import make_color
from segexp.augment.geometric import (
    affine_matrix,
    apply_transform,
    coarse_grid,
    displacement_field,
    make_affine,
    make_elastic,
    make_flip,
)
from segexp.augment.params import AugmentFn, BatchFn
from segexp.augment.sampling import sample_keys, split_keys
from segexp.augment.warp import Warp, apply_warps, group_warps, resample
from segexp.config import to_dict, typed
from segexp.config.schema import option_name
from segexp.config.schema.augment import BLOCKS, UNetPaperConf
from segexp.errors import ConfigError

__all__ = [
    "Augment",
    "UNET_PAPER_BLOCKS",
    "AugmentFn",
    "affine_matrix",
    "apply_transform",
    "build_augment",
    "coarse_grid",
    "compose",
    "displacement_field",
    "make_affine",
    "make_color",
    "make_elastic",
    "make_flip",
    "option_defaults",
    "resample",
]

UNET_PAPER_BLOCKS: tuple[str, ...] = tuple(BLOCKS)

# Chosen by name, not `_target_`: unet_paper chains several options into one compiled Augment.
_BUILDERS: dict[str, Callable[[Mapping | None], BatchFn | Warp]] = {
    "flip": make_flip,
    "affine": make_affine,
    "elastic": make_elastic,
    "color": make_color,
}


def option_defaults(name: str) -> dict[str, Any]:
    """The keys and defaults of one option (flip, affine, elastic, color), ``name`` excluded."""
    return {k: v for k, v in asdict(BLOCKS[name]()).items() if k != "name"}


class Augment:
    """A chain of options: ``batch(images, masks, seeds)`` on ``[B, ...]`` with int64 seeds
    ``[B, 2]``, or ``augment(image, mask, seed)`` on one sample (the same result as in a batch).
    Each option gets its own sub-key of the sample's seed."""

    def __init__(self, fns: list[BatchFn | Warp]) -> None:
        self.fns = list(fns)
        # XLA fuses the chain's per-pixel arithmetic into a few loops (about 8x faster on CPU
        # than op by op); every call, batched or single, runs the same compiled code.
        self._compiled = tf.function(self._batch, jit_compile=True, reduce_retracing=True)

    def batch(
        self, images: tf.Tensor, masks: tf.Tensor, seeds: tf.Tensor
    ) -> tuple[tf.Tensor, tf.Tensor]:
        """Augment ``[B, H, W, C]`` images and ``[B, H, W, Cm]`` masks with seeds ``[B, 2]``."""
        return self._compiled(images, masks, tf.cast(seeds, tf.int64))

    def _batch(
        self, images: tf.Tensor, masks: tf.Tensor, seeds: tf.Tensor
    ) -> tuple[tf.Tensor, tf.Tensor]:
        if not self.fns:
            return images, masks
        keys = iter(split_keys(sample_keys(seeds), len(self.fns)))
        for group in group_warps(self.fns):
            if isinstance(group[0], Warp):  # affine, elastic, ...: one resampling pass
                images, masks = apply_warps(group, [next(keys) for _ in group], images, masks)
            else:
                images, masks = group[0](images, masks, next(keys))
        return images, masks

    def __call__(
        self, image: tf.Tensor, mask: tf.Tensor, seed: tf.Tensor
    ) -> tuple[tf.Tensor, tf.Tensor]:
        seeds = tf.reshape(tf.cast(seed, tf.int64), [1, 2])
        images, masks = self.batch(image[None], mask[None], seeds)
        return images[0], masks[0]


def compose(fns: list[BatchFn | Warp]) -> Augment:
    """Chain options into one :class:`Augment` (consecutive warps resample once together)."""
    return Augment(fns)


def build_augment(aug_cfg: Any) -> Augment | None:
    """Build the :class:`Augment` of ``aug_cfg`` (``augment(image, mask, seed)`` per sample,
    ``augment.batch(images, masks, seeds)`` per batch); None for ``none``.

    ``unet_paper`` chains the sub-blocks ``flip``, ``affine``, ``elastic``, ``color`` (each a
    mapping of that option's keys; a missing or null block is skipped).
    """
    cfg = to_dict(aug_cfg, "augmentation")
    name = option_name(cfg, "augmentation")
    if name in ("none", "null"):
        return None
    if name in _BUILDERS:
        return compose([_BUILDERS[name](cfg)])
    if name == "unet_paper":
        cfg = {k: None if v is False else v for k, v in cfg.items()}  # false drops a block too
        blocks = typed(cfg, UNetPaperConf, "augmentation(unet_paper)")
        fns = [
            _BUILDERS[block](asdict(sub))
            for block in UNET_PAPER_BLOCKS
            if (sub := getattr(blocks, block)) is not None
        ]
        return compose(fns)
    raise ConfigError(
        f"augmentation.name={name!r}: expected one of {['none', *_BUILDERS, 'unet_paper']}"
    )
