"""Keras callback that streams each epoch's metrics and sample predictions to an MLflow run."""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from typing import Any

import keras
import numpy as np
from mlflow import MlflowClient

from segexp import track as tracking
from segexp.metrics import predictions_to_labels
from segexp.plots import prediction_panel


class EpochLogger(keras.callbacks.Callback):
    """Log ``logs`` at ``step=epoch`` (1-based), time the training part of each epoch, and log
    a fixed panel of validation predictions every ``images_every`` epochs.

    ``train_seconds`` and ``train_images`` exclude validation; ``logging_seconds`` is the time
    spent in MLflow calls, so its share of the epoch can be reported.

    ``before_log(epoch, logs)`` (the resume checkpoint) runs after the epoch's timing is
    recorded and before anything is logged (returning False skips logging the epoch), so a crash
    while logging never loses a finished epoch: the checkpoint holds its metrics and a resumed
    run logs whatever is missing. A logging call that still fails after ``tracking.retry`` only
    warns (training goes on); the epoch is counted in ``failed_steps`` and logged later from the
    checkpoint's history.
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
        batch_size: int = 1,
        images_per_epoch: int | None = None,
        task: str = "segmentation",
        head: str = "softmax",
        ignore_value: int | None = None,
        input_scale: float = 1.0,
        before_log: Callable[[int, dict], Any] | None = None,
        class_names: list[str] | None = None,
        title: str = "",
    ) -> None:
        super().__init__()
        self.client, self.run_id = client, run_id
        self.sample_images, self.sample_targets = sample_images, sample_targets
        self.images_every, self.epochs = max(1, int(images_every)), int(epochs)
        self.batch_size, self.task, self.head = batch_size, task, head
        self.images_per_epoch = images_per_epoch
        self.ignore_value = ignore_value
        self.input_scale = float(input_scale)
        self.class_names, self.title = class_names, title
        self.epoch_train_seconds: list[float] = []
        self.epoch_seconds: list[float] = []
        self.epoch_images: list[int] = []
        self.logging_seconds = 0.0
        self._start = self._train_end = None
        self._batches = 0
        self.before_log = before_log
        self.failed_steps: list[int] = []

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
        step = epoch + 1
        if self.before_log is not None and self.before_log(epoch, dict(logs or {})) is False:
            return  # an epoch aborted by a NaN loss: not a completed epoch, not logged
        t0 = time.perf_counter()
        try:
            tracking.log_metrics(self.client, self.run_id, dict(logs or {}), step=step)
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
        spent = time.perf_counter() - t0
        self.logging_seconds += spent
        self.epoch_seconds[-1] += spent

    def wants_panel(self, step: int) -> bool:
        """Whether a prediction panel is logged at ``step`` (1-based epoch)."""
        return self.sample_images is not None and (
            step % self.images_every == 0 or step == self.epochs
        )

    def state(self) -> dict[str, Any]:
        """Timing state, for the resume checkpoint."""
        return {
            "epoch_train_seconds": list(self.epoch_train_seconds),
            "epoch_seconds": list(self.epoch_seconds),
            "epoch_images": list(self.epoch_images),
            "logging_seconds": self.logging_seconds,
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Continue the timing of a resumed run (see :meth:`state`)."""
        self.epoch_train_seconds = [float(v) for v in state.get("epoch_train_seconds", [])]
        self.epoch_seconds = [float(v) for v in state.get("epoch_seconds", [])]
        self.epoch_images = [int(v) for v in state.get("epoch_images", [])]
        self.logging_seconds = float(state.get("logging_seconds", 0.0))

    def predict_panel(self, step: int | None = None) -> np.ndarray:
        """Input | truth | prediction for the fixed validation samples, labelled with the
        run's title and the epoch ``step``."""
        # A direct call, not predict_on_batch: under a multi-worker strategy that would split
        # the few samples over the workers; the panel is one worker's business.
        probs = np.asarray(self.model(self.sample_images * self.input_scale, training=False))
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
        tracking.retry(
            self.client.log_image,
            self.run_id,
            self.predict_panel(step),
            key="predictions",
            step=step,
        )

    def images_per_second(self) -> float:
        """Training throughput over the epochs after the first (which includes tracing)."""
        pairs = list(zip(self.epoch_images, self.epoch_train_seconds, strict=True))
        if len(pairs) > 1:
            pairs = pairs[1:]
        images = sum(p[0] for p in pairs)
        seconds = sum(p[1] for p in pairs)
        return images / seconds if seconds > 0 else float("nan")

    def summary(self) -> dict[str, Any]:
        total = sum(self.epoch_seconds)
        return {
            "train_images_per_sec": self.images_per_second(),
            "mean_epoch_seconds": total / max(1, len(self.epoch_seconds)),
            "mlflow_logging_seconds": self.logging_seconds,
            "mlflow_logging_share": self.logging_seconds / total if total > 0 else float("nan"),
        }
