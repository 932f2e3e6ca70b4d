"""Learning-curve analysis: best epoch, overfitting and early-stopping figures of one run.

All epochs are 1-based, like the ``step`` of the per-epoch MLflow metrics.

With ``m`` the minimum validation loss (reached at ``best_epoch``) and the threshold
``t = m + max(tolerance, relative_tolerance * |m|)``:

- ``overfit_onset_epoch``: the first epoch ``e > best_epoch`` that starts ``patience``
  consecutive epochs with validation loss above ``t`` (a NaN loss counts as above) while the
  training loss keeps falling (below its value at the epoch before ``e`` at each of them).
  Always after ``best_epoch``; not reported when no such stretch exists.
- ``overfitting_detected``: 1 when an onset exists, else 0.
- ``epochs_after_best``: epochs trained after the best one. Fewer than ``patience`` means the run
  stopped before a rise could be seen: ``segexp-compare`` calls best-epoch and overfitting checks
  on such a run inconclusive.
- ``stopped_while_improving``: 1 when early stopping ended the run (fewer epochs than
  ``trainer.epochs`` with ``trainer.early_stopping.enabled``) while a tracked quality metric
  (``val_mean_iou``, ``val_dice``) reached a better value after the monitored best epoch than at
  it (by more than ``quality_tolerance``); 0 otherwise; absent when the run has none of them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import Any

import numpy as np

from segexp.config.schema.run import AnalysisConf

# Higher-is-better validation metrics watched by ``stopped_while_improving``.
QUALITY_METRICS = ("val_mean_iou", "val_dice")
# Curve metrics whose value depends on seeing the curve past its minimum.
CURVE_METRICS = frozenset(
    {
        "best_epoch",
        "best_epoch_fraction",
        "overfit_onset_epoch",
        "overfitting_detected",
        "final_minus_best_val_loss",
        "final_over_best_val_loss",
    }
)


def analysis_settings(analysis: Mapping[str, Any] | None = None) -> dict[str, float]:
    """The ``analysis:`` block with its schema's defaults filled in (unknown keys are ignored)."""
    settings: dict[str, float] = asdict(AnalysisConf())
    for key in settings:
        if analysis is not None and analysis.get(key) is not None:
            settings[key] = float(analysis[key])
    return settings


def overfit_onset_epoch(
    val_loss: Sequence[float],
    train_loss: Sequence[float] | None = None,
    *,
    tolerance: float = AnalysisConf.tolerance,
    relative_tolerance: float = AnalysisConf.relative_tolerance,
    patience: int = AnalysisConf.patience,
) -> int | None:
    """First epoch (1-based, after the best) of ``patience`` epochs of validation loss above its
    minimum plus tolerance while the training loss keeps falling (see the module docstring).

    Without ``train_loss`` only the validation loss is looked at."""
    val = np.asarray(val_loss, dtype=float)
    if not val.size or not np.isfinite(val).any():
        return None
    patience = max(1, int(patience))
    train = None if train_loss is None else np.asarray(train_loss, dtype=float)
    best = int(np.nanargmin(val))
    minimum = float(val[best])
    threshold = minimum + max(float(tolerance), float(relative_tolerance) * abs(minimum))
    above = ~(val <= threshold)  # NaN counts as above
    for start in range(best + 1, val.size - patience + 1):  # 0-based first epoch of the stretch
        window = slice(start, start + patience)
        if not above[window].all():
            continue
        if train is not None:
            if train.size < start + patience:
                return None
            if not (train[window] < train[start - 1]).all():
                continue
        return start + 1
    return None


def stopped_while_improving(
    history: Mapping[str, Sequence[float]], best: int, tolerance: float = 0.0
) -> float | None:
    """1.0 when a quality metric was better after the 0-based ``best`` epoch than at it, else 0.0;
    None when the history has no quality metric."""
    found = False
    for key in QUALITY_METRICS:
        values = np.asarray(history.get(key) or [], dtype=float)
        if values.size <= best:
            continue
        found = True
        later = values[best + 1 :]
        if later.size and np.isfinite(later).any() and np.nanmax(later) > values[best] + tolerance:
            return 1.0
    return 0.0 if found else None


def stopped_early(trainer: Mapping[str, Any] | None, epochs_trained: int) -> bool:
    """Whether early stopping (enabled in ``trainer``) ended training before ``trainer.epochs``."""
    if not trainer:
        return False
    early = trainer.get("early_stopping") or {}
    epochs = trainer.get("epochs")
    return bool(early.get("enabled")) and epochs is not None and epochs_trained < int(epochs)


def summarize_history(
    history: Mapping[str, Sequence[float]],
    analysis: Mapping[str, Any] | None = None,
    trainer: Mapping[str, Any] | None = None,
) -> dict[str, float]:
    """Summary metrics of one run's per-epoch history.

    ``analysis`` is the ``analysis:`` config block (see the module docstring; missing keys take
    the defaults of :class:`segexp.config.schema.run.AnalysisConf`); ``trainer`` the ``trainer:``
    block, for ``stopped_while_improving``.
    """
    settings = analysis_settings(analysis)
    summary: dict[str, float] = {}
    val = np.asarray(history.get("val_loss") or [], dtype=float)
    if not (val.size and np.isfinite(val).any()):
        return summary
    best = int(np.nanargmin(val))
    summary["epochs_trained"] = int(val.size)
    summary["best_epoch"] = best + 1
    summary["epochs_after_best"] = int(val.size - best - 1)
    summary["best_epoch_fraction"] = (best + 1) / val.size
    summary["best_val_loss"] = float(val[best])
    summary["final_val_loss"] = float(val[-1])
    summary["final_minus_best_val_loss"] = float(val[-1] - val[best])
    if val[best] != 0:
        summary["final_over_best_val_loss"] = float(val[-1] / val[best])
    train = history.get("loss")
    onset = overfit_onset_epoch(
        val,
        train,
        tolerance=settings["tolerance"],
        relative_tolerance=settings["relative_tolerance"],
        patience=int(settings["patience"]),
    )
    summary["overfitting_detected"] = 0.0 if onset is None else 1.0
    if onset is not None:
        summary["overfit_onset_epoch"] = onset
    improving = stopped_while_improving(history, best, settings["quality_tolerance"])
    if improving is not None:
        summary["stopped_while_improving"] = (
            improving if stopped_early(trainer, int(val.size)) else 0.0
        )
    for key in ("val_accuracy", "val_mean_iou", "val_dice", "val_mae"):
        if history.get(key) and len(history[key]) > best:
            summary[f"{key}_at_best"] = float(history[key][best])
            if key in QUALITY_METRICS:
                summary[f"{key}_max"] = float(np.nanmax(np.asarray(history[key], dtype=float)))
    if train is not None and len(train) > best:
        summary["generalization_gap_at_best"] = float(val[best] - float(train[best]))
        summary["generalization_gap_final"] = float(val[-1] - float(train[-1]))
    return {k: v for k, v in summary.items() if not (isinstance(v, float) and math.isnan(v))}
