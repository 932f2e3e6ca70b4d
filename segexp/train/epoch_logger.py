"""Keras callbacks that time each epoch and stream its metrics and sample predictions to MLflow."""

from __future__ import annotations

import time
import warnings
from typing import Any

import keras
import numpy as np
from mlflow import MlflowClient

from segexp import track
from segexp.data.decode import to_model_input
from segexp.metrics import predictions_to_labels
from segexp.plots import prediction_panel


class EpochTimer(keras.callbacks.Callback):
    """Time each epoch and its training part (``epoch_train_seconds`` and ``epoch_images``
    exclude validation). Put it after the configured callbacks and before the resume
    checkpoint, which saves :meth:`state` with the epoch and restores it on resume."""

    def __init__(self, *, batch_size: int = 1, images_per_epoch: int | None = None) -> None:
        super().__init__()
        self.batch_size, self.images_per_epoch = batch_size, images_per_epoch
        self.epoch_train_seconds: list[float] = []
        self.epoch_seconds: list[float] = []  # without checkpointing and MLflow logging
        self.epoch_images: list[int] = []
        self._start = self._train_end = None
        self._batches = 0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._start = time.perf_counter()
        self._train_end = None
        self._batches = 0

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self._batches += 1

    def on_test_begin(self, logs: dict | None = None) -> None:
        if self._start is not None and self._train_end is None:
            self._train_end = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        end = time.perf_counter()
        self.epoch_train_seconds.append((self._train_end or end) - self._start)
        images = self._batches * self.batch_size
        if self.images_per_epoch:  # the last batch of a pass may be partial
            images = min(images, self.images_per_epoch)
        self.epoch_images.append(images)
        self.epoch_seconds.append(end - self._start)

    def state(self) -> dict[str, Any]:
        """Timing state, for the resume checkpoint."""
        return {
            "epoch_train_seconds": list(self.epoch_train_seconds),
            "epoch_seconds": list(self.epoch_seconds),
            "epoch_images": list(self.epoch_images),
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Continue the timing of a resumed run (see :meth:`state`)."""
        self.epoch_train_seconds = [float(v) for v in state.get("epoch_train_seconds", [])]
        self.epoch_seconds = [float(v) for v in state.get("epoch_seconds", [])]
        self.epoch_images = [int(v) for v in state.get("epoch_images", [])]

    def images_per_second(self) -> float:
        """Training throughput over the epochs after the first (which includes tracing)."""
        pairs = list(zip(self.epoch_images, self.epoch_train_seconds, strict=True))
        if len(pairs) > 1:
            pairs = pairs[1:]
        images = sum(p[0] for p in pairs)
        seconds = sum(p[1] for p in pairs)
        return images / seconds if seconds > 0 else float("nan")


class EpochLogger(keras.callbacks.Callback):
    """Log ``logs`` at ``step=epoch`` (1-based) and a fixed panel of validation predictions
    every ``images_every`` epochs; ``logging_seconds`` is the time spent in MLflow calls.

    It comes last in the callback list, after the resume checkpoint has saved the epoch, so a
    crash while logging never loses a finished epoch: the checkpoint holds its metrics and a
    resumed run logs whatever is missing. Epochs up to ``logged_through`` are already in the run
    (a resume that fell back to an older checkpoint trains them again) and are not logged twice.
    A logging call that still fails after ``track.retry`` only warns (training goes on); the
    epoch is counted in ``failed_steps`` and logged later from the checkpoint's history.
    """

    def __init__(
        self,
        client: MlflowClient,
        run_id: str,
        *,
        sample_images: np.ndarray | None = None,
        sample_targets: np.ndarray | None = None,
        images_every: int = 1,
        epochs: int = 1,
        task: str = "segmentation",
        head: str = "softmax",
        ignore_value: int | None = None,
        input_scale: float = 1.0,
        class_names: list[str] | None = None,
        title: str = "",
        logged_through: int = 0,
    ) -> None:
        super().__init__()
        self.client, self.run_id = client, run_id
        self.sample_images, self.sample_targets = sample_images, sample_targets
        self.images_every, self.epochs = max(1, int(images_every)), int(epochs)
        self.task, self.head = task, head
        self.ignore_value = ignore_value
        self.input_scale = float(input_scale)
        self.class_names, self.title = class_names, title
        self.logged_through = int(logged_through)
        self.logging_seconds = 0.0
        self.failed_steps: list[int] = []

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        step = epoch + 1
        if step <= self.logged_through:
            return
        t0 = time.perf_counter()
        try:
            track.log_metrics(self.client, self.run_id, dict(logs or {}), step=step)
            if self.wants_panel(step):
                self.log_predictions(step)
        except Exception as err:  # noqa: BLE001 - a tracking outage must not stop training
            self.failed_steps.append(step)
            warnings.warn(
                f"segexp: logging epoch {step} to MLflow failed ({type(err).__name__}: {err}); "
                "training goes on, the metrics are logged again at the end",
                RuntimeWarning,
                stacklevel=1,
            )
        self.logging_seconds += time.perf_counter() - t0

    def state(self) -> dict[str, Any]:
        """Logging time so far, for the resume checkpoint."""
        return {"logging_seconds": self.logging_seconds}

    def restore(self, state: dict[str, Any]) -> None:
        """Continue the logging time of a resumed run (see :meth:`state`)."""
        self.logging_seconds = float(state.get("logging_seconds", 0.0))

    def wants_panel(self, step: int) -> bool:
        """Whether a prediction panel is logged at ``step`` (1-based epoch)."""
        return self.sample_images is not None and (
            step % self.images_every == 0 or step == self.epochs
        )

    def predict_panel(self, step: int | None = None) -> np.ndarray:
        """Input | truth | prediction for the fixed validation samples, labelled with the
        run's title and the epoch ``step``."""
        # A direct call, not predict_on_batch: under a multi-worker strategy that would split
        # the few samples over the workers; the panel is one worker's business.
        inputs = to_model_input(self.sample_images, self.input_scale)
        probs = np.asarray(self.model(inputs, training=False))
        preds = probs if self.task == "reconstruction" else predictions_to_labels(probs, self.head)
        return prediction_panel(
            self.sample_images,
            self.sample_targets,
            preds,
            task=self.task,
            ignore_value=self.ignore_value,
            class_names=self.class_names,
            epoch=step,
            title=self.title,
        )

    def log_predictions(self, step: int) -> None:
        track.retry(
            self.client.log_image,
            self.run_id,
            self.predict_panel(step),
            key="predictions",
            step=step,
        )


def epoch_summary(timer: EpochTimer, logger: EpochLogger) -> dict[str, float]:
    """Throughput, mean epoch time (MLflow logging included) and MLflow's share of it."""
    total = sum(timer.epoch_seconds) + logger.logging_seconds
    return {
        "train_images_per_sec": timer.images_per_second(),
        "mean_epoch_seconds": total / max(1, len(timer.epoch_seconds)),
        "mlflow_logging_seconds": logger.logging_seconds,
        "mlflow_logging_share": logger.logging_seconds / total if total > 0 else float("nan"),
    }
