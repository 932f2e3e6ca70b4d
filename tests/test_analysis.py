"""Overfitting analysis on hand-made learning curves (exact epochs, 1-based)."""

from __future__ import annotations

import math

import pytest

from segexp.analysis import analysis_settings, overfit_onset_epoch, summarize_history

FALLING = [1.0, 0.8, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1]  # a training loss that keeps falling


def test_onset_is_the_first_epoch_of_the_rise_not_the_best_epoch():
    # minimum 0.5 at epoch 4; epochs 5, 6, 7 are all above 0.5 * 1.02 while training loss falls
    val = [1.0, 0.8, 0.6, 0.5, 0.55, 0.6, 0.7, 0.8]
    assert overfit_onset_epoch(val, FALLING, relative_tolerance=0.02, patience=3) == 5
    s = summarize_history({"val_loss": val, "loss": FALLING})
    assert (s["best_epoch"], s["overfit_onset_epoch"], s["overfitting_detected"]) == (4, 5, 1.0)


def test_no_overfitting_when_training_loss_rises_too():
    # both curves rise after epoch 4: the model diverges, it does not overfit
    val = [1.0, 0.8, 0.6, 0.5, 0.55, 0.6, 0.7, 0.8]
    train = [1.0, 0.8, 0.6, 0.5, 0.52, 0.55, 0.6, 0.7]
    assert overfit_onset_epoch(val, train, patience=3) is None
    assert summarize_history({"val_loss": val, "loss": train})["overfitting_detected"] == 0.0
    # training loss rising in one epoch of the stretch only moves the onset later
    train = [1.0, 0.8, 0.6, 0.5, 0.52, 0.45, 0.4, 0.35]
    val = [1.0, 0.8, 0.6, 0.5, 0.55, 0.6, 0.7, 0.8, 0.9]
    assert overfit_onset_epoch(val, [*train, 0.3], relative_tolerance=0.0, patience=3) == 6


def test_onset_waits_for_a_value_within_tolerance_of_the_minimum():
    # epoch 4 (0.505) is within 0.01 of the minimum (0.5 at epoch 3): the rise starts at epoch 5
    val = [1.0, 0.7, 0.5, 0.505, 0.6, 0.65, 0.7, 0.72]
    assert overfit_onset_epoch(val, tolerance=0.01, relative_tolerance=0.0, patience=3) == 5
    # a dip back to the minimum (epoch 5) restarts the count: epochs 6-8 are the first stretch
    val = [1.0, 0.5, 0.7, 0.8, 0.505, 0.9, 0.95, 1.0]
    assert overfit_onset_epoch(val, tolerance=0.01, relative_tolerance=0.0, patience=3) == 6
    assert overfit_onset_epoch(val, tolerance=0.45, relative_tolerance=0.0, patience=3) is None


def test_no_onset_without_enough_epochs_after_the_minimum_or_when_still_improving():
    val = [1.0, 0.7, 0.5, 0.6, 0.65]
    assert overfit_onset_epoch(val, tolerance=0.0, relative_tolerance=0.0, patience=3) is None
    assert overfit_onset_epoch(val, tolerance=0.0, relative_tolerance=0.0, patience=2) == 4
    assert overfit_onset_epoch([1.0, 0.9, 0.8, 0.7, 0.6], patience=1) is None
    assert overfit_onset_epoch([], patience=1) is None


def test_nan_losses_count_as_above_the_threshold():
    assert overfit_onset_epoch([1.0, 0.5, math.nan, math.nan, math.nan], patience=3) == 3


def test_summarize_history_reports_best_final_gap_and_onset():
    history = {
        "loss": [0.9, 0.6, 0.4, 0.3, 0.2, 0.1],
        "val_loss": [1.0, 0.7, 0.5, 0.6, 0.65, 0.8],
        "val_accuracy": [0.5, 0.6, 0.8, 0.79, 0.78, 0.7],
    }
    s = summarize_history(history, {"tolerance": 0.0, "relative_tolerance": 0.0, "patience": 2})
    assert s["best_epoch"] == 3
    assert s["epochs_trained"] == 6
    assert s["epochs_after_best"] == 3
    assert s["best_epoch_fraction"] == pytest.approx(0.5)
    assert s["best_val_loss"] == pytest.approx(0.5)
    assert s["final_minus_best_val_loss"] == pytest.approx(0.3)
    assert s["final_over_best_val_loss"] == pytest.approx(1.6)
    assert s["overfit_onset_epoch"] == 4
    assert s["overfitting_detected"] == 1.0
    assert s["generalization_gap_at_best"] == pytest.approx(0.1)
    assert s["generalization_gap_final"] == pytest.approx(0.7)
    assert s["val_accuracy_at_best"] == pytest.approx(0.8)
    assert "stopped_while_improving" not in s  # no val mean IoU or Dice to watch


def test_summarize_history_without_overfitting_and_defaults():
    s = summarize_history({"loss": [1.0, 0.5], "val_loss": [1.1, 0.6]})
    assert s["overfitting_detected"] == 0.0
    assert s["epochs_after_best"] == 0
    assert "overfit_onset_epoch" not in s
    assert summarize_history({"loss": [1.0]}) == {}
    assert analysis_settings(None)["patience"] == 3
    assert analysis_settings({"patience": 5, "other": 1})["patience"] == 5.0


# The DSB 2018 nuclei protocol: EarlyStopping(patience 2) on val_loss stopped at epoch 4 while
# val nucleus IoU still rose (0.45, 0.61, 0.64, 0.64).
DSB = {
    "loss": [0.6, 0.4, 0.3, 0.25],
    "val_loss": [0.5, 0.4, 0.41, 0.42],
    "val_mean_iou": [0.45, 0.61, 0.64, 0.64],
}
EARLY = {"epochs": 20, "early_stopping": {"enabled": True}}


def test_stopped_while_improving_when_early_stopping_cut_a_rising_iou():
    s = summarize_history(DSB, trainer=EARLY)
    assert s["best_epoch"] == 2
    assert s["stopped_while_improving"] == 1.0
    assert s["val_mean_iou_at_best"] == pytest.approx(0.61)
    assert s["val_mean_iou_max"] == pytest.approx(0.64)
    # a rise smaller than the quality tolerance does not count
    tolerant = summarize_history(DSB, {"quality_tolerance": 0.05}, trainer=EARLY)
    assert tolerant["stopped_while_improving"] == 0.0


def test_not_stopped_while_improving_when_iou_fell_or_training_ran_its_course():
    falling = {**DSB, "val_mean_iou": [0.45, 0.61, 0.6, 0.58]}
    assert summarize_history(falling, trainer=EARLY)["stopped_while_improving"] == 0.0
    full = {"epochs": 4, "early_stopping": {"enabled": True}}
    assert summarize_history(DSB, trainer=full)["stopped_while_improving"] == 0.0
    off = {"epochs": 20, "early_stopping": {"enabled": False}}
    assert summarize_history(DSB, trainer=off)["stopped_while_improving"] == 0.0
    dice = {"val_loss": DSB["val_loss"], "val_dice": [0.5, 0.6, 0.7, 0.7]}
    assert summarize_history(dice, trainer=EARLY)["stopped_while_improving"] == 1.0
