"""Shared helpers of the augmentation options: config parsing and stateless randomness."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import tensorflow as tf

from segexp.config import to_dict
from segexp.errors import ConfigError

AugmentFn = Callable[[tf.Tensor, tf.Tensor, tf.Tensor], tuple[tf.Tensor, tf.Tensor]]
_FILL_MODES = {"reflect": "REFLECT", "constant": "CONSTANT", "nearest": "NEAREST", "wrap": "WRAP"}


def _to_dict(cfg: Any) -> dict[str, Any]:
    return to_dict(cfg, "augmentation")


def _number(value: Any, where: str, *, low: float = 0.0, high: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{where}={value!r}: expected a number")
    if value < low or (high is not None and value > high):
        upper = "" if high is None else f" and <= {high}"
        raise ConfigError(f"{where}={value!r}: expected a number >= {low}{upper}")
    return float(value)


def _range(value: Any, where: str, *, centre: float) -> tuple[float, float]:
    """``x -> [centre - x, centre + x]``; ``[lo, hi]`` as given (both > 0)."""
    if isinstance(value, list | tuple):
        if len(value) != 2:
            raise ConfigError(f"{where}={value!r}: expected a number or [low, high]")
        lo, hi = (_number(v, where) for v in value)
    else:
        x = _number(value, where)
        lo, hi = centre - x, centre + x
    if not 0 < lo <= hi:
        raise ConfigError(f"{where}={value!r}: expected 0 < low <= high")
    return lo, hi


def _probability(value: Any, where: str) -> float:
    return _number(value, where, low=0.0, high=1.0)


def _uniform(seed: tf.Tensor, lo: float, hi: float, shape: tuple[int, ...] = ()) -> tf.Tensor:
    return tf.random.stateless_uniform(shape, seed=seed, minval=lo, maxval=hi, dtype=tf.float32)


def _coin(seed: tf.Tensor, p: float) -> tf.Tensor:
    """Boolean scalar that is True with probability ``p``."""
    return _uniform(seed, 0.0, 1.0) < p


def _split(seed: tf.Tensor, n: int) -> list[tf.Tensor]:
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=n)
    return [seeds[i] for i in range(n)]


def _keep_shape(out: tf.Tensor, like: tf.Tensor) -> tf.Tensor:
    out = tf.reshape(out, tf.shape(like))
    out.set_shape(like.shape)
    return out
