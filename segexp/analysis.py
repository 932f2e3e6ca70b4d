"""Learning-curve analysis: best epoch and overfitting figures from per-epoch metrics.

All epochs are 1-based, like the ``step`` of the per-epoch MLflow metrics.

Overfitting onset: with ``m`` the minimum validation loss (reached at ``best_epoch``) and the
threshold ``t = m + max(tolerance, relative_tolerance * |m|)``, the onset is the first epoch
``e >= best_epoch`` such that the validation loss of each of the ``patience`` epochs after ``e``
is above ``t`` (a NaN loss counts as above). Not defined (not reported) when no such epoch exists,
for example when training stopped too soon after the minimum.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

# Defaults of the ``analysis:`` config block.
ANALYSIS_DEFAULTS: dict[str, float] = {"tolerance": 0.0, "relative_tolerance": 0.02, "patience": 3}


def analysis_settings(analysis: Mapping[str, Any] | None = None) -> dict[str, float]:
    """The ``analysis:`` block with defaults filled in (unknown keys are ignored)."""
    settings = dict(ANALYSIS_DEFAULTS)
    for key in settings:
        if analysis is not None and analysis.get(key) is not None:
            settings[key] = float(analysis[key])
    return settings


def overfit_onset_epoch(
    val_loss: Sequence[float],
    *,
    tolerance: float = ANALYSIS_DEFAULTS["tolerance"],
    relative_tolerance: float = ANALYSIS_DEFAULTS["relative_tolerance"],
    patience: int = int(ANALYSIS_DEFAULTS["patience"]),
) -> int | None:
    """First epoch (1-based) after which val loss stays above its minimum ``patience`` epochs."""
    val = np.asarray(val_loss, dtype=float)
    if not val.size or not np.isfinite(val).any():
        return None
    patience = max(1, int(patience))
    best = int(np.nanargmin(val))
    minimum = float(val[best])
    threshold = minimum + max(float(tolerance), float(relative_tolerance) * abs(minimum))
    above = ~(val <= threshold)  # NaN counts as above
    for i in range(best, val.size - patience):
        if above[i + 1 : i + 1 + patience].all():
            return i + 1
    return None


def summarize_history(
    history: Mapping[str, Sequence[float]], analysis: Mapping[str, Any] | None = None
) -> dict[str, float]:
    """Summary metrics of one run's per-epoch history.

    ``analysis`` is the ``analysis:`` config block (``tolerance``, ``relative_tolerance``,
    ``patience``; see the module docstring); missing keys take ``ANALYSIS_DEFAULTS``.
    """
    settings = analysis_settings(analysis)
    summary: dict[str, float] = {}
    val = np.asarray(history.get("val_loss") or [], dtype=float)
    if not (val.size and np.isfinite(val).any()):
        return summary
    best = int(np.nanargmin(val))
    summary["epochs_trained"] = int(val.size)
    summary["best_epoch"] = best + 1
    summary["best_epoch_fraction"] = (best + 1) / val.size
    summary["best_val_loss"] = float(val[best])
    summary["final_val_loss"] = float(val[-1])
    summary["final_minus_best_val_loss"] = float(val[-1] - val[best])
    if val[best] != 0:
        summary["final_over_best_val_loss"] = float(val[-1] / val[best])
    onset = overfit_onset_epoch(
        val,
        tolerance=settings["tolerance"],
        relative_tolerance=settings["relative_tolerance"],
        patience=int(settings["patience"]),
    )
    summary["overfitting_detected"] = 0.0 if onset is None else 1.0
    if onset is not None:
        summary["overfit_onset_epoch"] = onset
    for key in ("val_accuracy", "val_mean_iou", "val_dice", "val_mae"):
        if history.get(key) and len(history[key]) > best:
            summary[f"{key}_at_best"] = float(history[key][best])
    train = history.get("loss")
    if train is not None and len(train) > best:
        summary["generalization_gap_at_best"] = float(val[best] - float(train[best]))
        summary["generalization_gap_final"] = float(val[-1] - float(train[-1]))
    return {k: v for k, v in summary.items() if not (isinstance(v, float) and math.isnan(v))}
