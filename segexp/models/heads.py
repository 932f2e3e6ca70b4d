"""Head resolution, in one place: the activation a config asks for, the one a model has, and
how its output becomes class ids (:func:`predictions_to_labels`, for metrics and prediction)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from segexp.errors import ConfigError

if TYPE_CHECKING:
    import keras

HEADS = ("auto", "sigmoid", "softmax", "linear")


def resolve_head(head: str | None, num_classes: int, task: str = "segmentation") -> str:
    """The concrete head activation: ``sigmoid``, ``softmax`` or ``linear``.

    ``auto`` (or null) is a 1-channel sigmoid for 2 classes, a softmax otherwise; for a
    reconstruction task ``auto`` is linear (the image itself is the target).
    """
    head = str(head or "auto").lower()
    if head not in HEADS:
        raise ConfigError(f"model.head={head!r}: expected one of {', '.join(HEADS)}")
    if head != "auto":
        return head
    if task == "reconstruction":
        return "linear"
    return "sigmoid" if num_classes == 2 else "softmax"


def model_head(model: keras.Model, task: str = "segmentation") -> str:
    """The head of a built model: linear for reconstruction, else sigmoid for a one-channel
    output and softmax for K channels."""
    if task == "reconstruction":
        return "linear"
    return "sigmoid" if model.output_shape[-1] == 1 else "softmax"


def predictions_to_labels(y_pred: Any, head: str, threshold: float = 0.5) -> Any:
    """Class ids ``[..., H, W]`` (int64) from a segmentation head's output ``[..., H, W, K]``: a
    one-channel (sigmoid) head is class 1 where ``p > threshold`` (so exactly 0.5 is class 0 at
    the default), K channels take the arg-max (the first of equal maxima). A tf tensor gives a
    tf tensor (graph ops, for the metrics), anything else a NumPy array."""
    if not isinstance(y_pred, np.ndarray):
        import tensorflow as tf

        if tf.is_tensor(y_pred):
            if head == "sigmoid" or y_pred.shape[-1] == 1:
                return tf.cast(y_pred[..., 0] > threshold, tf.int64)
            return tf.argmax(y_pred, axis=-1)
        y_pred = np.asarray(y_pred)
    if head == "sigmoid" or y_pred.shape[-1] == 1:
        return (y_pred[..., 0] > threshold).astype(np.int64)
    return np.argmax(y_pred, axis=-1)
