"""Keras callbacks that own their resume state: EarlyStopping, ReduceLROnPlateau, ModelCheckpoint.

Keras callbacks have no state API; these subclasses hand over and take back the counters that
must survive a restart (segexp/train/checkpoint.py ``Resumable``). They keep Keras' class names,
which key their state in the resume checkpoint's ``state.json``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import keras
import numpy as np


class _OwnState(keras.callbacks.Callback):
    """The resume state protocol (segexp/train/checkpoint.py ``Resumable``) for a Keras callback:
    :meth:`state` hands over its numeric ``COUNTERS``; :meth:`restore` sets them at once and,
    before a fit, again at the end of the callback's own ``on_train_begin``, where Keras resets
    them, so they survive whatever the order of the callbacks."""

    COUNTERS: tuple[str, ...] = ()
    _restored: dict[str, Any] | None = None  # to set again after the reset
    _fitting = False

    def state(self) -> dict[str, Any]:
        saved = {}
        for name in self.COUNTERS:
            value = getattr(self, name, None)  # Keras leaves ``best`` None until a first value
            if isinstance(value, (int, float, np.number)) and not isinstance(value, bool):
                saved[name] = value.item() if isinstance(value, np.number) else value
        return saved

    def restore(self, state: Mapping[str, Any]) -> None:
        self._keep({k: v for k, v in state.items() if k in self.COUNTERS})

    def _keep(self, values: dict[str, Any]) -> None:
        for name, value in values.items():
            setattr(self, name, value)
        if not self._fitting:
            self._restored = {**(self._restored or {}), **values}

    def on_train_begin(self, logs: dict | None = None) -> None:
        super().on_train_begin(logs)
        for name, value in (self._restored or {}).items():
            setattr(self, name, value)
        self._restored, self._fitting = None, True

    def on_train_end(self, logs: dict | None = None) -> None:
        super().on_train_end(logs)
        self._fitting = False


class ReduceLROnPlateau(_OwnState, keras.callbacks.ReduceLROnPlateau):
    COUNTERS = ("wait", "best", "cooldown_counter")


class EarlyStopping(_OwnState, keras.callbacks.EarlyStopping):
    """With ``restore_best_weights``, its in-memory best weights are its ``ResumableArrays``."""

    COUNTERS = ("wait", "best", "best_epoch", "stopped_epoch")

    def arrays(self) -> list[np.ndarray] | None:
        if not self.restore_best_weights or self.best_weights is None:
            return None
        return list(self.best_weights)

    def restore_arrays(self, arrays: list[np.ndarray]) -> None:
        if self.restore_best_weights:
            self._keep({"best_weights": list(arrays)})


class ModelCheckpoint(_OwnState, keras.callbacks.ModelCheckpoint):
    COUNTERS = ("best",)
