"""The ``color`` option: brightness, contrast, gamma and noise on the image only."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import tensorflow as tf

from segexp.augment._common import (
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

COLOR_DEFAULTS: dict[str, Any] = {
    "brightness": 0.1,  # additive delta, uniform in [-b, b]
    "contrast": 0.1,  # factor uniform in [1 - c, 1 + c] around the per-channel mean
    "gamma": [0.9, 1.1],  # exponent range [lo, hi] (or g -> [1 - g, 1 + g]); 1 = off
    "noise_std": 0.01,  # additive gaussian noise std
    "clip": True,  # clip the result to [0, 1]
    "p": 1.0,
}


def make_color(cfg: Mapping | None = None) -> AugmentFn:
    """Brightness, contrast, gamma and gaussian noise on the image only (mask untouched)."""
    where = "augmentation"
    prm = with_defaults(_to_dict(cfg), COLOR_DEFAULTS, "augmentation(color)")
    brightness = _number(prm["brightness"], f"{where}.brightness")
    contrast = _number(prm["contrast"], f"{where}.contrast", high=1.0)
    gamma = _range(prm["gamma"], f"{where}.gamma", centre=1.0)
    noise_std = _number(prm["noise_std"], f"{where}.noise_std")
    clip = bool(prm["clip"])
    p = _probability(prm["p"], f"{where}.p")

    def color(image: tf.Tensor, mask: tf.Tensor, seed: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        s = _split(seed, 5)
        x = image
        if brightness > 0:
            x = x + _uniform(s[0], -brightness, brightness)
        if contrast > 0:
            mean = tf.reduce_mean(x, axis=[0, 1], keepdims=True)
            x = (x - mean) * _uniform(s[1], 1.0 - contrast, 1.0 + contrast) + mean
        if gamma != (1.0, 1.0):
            # log-uniform so that g and 1/g are equally likely for symmetric log ranges
            g = tf.exp(_uniform(s[2], math.log(gamma[0]), math.log(gamma[1]) + 1e-12))
            x = tf.pow(tf.clip_by_value(x, 0.0, 1.0), g)
        if noise_std > 0:
            x = x + tf.random.stateless_normal(tf.shape(x), seed=s[3], stddev=noise_std)
        if clip:
            x = tf.clip_by_value(x, 0.0, 1.0)
        if p < 1.0:
            x = tf.where(_coin(s[4], p), x, image)
        return _keep_shape(x, image), mask

    return color
