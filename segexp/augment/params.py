"""The augmentation options' interface: their function types and the checks of their config
values (numbers, probabilities, ranges, fill modes), each a one-line ``ConfigError``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import tensorflow as tf

from segexp.errors import ConfigError

AugmentFn = Callable[[tf.Tensor, tf.Tensor, tf.Tensor], tuple[tf.Tensor, tf.Tensor]]
# One option on a batch: (images [B, H, W, C], masks [B, H, W, Cm], uint32 keys [B]).
BatchFn = Callable[[tf.Tensor, tf.Tensor, tf.Tensor], tuple[tf.Tensor, tf.Tensor]]
# ``fill_mode`` -> the padding mode of TensorFlow's image ops.
FILL_MODES = {"reflect": "REFLECT", "constant": "CONSTANT", "nearest": "NEAREST", "wrap": "WRAP"}


def to_number(value: Any, where: str, *, low: float = 0.0, high: float | None = None) -> float:
    """``value`` as a float in ``[low, high]`` (``where`` names the key in the error)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{where}={value!r}: expected a number")
    if value < low or (high is not None and value > high):
        upper = "" if high is None else f" and <= {high}"
        raise ConfigError(f"{where}={value!r}: expected a number >= {low}{upper}")
    return float(value)


def to_range(value: Any, where: str, *, centre: float) -> tuple[float, float]:
    """``x -> [centre - x, centre + x]``; ``[lo, hi]`` as given (both > 0)."""
    if isinstance(value, list | tuple):
        if len(value) != 2:
            raise ConfigError(f"{where}={value!r}: expected a number or [low, high]")
        lo, hi = (to_number(v, where) for v in value)
    else:
        x = to_number(value, where)
        lo, hi = centre - x, centre + x
    if not 0 < lo <= hi:
        raise ConfigError(f"{where}={value!r}: expected 0 < low <= high")
    return lo, hi


def to_probability(value: Any, where: str) -> float:
    """``value`` as a float in ``[0, 1]``."""
    return to_number(value, where, low=0.0, high=1.0)
