"""Learning-curve analysis: best epoch and overfitting figures from per-epoch metrics."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np


def summarize_history(history: Mapping[str, Sequence[float]]) -> dict[str, float]:
    """Summary metrics of one run's per-epoch history (epochs are 1-based)."""
    summary: dict[str, float] = {}
    val = np.asarray(history.get("val_loss") or [], dtype=float)
    if val.size and np.isfinite(val).any():
        best = int(np.nanargmin(val))
        summary["best_epoch"] = best + 1
        summary["best_val_loss"] = float(val[best])
        summary["final_minus_best_val_loss"] = float(val[-1] - val[best])
        for key in ("val_accuracy", "val_mean_iou", "val_dice"):
            if history.get(key):
                summary[f"{key}_at_best"] = float(history[key][best])
        if history.get("loss"):
            summary["generalization_gap_at_best"] = float(val[best] - history["loss"][best])
    return summary
