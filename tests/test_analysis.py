"""Overfitting analysis on hand-made learning curves (exact epochs, 1-based)."""

from __future__ import annotations

import math

import pytest

from segexp.analysis import analysis_settings, overfit_onset_epoch, summarize_history


def test_onset_is_the_best_epoch_when_val_loss_rises_right_after_it():
    val = [1.0, 0.8, 0.6, 0.5, 0.55, 0.6, 0.7, 0.8]
    assert overfit_onset_epoch(val, tolerance=0.0, relative_tolerance=0.02, patience=3) == 4


def test_onset_waits_for_a_value_within_tolerance_of_the_minimum():
    # epoch 4 (0.505) is within 0.01 of the minimum (0.5 at epoch 3): not yet overfitting
    val = [1.0, 0.7, 0.5, 0.505, 0.6, 0.65, 0.7, 0.72]
    assert overfit_onset_epoch(val, tolerance=0.01, relative_tolerance=0.0, patience=3) == 4
    # a dip back to the minimum later restarts the count
    val = [1.0, 0.5, 0.7, 0.8, 0.505, 0.9, 0.95, 1.0]
    assert overfit_onset_epoch(val, tolerance=0.01, relative_tolerance=0.0, patience=3) == 5
    # a larger tolerance swallows the small rises
    assert overfit_onset_epoch(val, tolerance=0.45, relative_tolerance=0.0, patience=3) is None


def test_no_onset_without_enough_epochs_after_the_minimum_or_when_still_improving():
    val = [1.0, 0.7, 0.5, 0.6, 0.65]
    assert overfit_onset_epoch(val, tolerance=0.0, relative_tolerance=0.0, patience=3) is None
    assert overfit_onset_epoch(val, tolerance=0.0, relative_tolerance=0.0, patience=2) == 3
    assert overfit_onset_epoch([1.0, 0.9, 0.8, 0.7, 0.6], patience=1) is None
    assert overfit_onset_epoch([], patience=1) is None


def test_nan_losses_count_as_above_the_threshold():
    assert overfit_onset_epoch([1.0, 0.5, math.nan, math.nan, math.nan], patience=3) == 2


def test_summarize_history_reports_best_final_gap_and_onset():
    history = {
        "loss": [0.9, 0.6, 0.4, 0.3, 0.2, 0.1],
        "val_loss": [1.0, 0.7, 0.5, 0.6, 0.65, 0.8],
        "val_accuracy": [0.5, 0.6, 0.8, 0.79, 0.78, 0.7],
    }
    s = summarize_history(history, {"tolerance": 0.0, "relative_tolerance": 0.0, "patience": 2})
    assert s["best_epoch"] == 3
    assert s["epochs_trained"] == 6
    assert s["best_epoch_fraction"] == pytest.approx(0.5)
    assert s["best_val_loss"] == pytest.approx(0.5)
    assert s["final_minus_best_val_loss"] == pytest.approx(0.3)
    assert s["final_over_best_val_loss"] == pytest.approx(1.6)
    assert s["overfit_onset_epoch"] == 3
    assert s["overfitting_detected"] == 1.0
    assert s["generalization_gap_at_best"] == pytest.approx(0.1)
    assert s["generalization_gap_final"] == pytest.approx(0.7)
    assert s["val_accuracy_at_best"] == pytest.approx(0.8)


def test_summarize_history_without_overfitting_and_defaults():
    s = summarize_history({"loss": [1.0, 0.5], "val_loss": [1.1, 0.6]})
    assert s["overfitting_detected"] == 0.0
    assert "overfit_onset_epoch" not in s
    assert summarize_history({"loss": [1.0]}) == {}
    assert analysis_settings(None)["patience"] == 3
    assert analysis_settings({"patience": 5, "other": 1})["patience"] == 5.0
