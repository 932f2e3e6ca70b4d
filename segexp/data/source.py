"""The data-source record every dataset loader returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import tensorflow as tf

SPLITS = ("train", "val", "test")


@dataclass
class DataSource:
    """A loaded dataset: unbatched tf.data splits plus what is needed to train on and log it.

    Each split yields ``(image, mask)``: image float32 ``[H, W, C]`` in ``[0, 1]``, mask int32
    ``[H, W, 1]`` holding class ids (and ``ignore_value`` where pixels are not labelled).
    ``instances``, where the data set labels objects one by one (DSB2018), holds per split a
    stream of int32 ``[H, W, 1]`` object ids (0 = background) aligned one-to-one with ``splits``.
    """

    name: str
    splits: dict[str, tf.data.Dataset]
    sizes: dict[str, int]
    num_classes: int
    class_names: list[str]
    channels: int
    ignore_value: int | None = None
    root: str | None = None
    fingerprint: str = ""
    labels: dict[str, np.ndarray] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    instances: dict[str, tf.data.Dataset] | None = None
