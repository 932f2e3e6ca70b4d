"""The data-source record every loader returns, and its parallel tf.data sample stream.

The data-source record every dataset loader returns, and the parallel tf.data stream of its
samples (:func:`index_dataset`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
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


def index_dataset(
    n: int,
    load_fn: Callable[[int], tuple[np.ndarray, np.ndarray]],
    channels: int,
    indices: np.ndarray,
) -> Any:
    """A dataset of ``load_fn(i)`` for ``i`` in ``indices``, decoded in parallel, in order."""
    import tensorflow as tf

    def py_load(i: Any) -> tuple[np.ndarray, np.ndarray]:
        image, mask = load_fn(int(i))
        return image.astype(np.float32), mask.astype(np.int32)

    def tf_load(i: Any) -> tuple[Any, Any]:
        image, mask = tf.numpy_function(py_load, [i], [tf.float32, tf.int32], stateful=False)
        return (
            tf.ensure_shape(image, (None, None, channels)),
            tf.ensure_shape(mask, (None, None, 1)),
        )

    ds = tf.data.Dataset.from_tensor_slices(np.asarray(indices, np.int64).reshape(-1))
    return ds.map(tf_load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
