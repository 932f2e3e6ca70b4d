"""The tf.data input pipeline shared by every dataset: cache, shuffle, augment, batch, prefetch."""

from __future__ import annotations

from collections.abc import Callable

import tensorflow as tf

AUTOTUNE = tf.data.AUTOTUNE


def center_crop_mask(mask: tf.Tensor, crop: tuple[int, int]) -> tf.Tensor:
    """Remove ``crop = (rows, cols)`` pixels from each side of a mask (valid-padding networks)."""
    ch, cw = crop
    if ch == 0 and cw == 0:
        return mask
    return mask[ch : tf.shape(mask)[0] - ch, cw : tf.shape(mask)[1] - cw]


def make_dataset(
    ds: tf.data.Dataset,
    *,
    batch_size: int,
    training: bool,
    seed: int,
    augment: Callable | None = None,
    sample_weight_fn: Callable | None = None,
    cache: bool | str = True,
    mask_crop: tuple[int, int] | None = None,
    target: str = "mask",
    shuffle_buffer: int = 4096,
    input_scale: float = 1.0,
) -> tf.data.Dataset:
    """Batch an unbatched ``(image, mask)`` split for ``model.fit``.

    Decoding and resizing happen once (before ``cache``); augmentation runs after the cache on
    every epoch, in parallel, with a per-sample stateless seed drawn from ``seed`` so the whole
    stream is reproducible. ``cache`` is True (memory), False, or a file path prefix (disk).
    ``target="image"`` makes the image its own target (autoencoders). ``input_scale``
    multiplies the model input (255 for models that rescale raw pixels themselves).
    """
    if cache is True:
        ds = ds.cache()
    elif cache:
        ds = ds.cache(str(cache))
    if training:
        ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
        if augment is not None:
            seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
            ds = tf.data.Dataset.zip(ds, seeds).map(
                lambda pair, s: augment(pair[0], pair[1], s),
                num_parallel_calls=AUTOTUNE,
                deterministic=True,
            )
    if target == "image":
        ds = ds.map(lambda image, _mask: (image, image), num_parallel_calls=AUTOTUNE)
    else:
        if mask_crop is not None and any(mask_crop):
            crop = tuple(int(c) for c in mask_crop)
            ds = ds.map(
                lambda image, mask: (image, center_crop_mask(mask, crop)),
                num_parallel_calls=AUTOTUNE,
            )
        if sample_weight_fn is not None:
            ds = ds.map(
                lambda image, mask: (image, mask, sample_weight_fn(mask)),
                num_parallel_calls=AUTOTUNE,
                deterministic=True,
            )
    if input_scale != 1.0:
        scale = float(input_scale)
        ds = ds.map(lambda image, *rest: (image * scale, *rest), num_parallel_calls=AUTOTUNE)
    return ds.batch(batch_size).prefetch(AUTOTUNE)
