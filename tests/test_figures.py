"""Figures explain themselves: one class palette, labelled panels, curve conventions, run
names of sweep children, the sweep parent's headline metrics, segexp's experiment tags."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from segexp import palette, plots, preview
from segexp.track.names import short_names
from segexp.track.sweep_summary import headline_metrics


def test_one_palette_for_masks_and_preview_overlays():
    colours = palette.class_colours(12)
    assert colours.shape == (12, 3) and colours.dtype == np.uint8
    assert colours[0].tolist() == [0, 0, 0]
    assert len({tuple(c) for c in colours}) == 12  # every class its own colour
    mask = np.array([[0, 1, 2], [255, 1, 0]])
    rgb = palette.colorize(mask, 3, ignore_value=255)
    assert rgb[0, 1].tolist() == colours[1].tolist() and rgb[0, 2].tolist() == colours[2].tolist()
    assert rgb[1, 0].tolist() == [255, 255, 255]
    rgba = preview.overlay(mask, 3, 255)
    # the preview shades class k with the same colour the panels draw it in
    assert np.allclose(rgba[0, 1, :3], colours[1] / 255.0) and rgba[0, 1, 3] > 0
    assert rgba[0, 0, 3] == 0 and rgba[1, 0].tolist() == pytest.approx([1, 1, 1, 0.85])


def test_prediction_panel_labels_columns_and_epoch():
    images = np.zeros((2, 16, 16, 1), np.float32)
    targets = np.zeros((2, 16, 16, 1), np.int64)
    targets[:, 4:12, 4:12] = 1
    preds = np.zeros((2, 16, 16), np.int64)
    preds[:, 2:8, 2:8] = 2
    kw = {"class_names": ["bg", "cell", "edge"], "epoch": 6, "title": "batchnorm=true seed=2"}
    fig = plots.prediction_figure(images, targets, preds, **kw)
    (ax,) = fig.axes
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert labels == ["input", "ground truth", "prediction (epoch 6)"]
    assert ax.xaxis.get_ticks_position() == "top"
    # over each column's centre: 16 px columns, 2 px gaps, column k spans pixels 18k..18k+15
    assert list(ax.get_xticks()) == pytest.approx([7.5, 25.5, 43.5])
    assert fig._suptitle.get_text() == "batchnorm=true seed=2\nvalidation samples (epoch 6)"
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == ["bg", "cell", "edge"]
    panel = plots.prediction_panel(images, targets, preds, **kw)
    pixels = {tuple(p) for p in panel.reshape(-1, 3)}
    colours = palette.class_colours(3)
    assert tuple(colours[1]) in pixels and tuple(colours[2]) in pixels


@pytest.mark.parametrize(
    ("values", "log"),
    [
        ([13.0, 0.3, 0.25, 0.2], True),  # one epoch-1 spike beside the rest
        ([0.9, 0.5, 0.4], False),
        ([13.0, 0.0, 0.2], False),  # zero: no log axis
        ([float("nan"), 40.0, 1.0], True),
        ([5.0], False),
    ],
)
def test_log_scale_only_for_positive_curves_spanning_orders_of_magnitude(values, log):
    assert plots.needs_log_scale(values) is log


def test_learning_curves_conventions():
    history = {
        "loss": [9.0, 0.6, 0.5, 0.4],
        "val_loss": [13.0, 0.7, 0.55, 0.6],
        "accuracy": [0.5, 0.8, 0.85, 0.9],
        "val_accuracy": [0.5, 0.78, 0.82, 0.81],
    }
    fig = plots.learning_curves(history, "accuracy", title="dropout=0.3: unet_small on synthetic")
    fig.canvas.draw()
    loss_ax, acc_ax = fig.axes
    assert loss_ax.get_yscale() == "log" and loss_ax.get_ylabel() == "loss (log scale)"
    assert acc_ax.get_yscale() == "linear"
    for ax in (loss_ax, acc_ax):
        lo, hi = ax.get_xlim()
        ticks = [t for t in ax.get_xticks() if lo <= t <= hi]
        assert ticks and all(float(t).is_integer() for t in ticks)
        styles = {line.get_label(): line.get_linestyle() for line in ax.get_lines()}
        assert styles["train (dashed)"] == "--" and styles["validation (solid)"] == "-"
        legend = [t.get_text() for t in ax.get_legend().get_texts()]
        assert "train (dashed)" in legend and "validation (solid)" in legend
    assert "best epoch 3" in [t.get_text() for t in loss_ax.get_legend().get_texts()]
    assert fig._suptitle.get_text() == "dropout=0.3: unet_small on synthetic"


def test_run_title_names_the_run_and_what_it_trains():
    assert plots.run_title("batchnorm=true seed=2", "unet_small", "synthetic") == (
        "batchnorm=true seed=2: unet_small on synthetic"
    )
    assert plots.run_title("unet_small-synthetic", "unet_small", "synthetic") == (
        "unet_small on synthetic"
    )


@pytest.mark.parametrize(
    ("overrides", "names"),
    [
        (["model.batchnorm=true", "seed=2"], ["batchnorm=true", "seed=2"]),
        (["+optimizer.schedule.warmup=3"], ["warmup=3"]),
        (
            ["model.dropout=0.1", "optimizer.dropout=0.2"],
            ["model.dropout=0.1", "optimizer.dropout=0.2"],
        ),
        (["dropout=1", "model.dropout=2"], ["dropout=1", "model.dropout=2"]),
        (["augmentation=flip", "~model.extra"], ["augmentation=flip", "~model.extra"]),
        (["optimizer.learning_rate=0.0012345678901"], ["learning_rate=0.001235"]),
        (["dataset.image_size=[32,32]", "seed=12345678"], ["image_size=[32,32]", "seed=12345678"]),
    ],
)
def test_short_names_keep_keys_distinct(overrides, names):
    assert short_names(overrides) == names


def _run(status, **metrics):
    return SimpleNamespace(
        info=SimpleNamespace(status=status), data=SimpleNamespace(metrics=metrics)
    )


def test_headline_metrics_pick_the_best_finished_child():
    children = [
        _run("FINISHED", best_val_loss=0.40, val_mean_iou_at_best=0.61),
        _run("FINISHED", best_val_loss=0.35, val_mean_iou_at_best=0.58),
        _run("FINISHED", best_val_loss=math.nan),
        _run("FAILED", best_val_loss=0.01, val_mean_iou_at_best=0.99),
    ]
    assert headline_metrics(children, "best_val_loss", "minimize") == {
        "sweep_jobs_finished": 3.0,
        "sweep_best_val_loss": 0.35,
    }
    assert headline_metrics(children, "val_mean_iou_at_best", "maximize") == {
        "sweep_jobs_finished": 3.0,
        "sweep_best_val_mean_iou_at_best": 0.61,
    }


def test_experiments_carry_the_model_training_kind(tmp_path):
    from mlflow import MlflowClient

    from segexp import track

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/m.db")
    new = track.get_or_create_experiment(client, "fresh")
    assert client.get_experiment(new).tags["mlflow.experimentKind"] == "custom_model_development"
    assert track.get_or_create_experiment(client, "fresh") == new
    old = client.create_experiment("older")  # made before segexp tagged experiments
    assert track.get_or_create_experiment(client, "older") == old
    assert client.get_experiment(old).tags["mlflow.experimentKind"] == "custom_model_development"
    mine = client.create_experiment("mine", tags={"mlflow.experimentKind": "genai_development"})
    track.get_or_create_experiment(client, "mine")
    assert client.get_experiment(mine).tags["mlflow.experimentKind"] == "genai_development"


def test_long_titles_wrap_at_commas_and_spaces():
    name = ",".join(f"trainer.key_{i}={i}" for i in range(12))  # 12 overrides, 191 characters
    text = plots.wrap_title(name, width=80)
    lines = text.split("\n")
    assert len(lines) == 3 and all(len(line) <= 80 for line in lines)
    assert "".join(lines) == name  # nothing lost, breaks only after commas
    short = plots.wrap_title(name, width=40, max_lines=2).split("\n")
    assert len(short) == 2 and short[1].endswith("...") and len(short[1]) <= 40
