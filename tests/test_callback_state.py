"""Each callback owns its resume state: the checkpoint saves what ``state()`` hands over and gives
it back with ``restore()``, which survives the callback's own reset in ``on_train_begin``."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

from segexp.callbacks import EarlyStopping, ModelCheckpoint, ReduceLROnPlateau, build_callbacks
from segexp.train.checkpoint import Resumable, ResumableArrays, ResumeCheckpoint
from segexp.train.epoch_logger import EpochLogger, EpochTimer
from segexp.train.resume_files import BEST_WEIGHTS_FILE, STATE_FILE, resume_dir

RUN_ID = "r" * 32
TRAINER = {"early_stopping": {"enabled": True, "patience": 5}}
OPTIMIZER = {"name": "adam", "schedule": {"name": "plateau"}}
# What each callback holds mid-run (values a reset in on_train_begin would lose).
COUNTERS = {
    ReduceLROnPlateau: {"wait": 1, "best": 0.5, "cooldown_counter": 2},
    EarlyStopping: {"wait": 2, "best": 0.4, "best_epoch": 1, "stopped_epoch": 0},
    ModelCheckpoint: {"best": 0.4},
}
# The "callbacks" of a state.json written before the callbacks owned their state (the Keras
# callbacks' counters read by the checkpoint; every watched callback keyed, stateless or not).
OLD_CALLBACKS = {
    "0:LearningRateLogger": {},
    "1:SaveAtEnd": {},
    "2:TerminateOnNaN": {},
    "3:ReduceLROnPlateau": {"wait": 1, "best": 0.5, "cooldown_counter": 2},
    "4:EarlyStopping": {"wait": 2, "best": 0.4, "best_epoch": 1, "stopped_epoch": 0},
    "5:ModelCheckpoint": {"best": 0.4},
    "6:EpochTimer": {"epoch_train_seconds": [2.0], "epoch_seconds": [3.0], "epoch_images": [8]},
    "7:EpochLogger": {"logging_seconds": 0.5},
}


def _model() -> keras.Model:
    return keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])


def _callbacks(tmp_path, model) -> list[keras.callbacks.Callback]:
    cbs = build_callbacks(TRAINER, OPTIMIZER, output_dir=tmp_path)
    cbs += [EpochTimer(batch_size=2), EpochLogger(None, RUN_ID)]
    for cb in cbs:
        cb.set_model(model)
    return cbs


def _counters(cb) -> dict:
    return {k: getattr(cb, k) for k in COUNTERS[type(cb)]}


def _best_weights(model) -> list[np.ndarray]:
    return [np.full(w.shape, 7.0, np.float32) for w in model.get_weights()]


def test_the_configured_callbacks_own_their_state(tmp_path):
    cbs = build_callbacks(TRAINER, OPTIMIZER, output_dir=tmp_path)
    owners = [type(cb).__name__ for cb in cbs if isinstance(cb, Resumable)]
    # Keras' class names: they key the state in state.json, as they always did.
    assert owners == ["ReduceLROnPlateau", "EarlyStopping", "ModelCheckpoint"]
    assert [type(cb).__name__ for cb in cbs if isinstance(cb, ResumableArrays)] == ["EarlyStopping"]
    assert all(isinstance(cb, keras.callbacks.Callback) for cb in cbs)


@pytest.mark.parametrize("restore_first", [True, False], ids=["restore-then-begin", "begin-first"])
def test_restored_counters_survive_the_callbacks_own_reset(restore_first):
    model = _model()
    for cls, counters in COUNTERS.items():
        kwargs = {"filepath": "best.keras"} if cls is ModelCheckpoint else {}
        cb = cls(**kwargs)
        cb.set_model(model)
        if restore_first:
            cb.restore(counters)
            cb.on_train_begin()
        else:
            cb.on_train_begin()
            cb.restore(counters)
        assert _counters(cb) == counters, cls.__name__
        if cls is not ModelCheckpoint:  # Keras keeps its best across fits, resets the others
            cb.on_train_begin()  # a later fit starts afresh, as with Keras' own callbacks
            assert _counters(cb) != counters, cls.__name__


@pytest.mark.parametrize("checkpoint_first", [True, False], ids=["checkpoint-first", "last"])
def test_a_resume_restores_every_callback_whatever_the_list_order(tmp_path, checkpoint_first):
    model = _model()
    cbs = _callbacks(tmp_path, model)
    for cb in cbs:
        cb.on_train_begin()
        if type(cb) in COUNTERS:
            for name, value in COUNTERS[type(cb)].items():
                setattr(cb, name, value)
    es = next(cb for cb in cbs if isinstance(cb, EarlyStopping))
    es.best_weights = _best_weights(model)
    cbs[-2].epoch_train_seconds, cbs[-2].epoch_seconds, cbs[-2].epoch_images = [2.0], [3.0], [8]
    cbs[-1].logging_seconds = 0.5
    ckpt = ResumeCheckpoint(tmp_path, RUN_ID, watch=cbs)
    ckpt.set_model(model)
    ckpt.on_epoch_end(0, {"loss": 1.0, "val_loss": 0.4})
    state = json.loads((resume_dir(tmp_path) / STATE_FILE).read_text())
    assert state["callbacks"] == {k: v for k, v in OLD_CALLBACKS.items() if v}

    fresh = _callbacks(tmp_path, model)
    restored = ResumeCheckpoint(tmp_path, RUN_ID, watch=fresh, state=state)
    restored.set_model(model)
    order = [restored, *fresh] if checkpoint_first else [*fresh, restored]
    keras.callbacks.CallbackList(order, model=model).on_train_begin()
    for cb in fresh:
        if type(cb) in COUNTERS:
            assert _counters(cb) == COUNTERS[type(cb)], type(cb).__name__
    es = next(cb for cb in fresh if isinstance(cb, EarlyStopping))
    for got, want in zip(es.best_weights, _best_weights(model), strict=True):
        np.testing.assert_array_equal(got, want)
    assert fresh[-2].state() == OLD_CALLBACKS["6:EpochTimer"]
    assert fresh[-1].logging_seconds == 0.5


def test_a_checkpoint_written_before_the_callbacks_owned_their_state_still_resumes(tmp_path):
    model = _model()
    folder = resume_dir(tmp_path)
    folder.mkdir(parents=True)
    np.savez(folder / BEST_WEIGHTS_FILE, **{f"w{i}": w for i, w in enumerate(_best_weights(model))})
    state = {"run_id": RUN_ID, "epoch": 1, "weights": "epoch-00001.npz", "history": {}}
    state["callbacks"] = OLD_CALLBACKS

    fresh = _callbacks(tmp_path, model)
    ResumeCheckpoint(tmp_path, RUN_ID, watch=fresh, state=state)
    keras.callbacks.CallbackList(fresh, model=model).on_train_begin()
    for cb in fresh:
        if type(cb) in COUNTERS:
            assert _counters(cb) == COUNTERS[type(cb)], type(cb).__name__
    es = next(cb for cb in fresh if isinstance(cb, EarlyStopping))
    assert len(es.best_weights) == len(model.get_weights())
    for got, want in zip(es.best_weights, _best_weights(model), strict=True):
        np.testing.assert_array_equal(got, want)
    assert fresh[-2].state() == OLD_CALLBACKS["6:EpochTimer"]
    assert fresh[-1].logging_seconds == 0.5
