"""The resume checkpoint: a Keras callback saving every completed epoch, and its variables files.

Layout, in the run's output directory::

    checkpoints/resume/run.json          run id, tracking URI (password hidden), pid, host
    checkpoints/resume/config.yaml       the resolved config of the run (read back on resume)
    checkpoints/resume/state.json        last completed epoch, its variables file, the
                                         per-epoch history, timing and callback counters
    checkpoints/resume/epoch-NNNNN.npz   every model variable (weights, BatchNorm statistics,
                                         dropout seed generators) and optimizer variable
                                         (iterations, learning rate, moments) after epoch NNNNN

Each watched callback owns its state (:class:`Resumable`): the checkpoint saves what its
``state()`` hands over, with every epoch, and hands it back with ``restore()`` before ``model.fit``
starts; EarlyStopping's best weights (:class:`ResumableArrays`) go to ``early_stopping_best.npz``.

Order at the end of every epoch (:class:`ResumeCheckpoint` comes before ``EpochLogger`` in the
callback list, see segexp/train/fit.py):
1. the variables are written to a new ``epoch-NNNNN.npz``, then ``state.json`` is replaced
   atomically (``os.replace``; it also records the previous epoch's state) and weight files
   older than the previous epoch's are deleted: a crash at any moment leaves a ``state.json``
   that names a complete weights file, and a fall-back if that file is damaged later;
2. only then is the epoch logged to MLflow. A crash between 1 and 2 loses nothing: on resume
   :func:`segexp.track.history.log_missing_epochs` compares the checkpoint's history with the run's
   metric history and logs exactly the (metric, epoch) values the run lacks; training continues
   at the next epoch, so no epoch is ever logged twice.

An epoch-0 state is written right before the first epoch; the previous epoch's variables file is
kept, so a truncated newest file falls back to it. ``run.json`` and ``config.yaml``: see
segexp/train/resume.py.

Crash tests: ``SEGEXP_FAULT=<point>`` makes the process SIGKILL itself at that point
(:func:`fault_point`): ``run_created``, ``mid_epoch``, ``between_epochs``, ``test_evaluation``,
``model_logging``.
"""

from __future__ import annotations

import json
import math
import os
import signal
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import keras
import numpy as np

from segexp.errors import ConfigError, SegexpError
from segexp.train.resume_files import (
    BEST_WEIGHTS_FILE,
    STATE_FILE,
    resume_dir,
    savez_atomic,
    write_atomic,
)

if TYPE_CHECKING:
    from segexp.train.resume import Resume

FAULT_ENV = "SEGEXP_FAULT"


@runtime_checkable
class Resumable(Protocol):
    """A callback whose state survives a restart: it owns that state, the checkpoint only keeps it.

    ``state()``: a JSON-serialisable dict, saved with every epoch. ``restore(state)``: that dict
    back, on resume, before ``model.fit`` starts. A callback that resets itself in
    ``on_train_begin`` (Keras' do) applies the restored values again at the end of its own
    ``on_train_begin``, so they survive the reset whatever the order of the callbacks. Implemented
    by ``EpochTimer``, ``EpochLogger`` and segexp/resumable_callbacks.py.
    """

    def state(self) -> dict[str, Any]: ...

    def restore(self, state: dict[str, Any]) -> None: ...


@runtime_checkable
class ResumableArrays(Protocol):
    """A callback that also holds arrays in memory (EarlyStopping's best weights, at most one
    watched callback): ``arrays()`` (None: nothing to keep) is written with every epoch, and
    ``restore_arrays()`` takes it back on resume, under :class:`Resumable`'s rule."""

    def arrays(self) -> list[np.ndarray] | None: ...

    def restore_arrays(self, arrays: list[np.ndarray]) -> None: ...


def fault_point(name: str) -> None:
    """Crash tests: SIGKILL this process here when ``SEGEXP_FAULT`` names this point."""
    if os.environ.get(FAULT_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)


class NaNLossError(SegexpError):
    """Training produced a NaN or infinite loss (TerminateOnNaN stopped it)."""


def _optimizer_variables(model: keras.Model) -> list[Any]:
    opt = getattr(model, "optimizer", None)  # None or absent before compile()
    return list(opt.variables) if opt is not None and opt.built else []


def save_variables(model: keras.Model, path: Path) -> None:
    """Write every model variable (weights, BatchNorm statistics, dropout seed generators) and
    every optimizer variable (iterations, learning rate, moments) to ``path`` (``.npz``),
    atomically. A plain array per variable is several times faster than ``save_weights``."""
    arrays = {f"model_{i:05d}": np.asarray(v.numpy()) for i, v in enumerate(model.variables)}
    for i, v in enumerate(_optimizer_variables(model)):
        arrays[f"optimizer_{i:05d}"] = np.asarray(v.numpy())
    savez_atomic(path, arrays)


def _assign(variables: list[Any], values: list[np.ndarray], what: str, path: Path) -> None:
    shapes = [tuple(v.shape) for v in variables]
    saved = [tuple(a.shape) for a in values]
    if shapes != saved:
        raise ConfigError(
            f"resume: {path} holds {len(saved)} {what} variables that do not match the "
            f"{len(shapes)} of this config's model; the checkpoint belongs to another model"
        )
    for var, value in zip(variables, values, strict=True):
        var.assign(value.astype(var.dtype, copy=False))


def load_weights(model: keras.Model, resume: Resume) -> None:
    """Restore the model's variables (weights, BatchNorm statistics, dropout seed generators, so
    dropout draws the masks an uninterrupted run would) and the optimizer's (iterations, so the
    learning-rate schedule too, learning rate, moments) from the last completed epoch."""
    if not resume.state or not resume.state.get("weights"):
        return
    path = resume_dir(resume.output_dir) / resume.state["weights"]
    try:
        with np.load(path) as saved:
            parts = {
                prefix: [saved[k] for k in sorted(saved.files) if k.startswith(prefix)]
                for prefix in ("model_", "optimizer_")
            }
    except Exception as err:  # noqa: BLE001 - BadZipFile, EOFError, zlib errors: one line
        raise ConfigError(
            f"resume: {path} is unreadable ({type(err).__name__}: {err}); start a new run"
        ) from None
    _assign(list(model.variables), parts["model_"], "model", path)
    if parts["optimizer_"] and getattr(model, "optimizer", None) is not None:
        if not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
        _assign(_optimizer_variables(model), parts["optimizer_"], "optimizer", path)


class ResumeCheckpoint(keras.callbacks.Callback):
    """Saves the resume state at the end of every epoch (see the module docstring); a NaN or
    infinite loss raises ``NaNLossError`` before that epoch is saved or logged.

    ``watch``: the callbacks whose :class:`Resumable` state (and :class:`ResumableArrays`
    arrays) is saved with each epoch; given a ``state`` to resume from, the constructor hands it
    back to them. In ``state.json`` each one's state is keyed ``"<position in watch>:<class
    name>"``; callbacks without a state are skipped.
    """

    def __init__(
        self,
        output_dir: Path | str,
        run_id: str,
        *,
        watch: Iterable[keras.callbacks.Callback] = (),
        state: dict[str, Any] | None = None,
        stop_on_nan: bool = True,
    ) -> None:
        super().__init__()
        self.stop_on_nan = stop_on_nan
        self.folder = resume_dir(output_dir)
        self.run_id = run_id
        self.watch = list(watch)
        holders = [cb for cb in self.watch if isinstance(cb, ResumableArrays)]
        if len(holders) > 1:
            raise ValueError(f"ResumeCheckpoint: more than one callback holds arrays: {holders}")
        self._arrays_holder = holders[0] if holders else None
        self.restored = state
        state = state or {}
        self.epoch = int(state.get("epoch", 0))
        self._saved = {k: v for k, v in state.items() if k not in ("previous", "redo_through")}
        self.history: dict[str, list[float]] = {
            k: [float(v) for v in vals] for k, vals in state.get("history", {}).items()
        }
        self._current = self.epoch
        if state:
            self._hand_back(state)

    # -- Keras hooks -------------------------------------------------------------------------
    def on_train_begin(self, logs: dict | None = None) -> None:
        if not self.restored:
            self.save()

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._current = epoch

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        if self._current >= 1 and batch == 1:
            fault_point("mid_epoch")
        self._check_loss((logs or {}).get("loss"), self._current)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        """Checkpoint a finished epoch (its metrics, variables and the watched state)."""
        logs = dict(logs or {})
        self._check_loss(logs.get("loss", 0.0), epoch)
        for key, value in logs.items():
            values = self.history.setdefault(key, [])
            values.extend([math.nan] * (epoch - len(values)))
            values[epoch:] = [_float(value)]
        self.epoch = epoch + 1
        self.save()
        fault_point("between_epochs")

    def _check_loss(self, loss: Any, epoch: int) -> None:
        if self.stop_on_nan and loss is not None and not _finite(loss):
            raise NaNLossError(f"NaN loss at epoch {epoch + 1}")

    # -- state ---------------------------------------------------------------------------------
    def _key(self, i: int, cb: keras.callbacks.Callback) -> str:
        return f"{i}:{type(cb).__name__}"

    def callback_state(self) -> dict[str, dict[str, Any]]:
        """What each :class:`Resumable` watched callback hands over, by :meth:`_key`."""
        return {
            self._key(i, cb): cb.state()
            for i, cb in enumerate(self.watch)
            if isinstance(cb, Resumable)
        }

    def _hand_back(self, state: dict[str, Any]) -> None:
        """Give each watched callback its saved state (and arrays) back."""
        saved = state.get("callbacks", {})
        for i, cb in enumerate(self.watch):
            key = self._key(i, cb)
            if isinstance(cb, Resumable) and key in saved:
                cb.restore(saved[key])
        path = self.folder / BEST_WEIGHTS_FILE
        if self._arrays_holder is not None and path.is_file():
            with np.load(path) as arrays:
                self._arrays_holder.restore_arrays(
                    [arrays[f"w{i}"] for i in range(len(arrays.files))]
                )

    def save(self) -> Path:
        """Write model + optimizer variables, then ``state.json`` (atomically), then clean up."""
        self.folder.mkdir(parents=True, exist_ok=True)
        name = f"epoch-{self.epoch:05d}.npz"
        save_variables(self.model, self.folder / name)
        arrays = self._arrays_holder.arrays() if self._arrays_holder is not None else None
        if arrays is not None:
            savez_atomic(
                self.folder / BEST_WEIGHTS_FILE, {f"w{i}": a for i, a in enumerate(arrays)}
            )
        state = {
            "run_id": self.run_id,
            "epoch": self.epoch,
            "weights": name,
            "history": self.history,
            "callbacks": self.callback_state(),
            "pid": os.getpid(),
            "saved": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
        previous = self._saved if self._saved.get("weights") not in (None, name) else None
        write_atomic(
            self.folder / STATE_FILE, json.dumps({**state, "previous": previous}, indent=1)
        )
        keep = {name, (previous or {}).get("weights")}
        for old in self.folder.glob("epoch-*.npz"):
            if old.name not in keep:
                old.unlink(missing_ok=True)
        self._saved = state
        return self.folder / name


def _float(value: Any) -> float:
    try:
        return float(np.asarray(value))
    except (TypeError, ValueError):
        return math.nan


def _finite(value: Any) -> bool:
    return math.isfinite(_float(value))
