"""Helpers shared by the model builders: range checks, output channels, parameter counts."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from segexp.config import to_dict
from segexp.errors import ConfigError

if TYPE_CHECKING:
    import keras

TASKS = ("segmentation", "reconstruction")


def to_plain(cfg: Any) -> dict[str, Any]:
    return to_dict(cfg, "model config")


def resolve_task(task: str | None) -> str:
    """``model.task``: segmentation (default) or reconstruction."""
    task = task or "segmentation"
    if task not in TASKS:
        raise ConfigError(f"model.task={task!r}: expected one of {', '.join(TASKS)}")
    return str(task)


def head_channels(head: str, num_classes: int) -> int:
    """Output channels of a segmentation head (``head`` already resolved).

    sigmoid and linear: 1 channel for 2 classes, else ``num_classes``; softmax: ``num_classes``.
    """
    if num_classes < 2:
        raise ConfigError(f"num_classes={num_classes}: a segmentation model needs at least 2")
    if head == "softmax":
        return num_classes
    return 1 if num_classes == 2 else num_classes


def keras_activation(name: str | None) -> str | None:
    """Map ``linear``/``none``/null to None (no activation), other names pass through."""
    if name is None or str(name).lower() in ("linear", "none", "null"):
        return None
    return str(name)


def param_counts(model: keras.Model) -> tuple[int, int]:
    """``(trainable, total)`` parameter counts of a built model."""
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    total = sum(int(np.prod(w.shape)) for w in model.weights)
    return trainable, total


def as_int(value: Any, key: str, minimum: int = 0) -> int:
    """An integer key of at least ``minimum``, with a one-line error for a bad value."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"model.{key}={value!r}: expected an integer >= {minimum}")
    return value


def as_choice(value: Any, key: str, choices: tuple[str, ...]) -> str:
    """A string key restricted to ``choices``."""
    if value not in choices:
        raise ConfigError(f"model.{key}={value!r}: expected one of {', '.join(choices)}")
    return str(value)
