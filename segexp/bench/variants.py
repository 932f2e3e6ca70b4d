"""The three variants, (a) segexp, (b) plain Keras fit, (c) Python augmentation, on the same
model, initial weights, data and batch size."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from segexp.bench.measure import model_flops, peak_rss_mb, reset_peak_rss
from segexp.bench.python_baseline import python_dataset
from segexp.config import CONF_DIR
from segexp.errors import ConfigError, SegexpError


def _make_timer():
    import keras

    class EpochTimer(keras.callbacks.Callback):
        """Wall time per epoch (incl. callbacks before it) and validation time per epoch."""

        def __init__(self, logger: Any = None) -> None:
            super().__init__()
            self.logger = logger
            self.epoch_seconds: list[float] = []
            self.val_seconds: list[float] = []
            self.logging_seconds: list[float] = []
            self.batches: list[int] = []
            self.losses: list[float] = []
            self._t0 = self._v0 = 0.0
            self._val = 0.0
            self._log0 = 0.0
            self._n = 0

        def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
            self._t0 = time.perf_counter()
            self._val = 0.0
            self._n = 0
            self._log0 = self.logger.logging_seconds if self.logger is not None else 0.0

        def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
            self._n += 1

        def on_test_begin(self, logs: dict | None = None) -> None:
            self._v0 = time.perf_counter()

        def on_test_end(self, logs: dict | None = None) -> None:
            self._val += time.perf_counter() - self._v0

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            self.epoch_seconds.append(time.perf_counter() - self._t0)
            self.val_seconds.append(self._val)
            self.batches.append(self._n)
            self.losses.append(float((logs or {}).get("loss", float("nan"))))
            log = self.logger.logging_seconds - self._log0 if self.logger is not None else 0.0
            self.logging_seconds.append(log)

    return EpochTimer


def _timed_callbacks(callbacks: list, counter: dict[str, float]) -> list:
    """Wrap callbacks so the time spent in their epoch-level hooks adds to ``counter['s']``."""
    import keras

    class Timed(keras.callbacks.Callback):
        def __init__(self, inner: keras.callbacks.Callback) -> None:
            super().__init__()
            self.inner = inner

        def set_model(self, model: Any) -> None:
            super().set_model(model)
            self.inner.set_model(model)

        def set_params(self, params: dict) -> None:
            super().set_params(params)
            self.inner.set_params(params)

        def _call(self, hook: str, *args: Any) -> None:
            t0 = time.perf_counter()
            getattr(self.inner, hook)(*args)
            counter["s"] += time.perf_counter() - t0

        def on_train_begin(self, logs=None):
            self._call("on_train_begin", logs)

        def on_train_end(self, logs=None):
            self._call("on_train_end", logs)

        def on_epoch_begin(self, epoch, logs=None):
            self._call("on_epoch_begin", epoch, logs)

        def on_epoch_end(self, epoch, logs=None):
            self._call("on_epoch_end", epoch, logs)

        def on_train_batch_begin(self, batch, logs=None):
            self.inner.on_train_batch_begin(batch, logs)

        def on_train_batch_end(self, batch, logs=None):
            self.inner.on_train_batch_end(batch, logs)

        def on_test_begin(self, logs=None):
            self.inner.on_test_begin(logs)

        def on_test_end(self, logs=None):
            self.inner.on_test_end(logs)

    return [Timed(c) for c in callbacks]


@dataclass
class Result:
    """One variant's measurements (timed epochs only)."""

    scenario: str
    variant: str
    images_per_epoch: int
    steps: int
    epoch_seconds: float  # median over timed epochs, incl. validation, callbacks, logging
    val_seconds: float  # median validation time per epoch
    images_per_sec: float  # images / (epoch - validation), median epoch
    peak_rss_mb: float
    logging_share: float | None = None
    callbacks_share: float | None = None
    final_loss: float = float("nan")
    pipeline_images_per_sec: float | None = None  # input pipeline alone, no model
    round: int = 1
    extra: dict[str, float] = field(default_factory=dict)


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


def _median(values: list[float]) -> float:
    s = sorted(values)
    n = len(s)
    return s[n // 2] if n % 2 else 0.5 * (s[n // 2 - 1] + s[n // 2])


def _numpy_split(ds: Any) -> tuple[Any, Any]:
    import numpy as np

    pairs = list(ds.batch(1024).as_numpy_iterator())
    return np.concatenate([p[0] for p in pairs]), np.concatenate([p[1] for p in pairs])


def aug_config(cfg: DictConfig, name: str) -> DictConfig:
    """The augmentation config named by ``bench.augmentations``: the run's own or its preset."""
    if str(cfg.augmentation.get("name")) == name:
        return cfg.augmentation
    path = CONF_DIR / "augmentation" / f"{name}.yaml"
    if not path.exists():
        raise ConfigError(f"bench.augmentations: {name!r} is not in {path.parent}")
    return OmegaConf.load(path)


class Bench:
    """Everything shared by the variants: data, initial weights, GPU options, MLflow store."""

    def __init__(self, cfg: DictConfig, workdir: Path) -> None:
        import keras
        import numpy as np

        from segexp.config import input_spec
        from segexp.data import load_source
        from segexp.models import build_model, output_crop
        from segexp.train import devices
        from segexp.train.build import head_of

        self.cfg, self.workdir = cfg, workdir
        self.bcfg = cfg.bench
        self.seed = int(cfg.seed)
        self.options = devices.setup(cfg.trainer)
        self.batch_size = self.options.batch_size
        self.shape = input_spec(cfg)
        self.source = load_source(cfg.dataset, self.shape[:2], self.shape[2], self.seed)
        self.task = str(cfg.model.get("task", "segmentation"))
        self.target = "image" if self.task == "reconstruction" else "mask"
        keras.utils.set_random_seed(self.seed)
        with self.options.scope():
            model = build_model(cfg.model, self.shape, self.source.num_classes)
        self.head = head_of(model, self.task)
        self.crop = output_crop(model)
        self.initial_weights = model.get_weights()
        self.flops = model_flops(model)
        self.params = int(model.count_params())
        self.warmup = int(self.bcfg.warmup_epochs)
        self.epochs = int(self.bcfg.epochs)
        if self.epochs < 1 or self.warmup < 0:
            raise ConfigError(
                f"bench.epochs={self.epochs}, bench.warmup_epochs={self.warmup}: "
                "expected epochs >= 1 and warmup_epochs >= 0"
            )
        self.n_train = int(self.source.sizes["train"])
        self.steps = math.ceil(self.n_train / self.batch_size)
        self.x_train, self.y_train = _numpy_split(self.source.splits["train"])
        self.x_val, self.y_val = _numpy_split(self.source.splits["val"])
        self.validation = bool(self.bcfg.validation)
        del model
        self._np = np

    # ------------------------------------------------------------------ helpers
    def model(self) -> Any:
        """A fresh model with the shared initial weights, compiled like segexp-train does."""
        import keras

        from segexp.models import build_model
        from segexp.train.build import compile_args

        keras.utils.set_random_seed(self.seed)
        total_epochs = self.warmup + self.epochs
        with self.options.scope():
            model = build_model(self.cfg.model, self.shape, self.source.num_classes)
            model.set_weights(self.initial_weights)
            args = compile_args(
                self.cfg, self.head, self.source, self.task, self.steps, total_epochs
            )
            args["jit_compile"] = self.options.jit_compile
            model.compile(**args)
        return model

    def _targets(self, y: Any, x: Any) -> Any:
        if self.target == "image":
            return x
        ch, cw = self.crop
        if ch or cw:
            return y[:, ch : y.shape[1] - ch, cw : y.shape[2] - cw]
        return y

    def _result(self, scenario: str, variant: str, timer: Any, peak: float, **kw: Any) -> Result:
        w = self.warmup
        epochs = timer.epoch_seconds[w:]
        vals = timer.val_seconds[w:]
        train = [e - v for e, v in zip(epochs, vals, strict=True)]
        if any(b != self.steps for b in timer.batches[w:]):
            raise SegexpError(f"bench: {variant} ran {timer.batches} steps, expected {self.steps}")
        return Result(
            scenario=scenario,
            variant=variant,
            images_per_epoch=self.n_train,
            steps=self.steps,
            epoch_seconds=_median(epochs),
            val_seconds=_median(vals),
            images_per_sec=self.n_train / _median(train),
            peak_rss_mb=peak,
            final_loss=timer.losses[-1],
            **kw,
        )

    def _fit(self, model: Any, data: Any, callbacks: list, val: Any, **kw: Any) -> None:
        model.fit(
            data,
            validation_data=val if self.validation else None,
            epochs=self.warmup + self.epochs,
            callbacks=callbacks,
            verbose=0,
            **kw,
        )

    # ------------------------------------------------------------------ variants
    def run_segexp(self, scenario: str, aug_cfg: DictConfig) -> Result:
        """(a) make_dataset + configured callbacks + EpochLogger to a temporary MLflow store."""
        import keras
        import mlflow
        from mlflow import MlflowClient

        from segexp.callbacks import build_callbacks
        from segexp.train.build import build_datasets
        from segexp.train.checkpoint import ResumeCheckpoint
        from segexp.train.epoch_logger import EpochLogger

        cfg = self.cfg
        reset_peak_rss()
        model = self.model()
        # The exact streams segexp-train builds (per-epoch shuffling and augmentation seeds,
        # input scale, sample weights), for the warm-up and timed epochs.
        data = build_datasets(
            cfg,
            self.source,
            model,
            batch_size=self.batch_size,
            epochs=self.warmup + self.epochs,
            augmentation=aug_cfg,
        )
        train_ds, val_ds = data["train"], data["val"]
        uri = f"sqlite:///{self.workdir / 'mlflow.db'}"
        client = MlflowClient(uri)
        mlflow.set_tracking_uri(uri)
        from segexp.tracking import get_or_create_experiment

        exp_id = get_or_create_experiment(client, "segexp-bench")
        run_id = client.create_run(exp_id, run_name=f"bench-{scenario}").info.run_id
        n_samples = int(cfg.trainer.num_sample_images)
        sample_x = self.x_val[:n_samples]
        sample_y = self._targets(self.y_val[:n_samples], sample_x)
        logger = EpochLogger(
            client,
            run_id,
            sample_images=sample_x if n_samples else None,
            sample_targets=sample_y if n_samples else None,
            images_every=int(cfg.trainer.log_images_every),
            epochs=self.warmup + self.epochs,
            task=self.task,
            head=self.head,
            ignore_value=self.source.ignore_value,
        )
        counter = {"s": 0.0}
        per_epoch_callbacks: list[float] = []
        extra = []
        if bool(self.bcfg.callbacks):
            # segexp-train's callbacks, and its per-epoch resume checkpoint (before the logger,
            # as in segexp-train; its time is added to the callbacks' share here).
            extra = build_callbacks(cfg.trainer, cfg.optimizer, output_dir=self.workdir / scenario)
            ckpt = ResumeCheckpoint(
                self.workdir / scenario,
                run_id,
                watch=extra,
                stop_on_nan=bool(cfg.trainer.get("terminate_on_nan", True)),
            )
            extra.append(ckpt)

        timer = _make_timer()(logger)

        class _Snap(keras.callbacks.Callback):
            def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
                per_epoch_callbacks.append(counter["s"])

        callbacks = [*_timed_callbacks(extra, counter), logger, _Snap(), timer]
        try:
            self._fit(model, train_ds, callbacks, val_ds, steps_per_epoch=self.steps)
        except BaseException:
            client.set_terminated(run_id, "FAILED")
            raise
        client.set_terminated(run_id)
        peak = peak_rss_mb()
        stream = build_datasets(
            cfg, self.source, model, batch_size=self.batch_size, epochs=10**6, augmentation=aug_cfg
        )["train"]
        rate = pipeline_rate(iter(stream), self.steps, self.n_train)
        w = self.warmup
        total = sum(timer.epoch_seconds[w:])
        cb = [b - a for a, b in zip([0.0, *per_epoch_callbacks], per_epoch_callbacks, strict=False)]
        return self._result(
            scenario,
            "a: segexp",
            timer,
            peak,
            logging_share=sum(timer.logging_seconds[w:]) / total,
            callbacks_share=sum(cb[w:]) / total,
            pipeline_images_per_sec=rate,
        )

    def run_keras(self, scenario: str) -> Result:
        """(b) plain ``model.fit`` on NumPy arrays."""
        reset_peak_rss()
        model = self.model()
        timer = _make_timer()()
        x, y = self.x_train, self._targets(self.y_train, self.x_train)
        val = (self.x_val, self._targets(self.y_val, self.x_val))
        sample_weight = None
        from segexp.train.build import weight_fn

        fn = weight_fn(self.cfg, self.source)
        if fn is not None and self.target == "mask":
            sample_weight = self._np.stack([self._np.asarray(fn(m)) for m in y])
        model.fit(
            x,
            y,
            sample_weight=sample_weight,
            batch_size=self.batch_size,
            validation_data=val if self.validation else None,
            epochs=self.warmup + self.epochs,
            callbacks=[timer],
            shuffle=True,
            verbose=0,
        )
        return self._result(scenario, "b: keras", timer, peak_rss_mb())

    def python_pipeline_rate(self, aug_cfg: DictConfig) -> float | None:
        """Images/s of (c)'s Python augmentation loop alone (None: no baseline for it)."""
        data = self._python_data(aug_cfg)
        if data is None:
            return None

        def batches() -> Any:  # one thread, in order: Keras 2's Sequence with workers=1
            while True:
                yield from (data[i] for i in range(len(data)))

        return pipeline_rate(batches(), len(data), self.n_train)

    def _python_data(self, aug_cfg: DictConfig) -> Any:
        from segexp.augment import AFFINE_DEFAULTS, ELASTIC_DEFAULTS, FLIP_DEFAULTS

        kind = str(aug_cfg.name)
        defaults = {"affine": AFFINE_DEFAULTS, "elastic": ELASTIC_DEFAULTS, "flip": FLIP_DEFAULTS}
        if kind not in defaults:
            return None
        prm = {**defaults[kind], **OmegaConf.to_container(aug_cfg, resolve=True)}
        return python_dataset(
            self.x_train,
            self.y_train,
            self.batch_size,
            kind,
            prm,
            self.seed,
            self.crop,
            self.target,
        )

    def run_python(self, scenario: str, aug_cfg: DictConfig) -> Result | None:
        """(c) ImageDataGenerator-like SciPy augmentation in a Python ``PyDataset``."""
        data = self._python_data(aug_cfg)
        if data is None:
            return None
        reset_peak_rss()
        model = self.model()
        timer = _make_timer()()
        self._fit(model, data, [timer], (self.x_val, self._targets(self.y_val, self.x_val)))
        peak = peak_rss_mb()
        rate = self.python_pipeline_rate(aug_cfg)
        return self._result(scenario, "c: python aug", timer, peak, pipeline_images_per_sec=rate)
