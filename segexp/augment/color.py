"""The ``color`` option: brightness, contrast, gamma and noise on the image only, on batches."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict

import tensorflow as tf

from segexp.augment.params import BatchFn, to_number, to_probability, to_range
from segexp.augment.sampling import coin, normal, split_keys, uniform
from segexp.config import typed
from segexp.config.schema.augment import ColorConf


def make_color(cfg: Mapping | None = None) -> BatchFn:
    """Brightness, contrast, gamma and gaussian noise on the image only (mask untouched)."""
    where = "augmentation"
    prm = asdict(typed(cfg, ColorConf, "augmentation(color)"))
    brightness = to_number(prm["brightness"], f"{where}.brightness")
    contrast = to_number(prm["contrast"], f"{where}.contrast", high=1.0)
    gamma = to_range(prm["gamma"], f"{where}.gamma", centre=1.0)
    noise_std = to_number(prm["noise_std"], f"{where}.noise_std")
    clip = bool(prm["clip"])
    p = to_probability(prm["p"], f"{where}.p")

    def per_sample(values: tf.Tensor) -> tf.Tensor:
        return tf.reshape(values, [-1, 1, 1, 1])

    def color(images: tf.Tensor, masks: tf.Tensor, keys: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        k = split_keys(keys, 5)
        x = images
        if brightness > 0:
            x = x + per_sample(uniform(k[0], -brightness, brightness))
        if contrast > 0:
            mean = tf.reduce_mean(x, axis=[1, 2], keepdims=True)
            x = (x - mean) * per_sample(uniform(k[1], 1.0 - contrast, 1.0 + contrast)) + mean
        if gamma != (1.0, 1.0):
            # log-uniform so that g and 1/g are equally likely for symmetric log ranges
            g = tf.exp(uniform(k[2], math.log(gamma[0]), math.log(gamma[1]) + 1e-12))
            x = tf.pow(tf.clip_by_value(x, 0.0, 1.0), per_sample(g))
        if noise_std > 0:
            n = tf.reduce_prod(tf.shape(x)[1:])
            noise = normal(k[3], n, noise_std)
            x = x + tf.reshape(noise, tf.shape(x))
        if clip:
            x = tf.clip_by_value(x, 0.0, 1.0)
        if p < 1.0:
            x = tf.where(per_sample(coin(k[4], p)), x, images)
        return tf.ensure_shape(x, images.shape), masks

    return color
