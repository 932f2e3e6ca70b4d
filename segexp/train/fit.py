"""``model.fit`` of a built job: the callback list, in order, and the resumed run's catch-up."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

import keras
from omegaconf import DictConfig

from segexp import track
from segexp.train.build import Built
from segexp.train.checkpoint import ResumeCheckpoint, load_weights
from segexp.train.epoch_logger import EpochLogger, EpochTimer, epoch_summary

if TYPE_CHECKING:
    from segexp.train.lifecycle import RunHandle
    from segexp.train.resume import Resume


@dataclass
class Fitted:
    """What :func:`fit` returns: the whole run's per-epoch history and its timing summary."""

    history: dict[str, list[float]]
    timing: dict[str, float]


def fit(
    cfg: DictConfig, built: Built, run: RunHandle, resume: Resume | None, title: str = ""
) -> Fitted:
    """``model.fit`` from the first epoch not yet completed; returns the whole run's history.

    A resumed run first gets its weights and optimizer state back and logs whatever the crash
    kept from MLflow (see segexp/train/checkpoint.py); a NaN loss raises ``NaNLossError``.
    """
    from segexp.callbacks import build_callbacks
    from segexp.models import input_range

    model, source, state = built.model, built.source, resume.state if resume else None
    epochs = int(cfg.trainer.epochs)
    # The callback list, in the order Keras calls each hook (one shared ``logs`` dict):
    # 1. the configured callbacks, those enabled in segexp/callbacks.py's order: learning-rate
    #    logger, last checkpoint, NaN stop, plateau, early stopping, best checkpoint;
    # 2. the epoch timer: its epoch ends after theirs and before the checkpoint is written
    #    (checkpointing and MLflow logging are not training time);
    # 3. the resume checkpoint: saves each epoch with the state of all the others, and hands
    #    that state back on resume before training starts;
    # 4. the MLflow logger, last: it logs an epoch only once the checkpoint holds it.
    configured = build_callbacks(cfg.trainer, cfg.optimizer, output_dir=run.output_dir)
    timer = EpochTimer(
        batch_size=built.gpu.batch_size,
        # One pass over the training split per epoch unless steps_per_epoch says otherwise.
        images_per_epoch=None if cfg.trainer.get("steps_per_epoch") else source.sizes["train"],
    )
    logger = EpochLogger(
        run.client,
        run.run_id,
        sample_images=built.samples[0],
        sample_targets=built.samples[1],
        images_every=int(cfg.trainer.log_images_every),
        epochs=epochs,
        task=built.task,
        head=built.head,
        ignore_value=source.ignore_value,
        input_scale=input_range(cfg.model),
        class_names=list(source.class_names),
        title=title,
        # After a fall-back to the previous checkpoint: epochs the run already logged.
        logged_through=int((state or {}).get("redo_through", 0)),
    )
    ckpt = ResumeCheckpoint(
        run.output_dir,
        run.run_id,
        watch=[*configured, timer, logger],
        state=state,
        stop_on_nan=bool(cfg.trainer.terminate_on_nan),
    )
    if resume is not None:
        with model.distribute_strategy.scope():  # the optimizer may create its variables here
            load_weights(model, resume)
        _catch_up(run, model, ckpt, logger)
    model.fit(
        built.data["train"],
        validation_data=built.data["val"],
        epochs=epochs,
        initial_epoch=ckpt.epoch,
        steps_per_epoch=built.steps,
        shuffle=False,  # the tf.data stream is already shuffled, per epoch, from the seed
        callbacks=[*configured, timer, ckpt, logger],
        verbose=int(cfg.trainer.verbose),
    )
    if logger.failed_steps:
        _catch_up(run, model, ckpt, logger, panels=False)
    return Fitted(ckpt.history, epoch_summary(timer, logger))


def _catch_up(
    run: RunHandle,
    model: keras.Model,
    ckpt: ResumeCheckpoint,
    logger: EpochLogger,
    *,
    panels: bool = True,
) -> None:
    """Log the checkpointed epochs the run lacks (each (metric, epoch) exactly once) and the
    last epoch's prediction panel if it is missing; warn instead of failing."""
    client, run_id = run.client, run.run_id
    try:
        added = track.log_missing_epochs(client, run_id, ckpt.history)
        if added:
            print(f"segexp: logged {added} per-epoch values missing from the run", flush=True)
        last = ckpt.epoch
        if (
            panels
            and last
            and logger.wants_panel(last)
            and last not in track.logged_image_steps(client, run_id)
        ):
            logger.set_model(model)
            logger.log_predictions(last)
    except Exception as err:  # noqa: BLE001 - the run's own status reports real failures
        warnings.warn(
            f"segexp: could not log missing epochs to MLflow ({err})", RuntimeWarning, stacklevel=2
        )
