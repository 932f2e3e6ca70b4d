"""Head resolution, in one place: the activation a config asks for and the one a model has."""

from __future__ import annotations

from typing import TYPE_CHECKING

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
