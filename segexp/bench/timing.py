"""How the benchmark times a fit: results, epoch timers, throughput, the pipeline alone.

One variant's result, the epoch timer of the baselines (segexp-train's, so images/s means the
same for every variant) and the input pipeline alone."""

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
    images_per_sec: float  # train images/s of the epochs after the first (see make_timer)
    peak_rss_mb: float
    logging_share: float | None = None
    final_loss: float = float("nan")
    pipeline_images_per_sec: float | None = None  # input pipeline alone, no model
    round: int = 1
    extra: dict[str, Any] = field(default_factory=dict)


def median(values: list[float]) -> float:
    s = sorted(values)
    n = len(s)
    return s[n // 2] if n % 2 else 0.5 * (s[n // 2 - 1] + s[n // 2])


def make_timer(images_per_epoch: int, batch_size: int) -> Any:
    """A Keras callback timing each epoch of a baseline fit: segexp-train's epoch timer (so its
    ``images_per_second`` is the ``train_images_per_sec`` a run logs: the training part of the
    epochs after the first, which traces and compiles), plus each epoch's validation time,
    batches and loss."""
    from segexp.train.epoch_logger import EpochTimer

    class BenchTimer(EpochTimer):
        def __init__(self) -> None:
            super().__init__(batch_size=batch_size, images_per_epoch=images_per_epoch)
            self.val_seconds: list[float] = []
            self.batches: list[int] = []
            self.losses: list[float] = []
            self._v0 = self._val = 0.0

        def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
            super().on_epoch_begin(epoch, logs)
            self._val = 0.0

        def on_test_begin(self, logs: dict | None = None) -> None:
            super().on_test_begin(logs)
            self._v0 = time.perf_counter()

        def on_test_end(self, logs: dict | None = None) -> None:
            self._val += time.perf_counter() - self._v0

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            super().on_epoch_end(epoch, logs)
            self.val_seconds.append(self._val)
            self.batches.append(self._batches)
            self.losses.append(float((logs or {}).get("loss", float("nan"))))

    return BenchTimer()


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
