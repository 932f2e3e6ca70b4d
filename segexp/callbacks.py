"""Training callbacks built from the ``trainer`` config (and the optimizer's plateau schedule).

Trainer keys ``evaluate_weights``, ``early_stopping``, ``checkpoint`` and ``terminate_on_nan``
(optional here: a partial section takes the rest from the schema): their types and defaults are
in segexp/config/schema/run.py (``TrainerConf``, ``EarlyStoppingConf``, ``CheckpointConf``).

``evaluate_weights``: the weights behind the test evaluation and the logged model, ``best`` (the
epoch where ``checkpoint.monitor`` was best, read back from the best checkpoint, which therefore
survives a resume) or ``last``. With ``checkpoint.best: false`` and ``evaluate_weights: best`` the
best weights are still kept, as ``best.weights.h5``. ``restore_best_weights: auto`` follows
``evaluate_weights``; ``true`` with ``evaluate_weights: last`` is refused.

``mode: auto`` means ``min`` for monitors containing loss/error/mse/mae, else ``max`` (resolved
here, so it also works for monitors Keras cannot classify, e.g. ReduceLROnPlateau's ``auto``
would minimise ``val_mean_iou``). Checkpoints go to ``<output_dir>/checkpoints/``:
``best.keras`` / ``last.keras`` (``format: keras``, full model with optimizer state) or
``best.weights.h5`` / ``last.weights.h5`` (``format: weights``).

Order of the returned list matters: Keras calls ``on_epoch_end`` in list order with one shared
``logs`` dict, so ``LearningRateLogger`` comes first and writes ``logs["lr"]`` before the
checkpoint/early-stopping callbacks and any tracking callbacks appended after this list (Keras
appends History and the progress bar after user callbacks, so they see ``lr`` too). ``lr`` is the
learning rate at the end of the epoch, before a ReduceLROnPlateau reduction at that epoch.

``EarlyStopping``, ``ReduceLROnPlateau`` and ``ModelCheckpoint`` are Keras', each owning its
resume state (segexp/resumable_callbacks.py).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import keras

from segexp.config import to_dict, typed
from segexp.config.schema.run import CheckpointConf, EarlyStoppingConf, TrainerConf
from segexp.errors import ConfigError
from segexp.optim import current_learning_rate, schedule_config
from segexp.resumable_callbacks import EarlyStopping, ModelCheckpoint, ReduceLROnPlateau

EVALUATE_WEIGHTS = ("best", "last")
_MIN_WORDS = ("loss", "error", "mse", "mae")


def _to_dict(cfg: Any) -> dict[str, Any]:
    return to_dict(cfg, "trainer")


def _section(trainer: Mapping, key: str) -> dict[str, Any]:
    """``trainer.<key>`` (early_stopping, checkpoint) checked against its schema."""
    schema = {"early_stopping": EarlyStoppingConf, "checkpoint": CheckpointConf}[key]
    sub = trainer.get(key)
    if sub is not None and not isinstance(sub, Mapping):
        names = sorted(f.name for f in fields(schema))
        raise ConfigError(f"trainer.{key}={sub!r}: expected a mapping with keys {names}")
    return asdict(typed(sub, schema, f"trainer.{key}"))


def resolve_mode(monitor: str, mode: str = "auto") -> str:
    """``min``/``max`` for ``monitor``; ``auto``: min for loss/error-like names, else max."""
    mode = str(mode).lower()
    if mode in ("min", "max"):
        return mode
    if mode != "auto":
        raise ConfigError(f"mode={mode!r} (monitor {monitor!r}): expected auto, min or max")
    return "min" if any(w in monitor.lower() for w in _MIN_WORDS) else "max"


def evaluate_weights(trainer_cfg: Any) -> str:
    """``trainer.evaluate_weights``: ``best`` (default) or ``last``."""
    value = _to_dict(trainer_cfg).get("evaluate_weights")
    value = TrainerConf.evaluate_weights if value is None else str(value).lower()
    if value not in EVALUATE_WEIGHTS:
        raise ConfigError(f"trainer.evaluate_weights={value!r}: expected best or last")
    return value


def restore_best_weights(trainer_cfg: Any) -> bool:
    """EarlyStopping's ``restore_best_weights``, consistent with ``trainer.evaluate_weights``."""
    trainer = _to_dict(trainer_cfg)
    value = _section(trainer, "early_stopping")["restore_best_weights"]
    weights = evaluate_weights(trainer)
    if value is None or str(value).lower() == "auto":
        return weights == "best"
    if not isinstance(value, bool):
        raise ConfigError(
            f"trainer.early_stopping.restore_best_weights={value!r}: expected auto, true or false"
        )
    if value and weights == "last":
        raise ConfigError(
            "trainer.early_stopping.restore_best_weights=true contradicts "
            "trainer.evaluate_weights=last; use restore_best_weights=auto or evaluate_weights=best"
        )
    return value


def best_weights_path(trainer_cfg: Any, output_dir: Path | str) -> Path | None:
    """Where the best epoch's weights are kept: the best checkpoint, or ``best.weights.h5`` when
    ``checkpoint.best`` is off and ``evaluate_weights`` is ``best``; None otherwise."""
    paths = checkpoint_paths(trainer_cfg, output_dir)
    if "best" in paths:
        return paths["best"]
    if evaluate_weights(trainer_cfg) == "best":
        return Path(output_dir) / "checkpoints" / "best.weights.h5"
    return None


def best_epoch(history: Mapping[str, list[float]], monitor: str, mode: str) -> int | None:
    """1-based epoch a ``save_best_only`` checkpoint last wrote (first strict best), or None."""
    values = [float(v) for v in history.get(monitor, [])]
    best, epoch = None, None
    for i, v in enumerate(values):
        if math.isfinite(v) and (best is None or (v < best if mode == "min" else v > best)):
            best, epoch = v, i + 1
    return epoch


def load_evaluated_weights(
    model: keras.Model,
    trainer_cfg: Any,
    output_dir: Path | str,
    history: Mapping[str, list[float]],
) -> dict[str, str]:
    """Load the weights ``trainer.evaluate_weights`` names into ``model``; returns run tags.

    Tags: ``segexp.evaluate_weights`` (best | last, the weights actually in ``model``) and
    ``segexp.evaluated_epoch``; when no best weights were saved the last ones stay, and
    ``segexp.evaluate_weights_note`` says why.
    """
    trainer = _to_dict(trainer_cfg)
    epochs = len(next(iter(history.values()), []))
    last = {"segexp.evaluate_weights": "last", "segexp.evaluated_epoch": str(epochs)}
    if evaluate_weights(trainer) == "last":
        return last
    ck = _section(trainer, "checkpoint")
    monitor = str(ck["monitor"])
    epoch = best_epoch(history, monitor, resolve_mode(monitor, ck["mode"]))
    path = best_weights_path(trainer, output_dir)
    if epoch is None or path is None or not path.is_file():
        import warnings

        note = f"no best weights by {monitor} were saved (no finite value); evaluated the last"
        warnings.warn(f"segexp: {note}", RuntimeWarning, stacklevel=2)
        return {**last, "segexp.evaluate_weights_note": note}
    model.load_weights(str(path))
    return {
        "segexp.evaluate_weights": "best",
        "segexp.evaluated_epoch": str(epoch),
        "segexp.evaluate_weights_monitor": monitor,
    }


def checkpoint_paths(trainer_cfg: Any, output_dir: Path | str) -> dict[str, Path]:
    """Paths of the enabled checkpoints: ``{"best": ..., "last": ...}``."""
    ck = _section(_to_dict(trainer_cfg), "checkpoint")
    fmt = str(ck["format"]).lower()
    if fmt not in ("keras", "weights"):
        raise ConfigError(f"trainer.checkpoint.format={ck['format']!r}: expected keras or weights")
    suffix = ".keras" if fmt == "keras" else ".weights.h5"
    folder = Path(output_dir) / "checkpoints"
    return {k: folder / f"{k}{suffix}" for k in ("best", "last") if ck[k]}


class SaveAtEnd(keras.callbacks.Callback):
    """Save the final model (``checkpoint.last``) when training ends, however it ends.

    Per-epoch state for crash recovery is the resume checkpoint (segexp/train/checkpoint.py), so the
    last model is not rewritten every epoch.
    """

    def __init__(self, filepath: str, save_weights_only: bool = False) -> None:
        super().__init__()
        self.filepath, self.save_weights_only = filepath, save_weights_only

    def on_train_end(self, logs: dict | None = None) -> None:
        if self.save_weights_only:
            self.model.save_weights(self.filepath)
        else:
            self.model.save(self.filepath)


class LearningRateLogger(keras.callbacks.Callback):
    """Writes the optimizer's current learning rate into ``logs["lr"]`` at each epoch end.

    Must come before callbacks that read ``logs`` (checkpointing, tracking).
    """

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if logs is not None and self.model is not None and self.model.optimizer is not None:
            logs["lr"] = current_learning_rate(self.model.optimizer)


def build_callbacks(
    trainer_cfg: Any, opt_cfg: Any, *, output_dir: Path | str
) -> list[keras.callbacks.Callback]:
    """LR logger, last checkpoint, TerminateOnNaN, ReduceLROnPlateau, EarlyStopping, best
    checkpoint (in this order: the last checkpoint is written before EarlyStopping restores).

    Built here, not by `_target_`: their settings depend on each other (mode from the monitor,
    restore_best_weights from evaluate_weights, the plateau schedule from the optimizer)."""
    trainer = _to_dict(trainer_cfg)
    evaluate_weights(trainer)  # validated before training
    callbacks: list[keras.callbacks.Callback] = [LearningRateLogger()]
    ck = _section(trainer, "checkpoint")
    paths = checkpoint_paths(trainer, output_dir)
    best_path = best_weights_path(trainer, output_dir)
    for path in [*paths.values(), best_path]:
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
    weights_only = str(ck["format"]).lower() == "weights"
    if "last" in paths:
        callbacks.append(SaveAtEnd(str(paths["last"]), save_weights_only=weights_only))
    if trainer.get("terminate_on_nan", TrainerConf.terminate_on_nan):
        callbacks.append(keras.callbacks.TerminateOnNaN())

    sched = schedule_config(opt_cfg)
    if sched["name"] == "plateau":
        callbacks.append(
            ReduceLROnPlateau(
                monitor=sched["monitor"],
                mode=resolve_mode(sched["monitor"], sched["mode"]),
                factor=float(sched["factor"]),
                patience=int(sched["patience"]),
                min_delta=float(sched["min_delta"]),
                cooldown=int(sched["cooldown"]),
                min_lr=float(sched["min_lr"]),
                verbose=0,
            )
        )

    es = _section(trainer, "early_stopping")
    if es["enabled"]:
        callbacks.append(
            EarlyStopping(
                monitor=es["monitor"],
                mode=resolve_mode(es["monitor"], es["mode"]),
                patience=int(es["patience"]),
                min_delta=float(es["min_delta"]),
                restore_best_weights=restore_best_weights(trainer),
                start_from_epoch=int(es["start_from_epoch"]),
                verbose=1,
            )
        )

    if best_path is not None:
        callbacks.append(
            ModelCheckpoint(
                str(best_path),
                monitor=ck["monitor"],
                mode=resolve_mode(ck["monitor"], ck["mode"]),
                save_best_only=True,
                save_weights_only=weights_only or "best" not in paths,
                verbose=0,
            )
        )
    return callbacks
