"""Training callbacks built from the ``trainer`` config (and the optimizer's plateau schedule).

Trainer keys (all optional):

```yaml
early_stopping: {enabled: false, monitor: val_loss, mode: auto, patience: 5, min_delta: 0.0,
                 restore_best_weights: true, start_from_epoch: 0}
checkpoint: {best: true, last: true, monitor: val_loss, mode: auto, format: keras}
terminate_on_nan: true
```

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
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import keras

from segexp.config import to_dict
from segexp.errors import ConfigError
from segexp.optim import current_learning_rate, schedule_config

EARLY_STOPPING_DEFAULTS: dict[str, Any] = {
    "enabled": False,
    "monitor": "val_loss",
    "mode": "auto",
    "patience": 5,
    "min_delta": 0.0,
    "restore_best_weights": True,
    "start_from_epoch": 0,
}
CHECKPOINT_DEFAULTS: dict[str, Any] = {
    "best": True,
    "last": True,
    "monitor": "val_loss",
    "mode": "auto",
    "format": "keras",
}
_MIN_WORDS = ("loss", "error", "mse", "mae")


def _to_dict(cfg: Any) -> dict[str, Any]:
    return to_dict(cfg, "trainer")


def _section(trainer: Mapping, key: str, defaults: dict[str, Any]) -> dict[str, Any]:
    sub = trainer.get(key)
    if sub is None:
        sub = {}
    if not isinstance(sub, Mapping):
        raise ConfigError(f"trainer.{key}={sub!r}: expected a mapping with keys {sorted(defaults)}")
    unknown = sorted(set(sub) - set(defaults))
    if unknown:
        raise ConfigError(f"trainer.{key}: unknown key(s) {unknown}; expected {sorted(defaults)}")
    return {**defaults, **sub}


def resolve_mode(monitor: str, mode: str = "auto") -> str:
    """``min``/``max`` for ``monitor``; ``auto``: min for loss/error-like names, else max."""
    mode = str(mode).lower()
    if mode in ("min", "max"):
        return mode
    if mode != "auto":
        raise ConfigError(f"mode={mode!r} (monitor {monitor!r}): expected auto, min or max")
    return "min" if any(w in monitor.lower() for w in _MIN_WORDS) else "max"


def checkpoint_paths(trainer_cfg: Any, output_dir: Path | str) -> dict[str, Path]:
    """Paths of the enabled checkpoints: ``{"best": ..., "last": ...}``."""
    ck = _section(_to_dict(trainer_cfg), "checkpoint", CHECKPOINT_DEFAULTS)
    fmt = str(ck["format"]).lower()
    if fmt not in ("keras", "weights"):
        raise ConfigError(f"trainer.checkpoint.format={ck['format']!r}: expected keras or weights")
    suffix = ".keras" if fmt == "keras" else ".weights.h5"
    folder = Path(output_dir) / "checkpoints"
    return {k: folder / f"{k}{suffix}" for k in ("best", "last") if ck[k]}


class SaveAtEnd(keras.callbacks.Callback):
    """Save the final model (``checkpoint.last``) when training ends, however it ends.

    Per-epoch state for crash recovery is the resume checkpoint (segexp/checkpoint.py), so the
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
    """LR logger, TerminateOnNaN, ReduceLROnPlateau, EarlyStopping, checkpoints (in this order)."""
    trainer = _to_dict(trainer_cfg)
    callbacks: list[keras.callbacks.Callback] = [LearningRateLogger()]
    if trainer.get("terminate_on_nan", True):
        callbacks.append(keras.callbacks.TerminateOnNaN())

    sched = schedule_config(opt_cfg)
    if sched["name"] == "plateau":
        callbacks.append(
            keras.callbacks.ReduceLROnPlateau(
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

    es = _section(trainer, "early_stopping", EARLY_STOPPING_DEFAULTS)
    if es["enabled"]:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor=es["monitor"],
                mode=resolve_mode(es["monitor"], es["mode"]),
                patience=int(es["patience"]),
                min_delta=float(es["min_delta"]),
                restore_best_weights=bool(es["restore_best_weights"]),
                start_from_epoch=int(es["start_from_epoch"]),
                verbose=1,
            )
        )

    ck = _section(trainer, "checkpoint", CHECKPOINT_DEFAULTS)
    paths = checkpoint_paths(trainer, output_dir)
    if paths:
        next(iter(paths.values())).parent.mkdir(parents=True, exist_ok=True)
    weights_only = str(ck["format"]).lower() == "weights"
    if "best" in paths:
        callbacks.append(
            keras.callbacks.ModelCheckpoint(
                str(paths["best"]),
                monitor=ck["monitor"],
                mode=resolve_mode(ck["monitor"], ck["mode"]),
                save_best_only=True,
                save_weights_only=weights_only,
                verbose=0,
            )
        )
    if "last" in paths:
        callbacks.append(SaveAtEnd(str(paths["last"]), save_weights_only=weights_only))
    return callbacks
