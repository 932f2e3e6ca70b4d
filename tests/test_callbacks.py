"""Callbacks: order, modes, lr logging, plateau reduction, early stopping, checkpoints."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from segexp.callbacks import (
    LearningRateLogger,
    SaveAtEnd,
    best_epoch,
    build_callbacks,
    checkpoint_paths,
    load_evaluated_weights,
    resolve_mode,
)
from segexp.errors import ConfigError
from segexp.losses import build_loss
from segexp.metrics import build_metrics
from segexp.optim import build_optimizer


def tiny_model_and_data():
    rng = np.random.default_rng(0)
    x = rng.random((8, 8, 8, 1)).astype(np.float32)
    y = (x > 0.5).astype(np.int32)
    inputs = keras.Input((8, 8, 1))
    outputs = keras.layers.Conv2D(1, 1, activation="sigmoid")(inputs)
    model = keras.Model(inputs, outputs)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(4)
    return model, ds


def compile_model(model, opt_cfg, epochs):
    model.compile(
        optimizer=build_optimizer(opt_cfg, steps_per_epoch=2, epochs=epochs),
        loss=build_loss({"name": "bce"}, head="sigmoid", num_classes=2, ignore_value=None),
        metrics=build_metrics(
            head="sigmoid", num_classes=2, class_names=["bg", "fg"], ignore_value=None
        ),
    )


def test_defaults_and_order(tmp_path):
    cbs = build_callbacks({}, {"name": "adam"}, output_dir=tmp_path)
    assert isinstance(cbs[0], LearningRateLogger)
    assert [type(c).__name__ for c in cbs] == [
        "LearningRateLogger",
        "SaveAtEnd",
        "TerminateOnNaN",
        "ModelCheckpoint",
    ]
    assert cbs[3].filepath.endswith("checkpoints/best.keras") and cbs[3].save_best_only
    assert cbs[1].filepath.endswith("checkpoints/last.keras") and isinstance(cbs[1], SaveAtEnd)
    cbs = build_callbacks(
        {
            "terminate_on_nan": False,
            "evaluate_weights": "last",
            "checkpoint": {"best": False, "last": True, "format": "weights"},
            "early_stopping": {"enabled": True, "monitor": "val_mean_iou", "patience": 2},
        },
        {"name": "adam", "schedule": {"name": "plateau", "monitor": "val_dice"}},
        output_dir=tmp_path,
    )
    names = [type(c).__name__ for c in cbs]
    assert names == ["LearningRateLogger", "SaveAtEnd", "ReduceLROnPlateau", "EarlyStopping"]
    assert cbs[2].mode == "max" and cbs[3].patience == 2
    assert cbs[3].mode == "max"  # higher mean IoU is better (Keras' auto would pick min)
    assert not cbs[3].restore_best_weights  # auto follows evaluate_weights=last
    assert cbs[1].filepath.endswith("last.weights.h5") and cbs[1].save_weights_only
    assert isinstance(cbs[1], SaveAtEnd)


def test_resolve_mode_and_bad_keys(tmp_path):
    assert resolve_mode("val_loss") == "min"
    assert resolve_mode("val_mean_iou") == "max"
    assert resolve_mode("val_accuracy", "min") == "min"
    with pytest.raises(ConfigError):
        build_callbacks({"early_stopping": {"patiense": 3}}, {"name": "adam"}, output_dir=tmp_path)
    with pytest.raises(ConfigError):
        checkpoint_paths({"checkpoint": {"format": "h5"}}, tmp_path)


def test_fit_logs_lr_and_plateau_reduces_it(tmp_path):
    model, ds = tiny_model_and_data()
    opt_cfg = {
        "name": "adam",
        "learning_rate": 0.01,
        "schedule": {
            "name": "plateau",
            "monitor": "loss",
            "factor": 0.5,
            "patience": 1,
            "min_delta": 100.0,
        },
    }
    compile_model(model, opt_cfg, epochs=3)
    cbs = build_callbacks({}, opt_cfg, output_dir=tmp_path)
    hist = model.fit(ds, validation_data=ds, epochs=3, callbacks=cbs, verbose=0)
    # lr is logged before the plateau callback reduces it at the end of epoch 2
    assert hist.history["lr"] == pytest.approx([0.01, 0.01, 0.005])
    assert {"mean_iou", "val_mean_iou", "dice", "iou_fg", "accuracy"} <= set(hist.history)
    best, last = tmp_path / "checkpoints" / "best.keras", tmp_path / "checkpoints" / "last.keras"
    assert best.is_file() and last.is_file()
    loaded = keras.saving.load_model(last)  # custom loss/metrics deserialize
    x = next(iter(ds))[0]
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-5)


def test_early_stopping_stops(tmp_path):
    model, ds = tiny_model_and_data()
    opt_cfg = {
        "name": "sgd",
        "learning_rate": 0.01,
        "schedule": {"name": "cosine", "warmup_epochs": 1},
    }
    compile_model(model, opt_cfg, epochs=10)
    trainer = {
        "early_stopping": {"enabled": True, "monitor": "loss", "patience": 1, "min_delta": 100.0},
        "checkpoint": {"best": False, "last": False},
        "evaluate_weights": "last",
    }
    cbs = build_callbacks(trainer, opt_cfg, output_dir=tmp_path)
    hist = model.fit(ds, epochs=10, callbacks=cbs, verbose=0)
    assert len(hist.history["loss"]) == 2
    # cosine warm-up: after one epoch (2 steps) the learning rate reached its peak
    assert hist.history["lr"][0] == pytest.approx(0.01)
    assert not (tmp_path / "checkpoints").exists()


def test_restore_best_weights_follows_evaluate_weights(tmp_path):
    def es(trainer):
        cbs = build_callbacks(trainer, {"name": "adam"}, output_dir=tmp_path)
        return next(c for c in cbs if isinstance(c, keras.callbacks.EarlyStopping))

    on = {"enabled": True}
    assert es({"early_stopping": on}).restore_best_weights  # default best -> auto true
    assert not es({"early_stopping": on, "evaluate_weights": "last"}).restore_best_weights
    explicit = {"enabled": True, "restore_best_weights": False}
    assert not es({"early_stopping": explicit}).restore_best_weights
    with pytest.raises(ConfigError, match="contradicts trainer.evaluate_weights=last"):
        es({"early_stopping": {**on, "restore_best_weights": True}, "evaluate_weights": "last"})
    with pytest.raises(ConfigError, match="trainer.evaluate_weights='final': expected best"):
        build_callbacks({"evaluate_weights": "final"}, {"name": "adam"}, output_dir=tmp_path)


def test_best_epoch_is_the_first_strict_best():
    history = {"val_loss": [0.9, 0.5, float("nan"), 0.5, 0.7], "acc": [0.1, 0.3, 0.3]}
    assert best_epoch(history, "val_loss", "min") == 2
    assert best_epoch(history, "acc", "max") == 2
    assert best_epoch(history, "missing", "min") is None


def test_best_weights_kept_without_best_checkpoint_and_loaded(tmp_path):
    """checkpoint.best=false still keeps the best epoch's weights for evaluate_weights=best;
    load_evaluated_weights puts exactly those weights back (epoch 2 of 4 is best here)."""
    model, ds = tiny_model_and_data()
    compile_model(model, {"name": "sgd", "learning_rate": 0.1}, epochs=4)
    trainer = {"checkpoint": {"best": False, "last": False, "monitor": "fake", "mode": "min"}}
    cbs = build_callbacks(trainer, {"name": "sgd"}, output_dir=tmp_path)
    snapshots = []

    class Fake(keras.callbacks.Callback):  # a monitor whose best epoch is known: epoch 2
        def on_epoch_end(self, epoch, logs=None):
            logs["fake"] = [3.0, 1.0, 2.0, 1.0][epoch]
            snapshots.append([w.copy() for w in self.model.get_weights()])

    hist = model.fit(ds, epochs=4, callbacks=[Fake(), *cbs], verbose=0)
    assert (tmp_path / "checkpoints" / "best.weights.h5").is_file()
    tags = load_evaluated_weights(model, trainer, tmp_path, hist.history)
    assert tags["segexp.evaluate_weights"] == "best" and tags["segexp.evaluated_epoch"] == "2"
    for got, want in zip(model.get_weights(), snapshots[1], strict=True):
        np.testing.assert_array_equal(got, want)
    assert not np.array_equal(snapshots[1][0], snapshots[3][0])  # best != last here
    last = load_evaluated_weights(model, {**trainer, "evaluate_weights": "last"}, tmp_path, {})
    assert last["segexp.evaluate_weights"] == "last"
