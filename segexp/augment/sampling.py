"""Per-sample randomness of the batched augmentation options: uniform, normal and coin draws
hashed from each sample's seed, so a sample's draws do not depend on the batch it travels in."""

from __future__ import annotations

import tensorflow as tf

# TensorFlow's stateless random ops take one seed per op and do not vectorise over a batch of
# seeds, so a batch's per-sample draws come from a counter-based hash of each sample's seed
# (MurmurHash3's 32-bit finaliser): sample b's numbers depend on seeds[b] alone, never on the
# batch it travels in, so batched and per-sample calls agree exactly.
_GOLDEN = 0x9E3779B9


def _u32(value: int) -> tf.Tensor:
    return tf.constant(value & 0xFFFFFFFF, tf.uint32)


def _fmix(x: tf.Tensor) -> tf.Tensor:
    """MurmurHash3 ``fmix32`` on a uint32 tensor (bijective, full avalanche)."""
    x = tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, _u32(16)))
    x = x * _u32(0x85EBCA6B)
    x = tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, _u32(13)))
    x = x * _u32(0xC2B2AE35)
    return tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, _u32(16)))


def sample_keys(seeds: tf.Tensor) -> tf.Tensor:
    """uint32 ``[B]`` keys from int64 seeds ``[B, 2]`` (all 128 bits mixed in)."""
    words = tf.bitcast(tf.cast(seeds, tf.int64), tf.uint32)  # [B, 2, 2]
    key = _fmix(tf.bitwise.bitwise_xor(words[:, 0, 0], _u32(0x3C6EF372)))
    for a, b in ((0, 1), (1, 0), (1, 1)):
        key = _fmix(tf.bitwise.bitwise_xor(key, _fmix(words[:, a, b] + _u32(_GOLDEN))))
    return key


def split_keys(keys: tf.Tensor, n: int) -> list[tf.Tensor]:
    """``n`` independent sub-keys of each key (one per transform or parameter)."""
    return [
        _fmix(tf.bitwise.bitwise_xor(keys, _fmix(_u32((i + 1) * _GOLDEN + 0x7F4A7C15))))
        for i in range(n)
    ]


def uniform(keys: tf.Tensor, lo: float, hi: float, n: int | None = None) -> tf.Tensor:
    """Per-sample uniforms in ``(lo, hi)``: ``[B]``, or ``[B, n]`` when ``n`` is given."""
    count = 1 if n is None else n
    counters = tf.cast(tf.range(count, dtype=tf.int32), tf.uint32)
    counters = _fmix(counters * _u32(_GOLDEN) + _u32(0x632BE5AB))
    bits = _fmix(tf.bitwise.bitwise_xor(keys[:, None], counters[None, :]))
    u = (tf.cast(tf.bitwise.right_shift(bits, _u32(8)), tf.float32) + 0.5) * (2.0**-24)
    u = lo + (hi - lo) * u
    return u[:, 0] if n is None else u


def normal(keys: tf.Tensor, n: int, stddev: float = 1.0) -> tf.Tensor:
    """Per-sample N(0, stddev) draws ``[B, n]`` (inverse normal CDF of hashed uniforms)."""
    return stddev * tf.math.ndtri(uniform(keys, 0.0, 1.0, n))


def coin(keys: tf.Tensor, p: float) -> tf.Tensor:
    """Per-sample booleans ``[B]``, True with probability ``p``."""
    return uniform(keys, 0.0, 1.0) < p
