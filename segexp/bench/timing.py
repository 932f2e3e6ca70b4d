"""How the benchmark times a fit: one variant's result, the epoch timer of the baselines, the
throughput definitions and the input pipeline alone."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Result:
    """One variant's measurements."""

    scenario: str
    variant: str
    images_per_epoch: int
    steps: int
    epoch_seconds: float  # median over timed epochs, incl. validation, callbacks, logging
    val_seconds: float | None  # median validation time per epoch (None: not measured)
    images_per_sec: float  # training part of every epoch after the first (see rate_after_first)
    peak_rss_mb: float
    logging_share: float | None = None
    callbacks_share: float | None = None
    final_loss: float = float("nan")
    pipeline_images_per_sec: float | None = None  # input pipeline alone, no model
    round: int = 1
    extra: dict[str, Any] = field(default_factory=dict)


def median(values: list[float]) -> float:
    s = sorted(values)
    n = len(s)
    return s[n // 2] if n % 2 else 0.5 * (s[n // 2 - 1] + s[n // 2])


def rate_after_first(images: list[int], train_seconds: list[float]) -> float:
    """Images per second of the training part of the epochs after the first (which traces and
    compiles): the definition of the ``train_images_per_sec`` a segexp-train run logs, applied
    to the baselines so that every variant's images/s means the same."""
    pairs = list(zip(images, train_seconds, strict=True))
    pairs = pairs[1:] if len(pairs) > 1 else pairs
    seconds = sum(s for _, s in pairs)
    return sum(n for n, _ in pairs) / seconds if seconds > 0 else float("nan")


def make_timer(images_per_epoch: int) -> Any:
    """A Keras callback timing each epoch of a baseline fit: its training part (to the start of
    validation), validation, the whole epoch, the batches and the epoch's loss."""
    import keras

    class EpochTimer(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.epoch_seconds: list[float] = []
            self.train_seconds: list[float] = []
            self.val_seconds: list[float] = []
            self.batches: list[int] = []
            self.losses: list[float] = []
            self._t0 = self._v0 = self._val = 0.0
            self._train_end: float | None = None
            self._n = 0

        def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
            self._t0, self._val, self._n, self._train_end = time.perf_counter(), 0.0, 0, None

        def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
            self._n += 1

        def on_test_begin(self, logs: dict | None = None) -> None:
            self._v0 = time.perf_counter()
            self._train_end = self._train_end or self._v0

        def on_test_end(self, logs: dict | None = None) -> None:
            self._val += time.perf_counter() - self._v0

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            end = time.perf_counter()
            self.epoch_seconds.append(end - self._t0)
            self.train_seconds.append((self._train_end or end) - self._t0)
            self.val_seconds.append(self._val)
            self.batches.append(self._n)
            self.losses.append(float((logs or {}).get("loss", float("nan"))))

        def images_per_sec(self) -> float:
            images = [images_per_epoch] * len(self.train_seconds)
            return rate_after_first(images, self.train_seconds)

    return EpochTimer()


def pipeline_rate(batches: Any, steps: int, images: int, min_seconds: float = 1.0) -> float:
    """Images/s of an input pipeline alone, in steady state: ``batches`` is one iterator over
    many epochs of ``steps`` batches (``images`` images) each, as ``model.fit`` consumes it;
    the first epoch (iterator start-up, tracing and compilation) is not timed."""

    def epoch() -> None:
        for _ in range(steps):
            next(batches)

    epoch()
    passes, t0 = 0, time.perf_counter()
    while passes == 0 or time.perf_counter() - t0 < min_seconds:
        epoch()
        passes += 1
    return passes * images / (time.perf_counter() - t0)
