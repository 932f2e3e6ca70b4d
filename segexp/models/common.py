"""Helpers shared by the model builders: config access, head resolution, parameter counts."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from segexp.config import to_dict
from segexp.errors import ConfigError

if TYPE_CHECKING:
    import keras

HEADS = ("auto", "sigmoid", "softmax", "linear")
TASKS = ("segmentation", "reconstruction")


def to_plain(cfg: Any) -> dict[str, Any]:
    return to_dict(cfg, "model config")


def resolve_task(cfg: Mapping[str, Any]) -> str:
    """``model.task``: segmentation (default) or reconstruction."""
    task = cfg.get("task") or "segmentation"
    if task not in TASKS:
        raise ConfigError(f"model.task={task!r}: expected one of {', '.join(TASKS)}")
    return str(task)


def resolve_head(head: str | None, num_classes: int, task: str = "segmentation") -> str:
    """The concrete head activation: ``sigmoid``, ``softmax`` or ``linear``.

    ``auto`` is a 1-channel sigmoid for 2 classes, a softmax otherwise; for a reconstruction
    task ``auto`` is linear (the image itself is the target).
    """
    head = head or "auto"
    if head not in HEADS:
        raise ConfigError(f"model.head={head!r}: expected one of {', '.join(HEADS)}")
    if head != "auto":
        return head
    if task == "reconstruction":
        return "linear"
    return "sigmoid" if num_classes == 2 else "softmax"


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


def as_int(cfg: Mapping[str, Any], key: str, default: int, minimum: int = 0) -> int:
    """Read an integer key, with a one-line error for a bad value."""
    value = cfg.get(key, default)
    if value is None:
        value = default
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"model.{key}={value!r}: expected an integer >= {minimum}")
    return value


def as_bool(cfg: Mapping[str, Any], key: str, default: bool) -> bool:
    """Read a boolean key."""
    value = cfg.get(key, default)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise ConfigError(f"model.{key}={value!r}: expected true or false")
    return value


def as_choice(cfg: Mapping[str, Any], key: str, default: str, choices: tuple[str, ...]) -> str:
    """Read a string key restricted to ``choices``."""
    value = cfg.get(key, default)
    if value is None:
        value = default
    if value not in choices:
        raise ConfigError(f"model.{key}={value!r}: expected one of {', '.join(choices)}")
    return str(value)
