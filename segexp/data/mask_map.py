"""Stored mask values to class ids: a dataset's :class:`MaskMap`.

The :class:`MaskMap` of a dataset (``mask_values``, ``ignore_value``, ``mask_threshold``),
shared by every loader and by segexp-predict's scores."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from segexp.errors import ConfigError


class MaskMap:
    """Stored mask values -> class ids.

    ``mask_values`` maps stored values to class ids (``None``: identity, values must already be
    ``0..num_classes-1``). ``ignore_value`` (e.g. 255) is kept as-is so losses and metrics skip
    it. ``threshold`` binarises instead: ``value >= threshold`` -> 1, else 0.
    """

    def __init__(
        self,
        num_classes: int,
        mask_values: Mapping[Any, Any] | None = None,
        ignore_value: int | None = None,
        threshold: float | None = None,
    ) -> None:
        self.num_classes = int(num_classes)
        self.ignore_value = None if ignore_value is None else int(ignore_value)
        self.threshold = None if threshold is None else float(threshold)
        if mask_values is None:
            table = {i: i for i in range(self.num_classes)}
        else:
            try:
                table = {int(k): int(v) for k, v in dict(mask_values).items()}
            except (TypeError, ValueError):
                raise ConfigError(
                    f"dataset.mask_values={dict(mask_values)}: expected a map of integers "
                    "{stored value: class id}"
                ) from None
        for stored, cls in table.items():
            if not (0 <= cls < self.num_classes) and cls != self.ignore_value:
                raise ConfigError(
                    f"dataset.mask_values maps {stored} to {cls}: class ids must be "
                    f"0..{self.num_classes - 1} or ignore_value ({self.ignore_value})"
                )
        if self.ignore_value is not None and table.get(self.ignore_value, self.ignore_value) != (
            self.ignore_value
        ):
            raise ConfigError(
                f"dataset.mask_values maps {self.ignore_value} (dataset.ignore_value) to class "
                f"{table[self.ignore_value]}: drop it from the map, e.g. "
                "'dataset.mask_values={0:0,1:1}' (a plain override replaces the preset's map)"
            )
        if self.ignore_value is not None and self.ignore_value not in table:
            table[self.ignore_value] = self.ignore_value
        self.table = table
        size = max(max(table) + 1, 256) if table else 256
        self._lut = np.full(size, -1, np.int64)
        for stored, cls in table.items():
            if stored >= 0:
                self._lut[stored] = cls

    def describe(self) -> str:
        """The accepted stored values, for error messages."""
        if self.threshold is not None:
            return f"any (threshold {self.threshold:g})"
        return str(sorted(self.table))

    def invalid_values(self, raw: np.ndarray, limit: int = 8) -> list[int]:
        """Stored values in ``raw`` that the map does not cover (at most ``limit``)."""
        if self.threshold is not None:
            return []
        values = _present_values(raw)
        bad = [int(v) for v in values if int(v) not in self.table]
        return bad[:limit]

    def apply(self, raw: np.ndarray) -> np.ndarray:
        """Map stored values to int32 class ids (unknown values become ignore_value or -1)."""
        if self.threshold is not None:
            return (raw >= self.threshold).astype(np.int32)
        raw = np.asarray(raw)
        if raw.size and (raw.min() < 0 or raw.max() >= len(self._lut)):
            out = np.full(raw.shape, -1, np.int32)
            for stored, cls in self.table.items():
                out[raw == stored] = cls
        else:
            out = self._lut[raw].astype(np.int32)
        if self.ignore_value is not None:
            out[out < 0] = self.ignore_value
        return out

    def class_counts(self, ids: np.ndarray) -> np.ndarray:
        """Pixel counts per class id (``num_classes`` entries; ignore pixels excluded)."""
        ids = ids[(ids >= 0) & (ids < self.num_classes)]
        return np.bincount(ids.ravel(), minlength=self.num_classes)[: self.num_classes]


def _present_values(raw: np.ndarray) -> np.ndarray:
    if raw.size and np.issubdtype(raw.dtype, np.integer) and raw.min() >= 0 and raw.max() < 70000:
        return np.flatnonzero(np.bincount(raw.ravel()))
    return np.unique(raw)


def mask_map_from_cfg(cfg: Any, num_classes: int) -> MaskMap:
    """Build the :class:`MaskMap` of a dataset config (keys mask_values, ignore_value,
    mask_threshold)."""
    values = cfg.get("mask_values")
    if values is not None and hasattr(values, "items"):
        values = {k: v for k, v in values.items()}
    return MaskMap(num_classes, values, cfg.get("ignore_value"), cfg.get("mask_threshold"))
