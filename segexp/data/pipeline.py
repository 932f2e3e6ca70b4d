"""The tf.data input pipeline shared by every dataset: cache, shuffle, augment, batch, prefetch."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import tensorflow as tf

from segexp.data.decode import to_model_input

AUTOTUNE = tf.data.AUTOTUNE
DEFAULT_SHUFFLE_BUFFER = 4096
STREAMED_SHUFFLE_BUFFER = 256
ZERO_GLOBAL_SEED_STANDIN = 2**31 - 2


def center_crop_mask(mask: Any, crop: tuple[int, int], *, batched: bool = False) -> Any:
    """Remove ``crop = (rows, cols)`` pixels from each side of a mask ``[H, W, ...]`` (``[N, H,
    W, ...]`` when ``batched``), a tensor inside tf.data or a NumPy array: the one mask crop of
    valid-padding networks (see :func:`segexp.models.output_crop`)."""
    ch, cw = (int(c) for c in crop)
    if ch == 0 and cw == 0:
        return mask
    axis = 1 if batched else 0
    shape = mask.shape if isinstance(mask, np.ndarray) else tf.shape(mask)
    rows = slice(ch, shape[axis] - ch)
    cols = slice(cw, shape[axis + 1] - cw)
    return mask[(slice(None),) * axis + (rows, cols)]


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
    shuffle_buffer: int | None = None,
    input_scale: float = 1.0,
    epochs: int = 1,
    initial_epoch: int = 0,
    steps_per_epoch: int | None = None,
) -> tf.data.Dataset:
    """Batch an unbatched ``(image, mask)`` split for ``model.fit``.

    Decoding, resizing and ``sample_weight_fn`` (the U-Net weight map, carried through
    augmentation with the mask) happen once (before ``cache``); augmentation runs after the cache on
    every epoch, in parallel, with a per-sample stateless seed drawn from ``seed`` so the whole
    stream is reproducible. ``cache`` is True (memory), False, or a file path prefix (disk).
    ``shuffle_buffer`` defaults to 4096 elements, or 256 when ``cache`` is off so that a data
    set larger than memory streams from disk.
    ``target="image"`` makes the image its own target (autoencoders). ``input_scale``
    multiplies the model input (255 for models that rescale raw pixels themselves).

    For training, the result is ONE stream of the batches of epochs ``initial_epoch ..
    epochs-1`` whose order and augmentation depend only on ``(seed, epoch)`` (see
    :func:`epoch_stream`), so a run resumed at epoch k sees exactly the batches an uninterrupted
    run sees; pass ``steps_per_epoch`` (batches per epoch) to ``model.fit`` too.
    """
    if shuffle_buffer is None:
        # A cached split is in memory anyway; a streamed one (cache off) must not be pulled
        # into memory by a large shuffle buffer of decoded images.
        shuffle_buffer = DEFAULT_SHUFFLE_BUFFER if cache else STREAMED_SHUFFLE_BUFFER
    weighted = sample_weight_fn is not None and target == "mask"
    if weighted:  # once per sample, cached with it (see segexp/losses/weight_map.py)
        from segexp.losses.weight_map import pack_weights

        ds = ds.map(
            lambda image, mask: (image, pack_weights(mask, sample_weight_fn(mask))),
            num_parallel_calls=AUTOTUNE,
            deterministic=True,
        )
    if cache is True:
        ds = ds.cache()
    elif cache:
        ds = ds.cache(str(cache))
    if training:
        base = ds

        def per_epoch(epoch: tf.Tensor) -> tf.data.Dataset:
            stream = epoch_stream(
                base,
                epoch,
                seed=seed,
                batch_size=batch_size,
                augment=augment,
                steps_per_epoch=steps_per_epoch,
                shuffle_buffer=shuffle_buffer,
            )
            return (
                _finish(stream, sample_weight_fn, mask_crop, target, input_scale)
                .batch(batch_size)
                .take(-1 if steps_per_epoch is None else int(steps_per_epoch))
            )

        epochs_ds = tf.data.Dataset.range(int(initial_epoch), max(int(initial_epoch), int(epochs)))
        stream = epochs_ds.flat_map(per_epoch)
        size = int(base.cardinality())
        if size >= 0 or steps_per_epoch is not None:  # tell Keras how many batches there are
            batches = int(steps_per_epoch) if steps_per_epoch else -(-size // int(batch_size))
            total = batches * max(0, int(epochs) - int(initial_epoch))
            stream = stream.apply(tf.data.experimental.assert_cardinality(total))
        return stream.prefetch(AUTOTUNE).with_options(_threading())
    return (
        _finish(ds, sample_weight_fn, mask_crop, target, input_scale)
        .batch(batch_size)
        .prefetch(AUTOTUNE)
    )


def _threading() -> tf.data.Options:
    """Ops inside the input pipeline run single-threaded: the pipeline's parallelism comes
    from its parallel maps, and the training step keeps the intra-op threads to itself."""
    options = tf.data.Options()
    options.threading.max_intra_op_parallelism = 1
    return options


def epoch_seeds(seed: int, epoch: tf.Tensor | int) -> tf.Tensor:
    """Two int64 seeds for one epoch (shuffle, augmentation), a pure function of (seed, epoch)."""
    key = tf.stack([tf.constant(int(seed), tf.int64), tf.cast(epoch, tf.int64)])
    return tf.random.stateless_uniform([2], seed=key, minval=0, maxval=2**31 - 1, dtype=tf.int64)


def epoch_stream(
    base: tf.data.Dataset,
    epoch: tf.Tensor | int,
    *,
    seed: int,
    batch_size: int,
    augment: Callable | None = None,
    steps_per_epoch: int | None = None,
    shuffle_buffer: int = 4096,
) -> tf.data.Dataset:
    """The (unbatched) training elements of one epoch: shuffled with a seed from (seed, epoch)
    and augmented with the per-element seed ``[augment seed of the epoch, position]``.

    Without ``steps_per_epoch`` the epoch is one pass; with it, enough passes (each with its own
    seed) for ``steps_per_epoch * batch_size`` elements.
    """
    keys = epoch_seeds(seed, epoch)

    def one_pass(p: tf.Tensor) -> tf.data.Dataset:
        pass_seed = tf.math.floormod(keys[0] + 7919 * tf.cast(p, tf.int64), 2**31 - 1)
        # TensorFlow checks the (global, op) seed pair against (0, 0) in Python, which fails
        # for a tensor op seed when the global seed is 0 (`seed=0`): use a stand-in there.
        graph = tf.compat.v1.get_default_graph()
        if graph.seed == 0:
            graph.seed = ZERO_GLOBAL_SEED_STANDIN
        return base.shuffle(shuffle_buffer, seed=pass_seed, reshuffle_each_iteration=False)

    if steps_per_epoch is None:
        ds = one_pass(tf.constant(0, tf.int64))
    else:
        ds = (
            tf.data.Dataset.range(2**62)
            .flat_map(one_pass)
            .take(int(steps_per_epoch) * int(batch_size))
        )
    if augment is not None:
        ds = _augmented(ds.enumerate(), augment, keys[1], batch_size)
    return ds


def _augmented(
    indexed: tf.data.Dataset, augment: Callable, key: tf.Tensor, batch_size: int
) -> tf.data.Dataset:
    """Augment ``(position, (image, mask))`` elements with the seed ``[key, position]`` each.

    An augmentation with a ``batch(images, masks, seeds)`` method (:class:`segexp.augment.
    Augment`) runs once per batch of ``batch_size`` elements: one batched op per step instead
    of a graph per sample, and each sample's result is the same as alone.
    """
    batched = getattr(augment, "batch", None)
    if batched is None:
        return indexed.map(
            lambda i, pair: augment(pair[0], pair[1], tf.stack([key, tf.cast(i, tf.int64)])),
            num_parallel_calls=AUTOTUNE,
            deterministic=True,
        )

    def apply(i: tf.Tensor, pair: tuple[tf.Tensor, tf.Tensor]) -> tuple[tf.Tensor, tf.Tensor]:
        i = tf.cast(i, tf.int64)
        return batched(pair[0], pair[1], tf.stack([tf.fill(tf.shape(i), key), i], axis=1))

    return (
        indexed.batch(int(batch_size))
        .map(apply, num_parallel_calls=AUTOTUNE, deterministic=True)
        .unbatch()
    )


def _finish(
    ds: tf.data.Dataset,
    sample_weight_fn: Callable | None,
    mask_crop: tuple[int, int] | None,
    target: str,
    input_scale: float,
) -> tf.data.Dataset:
    """Target selection, mask crop, sample weights and input scale (per element)."""
    if target == "image":
        ds = ds.map(lambda image, _mask: (image, image), num_parallel_calls=AUTOTUNE)
    else:
        if sample_weight_fn is not None:  # packed into the mask before the cache
            from segexp.losses.weight_map import unpack_weights

            ds = ds.map(
                lambda image, packed: (image, *unpack_weights(packed)),
                num_parallel_calls=AUTOTUNE,
                deterministic=True,
            )
        if mask_crop is not None and any(mask_crop):
            crop = tuple(int(c) for c in mask_crop)
            ds = ds.map(
                lambda image, mask, *weights: (
                    image,
                    center_crop_mask(mask, crop),
                    *(center_crop_mask(w, crop) for w in weights),
                ),
                num_parallel_calls=AUTOTUNE,
            )
    if input_scale != 1.0:
        ds = ds.map(
            lambda image, *rest: (to_model_input(image, input_scale), *rest),
            num_parallel_calls=AUTOTUNE,
            deterministic=True,
        )
    return ds
