"""`segexp-bench`: segexp's training path against plain Keras, in one process, as a Markdown table.

Variants, on the same model (same initial weights), data, batch size and steps per epoch:

- (a) ``segexp``: segexp's training path as configured: ``make_dataset`` (cache, shuffle,
  stateless-seeded augmentation, batch, prefetch), the configured callbacks (checkpoints, ...)
  and the real :class:`~segexp.epoch_logger.EpochLogger` logging every epoch to a temporary
  MLflow SQLite store;
- (b) ``keras``: plain ``model.fit`` on in-memory NumPy arrays, no augmentation, no callbacks;
- (c) ``python_aug``: with augmentation on, a Keras-2 ``ImageDataGenerator``-like loop: a
  ``keras.utils.PyDataset`` (one worker, like Keras 2's default) that transforms each image
  with ``scipy.ndimage`` (``affine_transform`` / ``map_coordinates``) in Python.

Warm-up epochs are excluded; every variant runs full passes over the same training split.
Also measured: peak resident memory per variant (VmHWM, reset between variants), model FLOPs
per image (analytical, Conv2D / Conv2DTranspose / Dense), a matmul and a conv2d peak on this
machine, and the peak memory of an in-memory versus a streamed (files, cache off) data set,
each in its own subprocess. Run ``segexp-bench [overrides]``; settings under ``bench:`` in
``conf/bench.yaml``.
"""

from __future__ import annotations

import math
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from segexp.config import CONF_DIR
from segexp.errors import ConfigError, SegexpError

PYTHON_AUGMENTATIONS = ("flip", "affine", "elastic")


# ------------------------------------------------------------------------------ measurements
def peak_rss_mb() -> float:
    """Peak resident set size of this process since the last :func:`reset_peak_rss` (MiB)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def rss_mb() -> float:
    """Current resident set size (MiB)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return float("nan")


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS counter (Linux ``clear_refs``); False where not allowed."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def model_flops(model: Any) -> int:
    """Forward FLOPs per image (multiply + add = 2) of Conv2D, Conv2DTranspose, Dense layers.

    Exact for those layers (bias, activations, pooling, normalization are not counted).
    """
    import keras

    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            total += model_flops(layer)
            continue
        name = type(layer).__name__
        if name not in ("Conv2D", "Conv2DTranspose", "Dense"):
            continue
        kernel = tuple(int(d) for d in layer.kernel.shape)
        in_shape = tuple(layer.input.shape[1:])
        out_shape = tuple(layer.output.shape[1:])
        if name == "Conv2D":  # kernel [kh, kw, cin / groups, cout]
            total += 2 * math.prod(out_shape) * math.prod(kernel[:3])
        elif name == "Conv2DTranspose":  # kernel [kh, kw, cout, cin]
            total += 2 * math.prod(in_shape) * math.prod(kernel[:3])
        else:  # Dense over the last axis, applied at every other position
            total += 2 * math.prod(out_shape[:-1] or (1,)) * kernel[0] * kernel[1]
    return int(total)


def measure_peaks(
    matmul_size: int, conv_shape: tuple[int, int, int, int], repeats: int
) -> dict[str, float]:
    """Best-of-``repeats`` float32 matmul and 3x3 conv2d throughput (FLOP/s) on this machine."""
    import tensorflow as tf

    n = int(matmul_size)
    b, h, w, c = conv_shape
    gen = tf.random.Generator.from_seed(0)
    a = gen.normal((n, n))
    x = gen.normal((b, h, w, c))
    k = gen.normal((3, 3, c, c))

    @tf.function
    def mm(u: tf.Tensor) -> tf.Tensor:
        return tf.reduce_sum(tf.matmul(u, u))

    @tf.function
    def conv(u: tf.Tensor) -> tf.Tensor:
        return tf.reduce_sum(tf.nn.conv2d(u, k, 1, "SAME"))

    def best(fn: Any, arg: tf.Tensor) -> float:
        fn(arg).numpy()
        times = []
        for _ in range(max(1, repeats)):
            t0 = time.perf_counter()
            fn(arg).numpy()
            times.append(time.perf_counter() - t0)
        return min(times)

    mm_flops = 2.0 * n**3
    conv_flops = 2.0 * b * h * w * c * c * 9
    return {
        "matmul_flops_per_sec": mm_flops / best(mm, a),
        "conv_flops_per_sec": conv_flops / best(conv, x),
    }


def machine_info() -> dict[str, str]:
    """CPU model, cores, load and library versions for the table's header."""
    import keras
    import tensorflow as tf

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 0
    mem = ""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) / 1024**2:.1f} GiB RAM"
    except OSError:
        pass
    gpus = tf.config.list_physical_devices("GPU")
    return {
        "cpu": cpu,
        "cores": str(cores),
        "memory": mem,
        "gpus": ", ".join(g.name for g in gpus) or "none",
        "load": " ".join(f"{v:.2f}" for v in os.getloadavg()),
        "versions": f"Python {platform.python_version()}, TensorFlow {tf.__version__}, "
        f"Keras {keras.__version__}",
    }


# ------------------------------------------------------------------------- keras callbacks
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


# ---------------------------------------------------------- (c) Python / SciPy augmentation
def _affine_matrix(rng: Any, prm: dict, h: int, w: int) -> Any:
    """Keras 2 ``ImageDataGenerator.get_random_transform`` + ``apply_affine_transform`` matrix
    (output -> input, in (row, col) coordinates, about the image centre)."""
    import numpy as np

    theta = np.deg2rad(rng.uniform(-prm["rotation_range"], prm["rotation_range"]))
    ws, hs = float(prm["width_shift_range"]), float(prm["height_shift_range"])
    tx = rng.uniform(-hs, hs) * (h if hs < 1 else 1)
    ty = rng.uniform(-ws, ws) * (w if ws < 1 else 1)
    shear = np.deg2rad(rng.uniform(-prm["shear_range"], prm["shear_range"]))
    z = prm["zoom_range"]
    lo, hi = (1 - z, 1 + z) if not isinstance(z, list | tuple) else z
    zx, zy = (1.0, 1.0) if lo == hi == 1 else rng.uniform(lo, hi, 2)
    m = np.eye(3)
    if theta:
        m = m @ np.array(
            [[np.cos(theta), -np.sin(theta), 0], [np.sin(theta), np.cos(theta), 0], [0, 0, 1]]
        )
    if tx or ty:
        m = m @ np.array([[1, 0, tx], [0, 1, ty], [0, 0, 1]])
    if shear:
        m = m @ np.array([[1, -np.sin(shear), 0], [0, np.cos(shear), 0], [0, 0, 1]])
    if zx != 1 or zy != 1:
        m = m @ np.array([[zx, 0, 0], [0, zy, 0], [0, 0, 1]])
    ox, oy = h / 2 + 0.5, w / 2 + 0.5
    offset = np.array([[1, 0, ox], [0, 1, oy], [0, 0, 1]])
    reset = np.array([[1, 0, -ox], [0, 1, -oy], [0, 0, 1]])
    return offset @ m @ reset


def python_augment(kind: str, prm: dict, image: Any, mask: Any, rng: Any) -> tuple[Any, Any]:
    """One sample, ImageDataGenerator-style: SciPy per channel, image order 1, mask order 0."""
    import numpy as np
    from scipy import ndimage

    h, w = image.shape[:2]
    if kind == "affine":
        mode = {"reflect": "reflect", "constant": "constant", "nearest": "nearest"}.get(
            str(prm["fill_mode"]), "wrap"
        )
        t = _affine_matrix(rng, prm, h, w)
        mat, off = t[:2, :2], t[:2, 2]
        image = np.stack(
            [
                ndimage.affine_transform(
                    image[..., c], mat, off, order=1, mode=mode, cval=float(prm["fill_value"])
                )
                for c in range(image.shape[-1])
            ],
            axis=-1,
        )
        mask = np.stack(
            [
                ndimage.affine_transform(
                    mask[..., c], mat, off, order=0, mode=mode, cval=prm["mask_fill_value"]
                )
                for c in range(mask.shape[-1])
            ],
            axis=-1,
        )
        if prm["horizontal_flip"] and rng.uniform() < 0.5:
            image, mask = image[:, ::-1], mask[:, ::-1]
        if prm["vertical_flip"] and rng.uniform() < 0.5:
            image, mask = image[::-1], mask[::-1]
        return image, mask
    if kind == "elastic":
        g = prm["grid_size"]
        gh, gw = (g, g) if isinstance(g, int) else tuple(g)
        coarse = rng.normal(0.0, float(prm["sigma"]), (2, gh, gw))
        order = 3 if str(prm["interpolation"]) == "bicubic" else 1
        # corner-aligned upsampling of the coarse grid to exactly (h, w) (grid_mode=False)
        dy, dx = (ndimage.zoom(c, (h / gh, w / gw), order=order) for c in coarse)
        rr, cc = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
        coords = np.stack([rr + dy, cc + dx])
        image = np.stack(
            [
                ndimage.map_coordinates(image[..., c], coords, order=1, mode="mirror")
                for c in range(image.shape[-1])
            ],
            axis=-1,
        )
        mask = np.stack(
            [
                ndimage.map_coordinates(mask[..., c], coords, order=0, mode="mirror")
                for c in range(mask.shape[-1])
            ],
            axis=-1,
        )
        return image, mask
    if kind == "flip":
        if prm["horizontal"] and rng.uniform() < prm["p"]:
            image, mask = image[:, ::-1], mask[:, ::-1]
        if prm["vertical"] and rng.uniform() < prm["p"]:
            image, mask = image[::-1], mask[::-1]
        return image, mask
    raise ConfigError(f"bench: no Python baseline for augmentation {kind!r}")


def _python_dataset(
    x: Any, y: Any, batch_size: int, kind: str, prm: dict, seed: int, crop: tuple, target: str
):
    """A ``keras.utils.PyDataset`` (Keras 2 ``Sequence``-like) doing the augmentation in Python."""
    import keras
    import numpy as np

    class NumpyAugmentIterator(keras.utils.PyDataset):
        def __init__(self) -> None:
            super().__init__(workers=1, use_multiprocessing=False, max_queue_size=10)
            self.rng = np.random.default_rng(seed)
            self.order = self.rng.permutation(len(x))

        def __len__(self) -> int:
            return math.ceil(len(x) / batch_size)

        def __getitem__(self, i: int) -> tuple[Any, Any]:
            idx = self.order[i * batch_size : (i + 1) * batch_size]
            images, masks = [], []
            for j in idx:
                im, m = python_augment(kind, prm, x[j], y[j], self.rng)
                images.append(im)
                masks.append(m)
            bx = np.stack(images).astype(np.float32)
            if target == "image":
                return bx, bx
            by = np.stack(masks)
            ch, cw = crop
            if ch or cw:
                by = by[:, ch : by.shape[1] - ch, cw : by.shape[2] - cw]
            return bx, by

        def on_epoch_end(self) -> None:
            self.order = self.rng.permutation(len(x))

    return NumpyAugmentIterator()


# ---------------------------------------------------------------------------------- variants
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
    extra: dict[str, float] = field(default_factory=dict)


def pipeline_rate(make_iter: Any, images: int, min_seconds: float = 1.0) -> float:
    """Images/s of an input pipeline alone: one untimed pass, then passes for ``min_seconds``."""
    for _ in make_iter():
        pass
    passes, t0 = 0, time.perf_counter()
    while passes == 0 or time.perf_counter() - t0 < min_seconds:
        for _ in make_iter():
            pass
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


def _aug_cfg(cfg: DictConfig, name: str) -> DictConfig:
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

        from segexp import devices
        from segexp.config import input_spec
        from segexp.data import load_source
        from segexp.models import build_model, output_crop
        from segexp.runner import head_of

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
        from segexp.runner import compile_args

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
        from segexp.epoch_logger import EpochLogger
        from segexp.runner import build_datasets

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
        name = "segexp-bench"
        exp = client.get_experiment_by_name(name)
        exp_id = exp.experiment_id if exp else client.create_experiment(name)
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
            batch_size=self.batch_size,
            task=self.task,
            head=self.head,
            ignore_value=self.source.ignore_value,
        )
        counter = {"s": 0.0}
        per_epoch_callbacks: list[float] = []
        extra = []
        if bool(self.bcfg.callbacks):
            extra = build_callbacks(cfg.trainer, cfg.optimizer, output_dir=self.workdir / scenario)

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
        one_epoch = build_datasets(
            cfg, self.source, model, batch_size=self.batch_size, epochs=1, augmentation=aug_cfg
        )["train"]
        rate = pipeline_rate(lambda: iter(one_epoch), self.n_train)
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
        from segexp.runner import weight_fn

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

    def run_python(self, scenario: str, aug_cfg: DictConfig) -> Result | None:
        """(c) ImageDataGenerator-like SciPy augmentation in a Python ``PyDataset``."""
        from segexp.augment import AFFINE_DEFAULTS, ELASTIC_DEFAULTS, FLIP_DEFAULTS

        kind = str(aug_cfg.name)
        defaults = {"affine": AFFINE_DEFAULTS, "elastic": ELASTIC_DEFAULTS, "flip": FLIP_DEFAULTS}
        if kind not in defaults:
            return None
        prm = {**defaults[kind], **OmegaConf.to_container(aug_cfg, resolve=True)}
        reset_peak_rss()
        model = self.model()
        timer = _make_timer()()
        data = _python_dataset(
            self.x_train,
            self.y_train,
            self.batch_size,
            kind,
            prm,
            self.seed,
            self.crop,
            self.target,
        )
        val = (self.x_val, self._targets(self.y_val, self.x_val))
        self._fit(model, data, [timer], val)
        peak = peak_rss_mb()

        def batches() -> Any:  # one thread, in order: Keras 2's Sequence with workers=1
            return (data[i] for i in range(len(data)))

        rate = pipeline_rate(batches, self.n_train)
        return self._result(scenario, "c: python aug", timer, peak, pipeline_images_per_sec=rate)


# ---------------------------------------------------------------------------- memory probe
def _memory_child(kind: str, root: str, cfg_yaml: str, queue: Any) -> None:
    """Subprocess: load the data set in memory or streamed, run two pipeline passes."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        import numpy as np
        import tensorflow as tf

        from segexp.data.pipeline import make_dataset

        cfg = OmegaConf.create(cfg_yaml)
        size = tuple(cfg.size)
        base = rss_mb()
        t0 = time.perf_counter()
        if kind == "in_memory":
            images = np.load(Path(root) / "images.npy")
            masks = np.load(Path(root) / "masks.npy")
            ds = tf.data.Dataset.from_tensor_slices((images, masks))
            cache = True
        else:
            from segexp.data.folder import load

            dcfg = OmegaConf.create(
                {
                    "name": "folder",
                    "images": str(Path(root) / "images"),
                    "masks": str(Path(root) / "masks"),
                    "num_classes": int(cfg.num_classes),
                    "mask_values": None,
                    "image_size": list(size),
                    "channels": int(cfg.channels),
                    "split": {"train": 0.98, "val": 0.01, "test": 0.01},
                    "validate": "quick",
                    "fingerprint": "stat",
                    "cache": False,
                }
            )
            ds = load(dcfg, size, int(cfg.channels), 0).splits["train"]
            cache = False
        load_s = time.perf_counter() - t0
        # None: make_dataset's default (4096 elements cached, 256 streamed).
        buffer = 64 if kind == "streamed_small_shuffle" else None
        batched = make_dataset(
            ds,
            batch_size=int(cfg.batch_size),
            training=True,
            seed=0,
            cache=cache,
            shuffle_buffer=buffer,
        )
        passes = []
        n = 0
        for _ in range(2):
            t0 = time.perf_counter()
            n = 0
            for x, _y in batched:
                n += int(x.shape[0])
            passes.append(time.perf_counter() - t0)
        queue.put(
            {
                "kind": kind,
                "images": n,
                "baseline_mb": base,
                "peak_mb": peak_rss_mb(),
                "load_s": load_s,
                "pass_s": passes[-1],
            }
        )
    except BaseException as err:  # noqa: BLE001 - reported by the parent
        queue.put({"kind": kind, "error": f"{type(err).__name__}: {err}"})


def memory_probe(
    bench: Bench, num_images: int, workdir: Path, size: tuple[int, int] | None = None
) -> list[dict[str, Any]]:
    """Peak RSS of an in-memory (arrays, cache on) vs a streamed (PNG files, cache off) set of
    ``num_images`` images of ``size`` (the bench images, tiled; default: their own size)."""
    import multiprocessing as mp

    import numpy as np
    from PIL import Image

    root = workdir / "memory_data"
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    h, w = size or bench.shape[:2]
    idx = np.arange(num_images) % len(bench.x_train)
    reps = (1, -(-h // bench.x_train.shape[1]), -(-w // bench.x_train.shape[2]), 1)
    images = np.tile(bench.x_train[idx, ..., :1], reps)[:, :h, :w].astype(np.float32)
    masks = np.tile(bench.y_train[idx], reps)[:, :h, :w].astype(np.uint8)
    np.save(root / "images.npy", images)
    np.save(root / "masks.npy", masks)
    for i in range(num_images):
        Image.fromarray((images[i, ..., 0] * 255).round().astype(np.uint8)).save(
            root / "images" / f"{i:06d}.png"
        )
        Image.fromarray(masks[i, ..., 0]).save(root / "masks" / f"{i:06d}.png")
    cfg_yaml = OmegaConf.to_yaml(
        {
            "size": [h, w],
            "channels": 1,
            "num_classes": int(bench.source.num_classes),
            "batch_size": bench.batch_size,
        }
    )
    ctx = mp.get_context("spawn")
    rows = []
    for kind in ("in_memory", "streamed", "streamed_small_shuffle"):
        queue = ctx.Queue()
        proc = ctx.Process(target=_memory_child, args=(kind, str(root), cfg_yaml, queue))
        proc.start()
        try:
            row = queue.get(timeout=600)
        finally:
            proc.join(timeout=60)
        row["data_mb"] = (images.nbytes + masks.nbytes * 4) / 2**20
        rows.append(row)
    return rows


# ------------------------------------------------------------------------------------ report
def _fmt(value: float | None, spec: str = ".1f", scale: float = 1.0) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return format(value * scale, spec)


def render(report: dict[str, Any]) -> str:
    """The Markdown report: machine, model, throughput, targets, memory."""
    m, model = report["machine"], report["model"]
    lines = [
        "# segexp-bench",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory']}, GPUs: {m['gpus']}; "
        f"{m['versions']}. Load average at start {m['load']}, at end {report['load_end']}.",
        "",
        f"Command: `{report['command']}`",
        "",
        f"Model {model['name']}: input {model['input']}, {model['params']:,} parameters, "
        f"batch {report['batch_size']}, {report['steps']} steps ({report['images']} images) per "
        f"epoch, {report['warmup']} warm-up + {report['epochs']} timed epochs per variant "
        f"(median epoch), precision {report['precision']}, jit_compile {report['jit']}, "
        f"distribute {report['distribute']}, validation {report['validation']}.",
        "",
        "| model | forward GFLOP/image | training GFLOP/image (3x) | matmul peak GFLOP/s "
        "| conv peak GFLOP/s |",
        "|---|---:|---:|---:|---:|",
        f"| {model['name']} | {model['flops'] / 1e9:.4f} | {3 * model['flops'] / 1e9:.4f} "
        f"| {report['peaks']['matmul_flops_per_sec'] / 1e9:.1f} "
        f"| {report['peaks']['conv_flops_per_sec'] / 1e9:.1f} |",
        "",
        "| augmentation | variant | images/s | (a)/(b) | (a)/(c) | epoch s | validation s "
        "| peak RSS MiB | MLflow logging share | other callbacks share | achieved GFLOP/s "
        "| % of conv peak | final loss | input pipeline alone images/s |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    conv_peak = report["peaks"]["conv_flops_per_sec"]
    for row in report["rows"]:
        r: Result = row["result"]
        achieved = 3 * model["flops"] * r.images_per_sec
        lines.append(
            f"| {r.scenario} | {r.variant} | {r.images_per_sec:.1f} "
            f"| {_fmt(row.get('a_b'), '.3f')} "
            f"| {_fmt(row.get('a_c'), '.2f')} | {r.epoch_seconds:.3f} | {r.val_seconds:.3f} "
            f"| {r.peak_rss_mb:.0f} | {_fmt(r.logging_share, '.2%')} "
            f"| {_fmt(r.callbacks_share, '.2%')} | {achieved / 1e9:.2f} "
            f"| {_fmt(achieved / conv_peak, '.1%')} | {r.final_loss:.4f} "
            f"| {_fmt(r.pipeline_images_per_sec, '.0f')} |"
        )
    lines += ["", "| target | measured | met |", "|---|---:|---|"]
    for name, value, ok in report["targets"]:
        lines.append(f"| {name} | {value} | {'yes' if ok else 'no'} |")
    if report.get("memory"):
        lines += [
            "",
            f"Memory: {report['memory_note']}",
            "",
            "| data set | images | data MiB (float32 images + int32 masks) | baseline RSS MiB "
            "| peak RSS MiB | peak - baseline MiB | load s | epoch pass s |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for row in report["memory"]:
            if "error" in row:
                lines.append(f"| {row['kind']} | error: {row['error']} | | | | | | |")
                continue
            lines.append(
                f"| {row['kind'].replace('_', ' ')} | {row['images']} | {row['data_mb']:.1f} "
                f"| {row['baseline_mb']:.0f} | {row['peak_mb']:.0f} "
                f"| {row['peak_mb'] - row['baseline_mb']:.0f} | {row['load_s']:.2f} "
                f"| {row['pass_s']:.2f} |"
            )
    lines += ["", f"Total benchmark time: {report['total_s']:.0f} s.", ""]
    return "\n".join(lines)


def run_bench(cfg: DictConfig, command: str = "segexp-bench") -> dict[str, Any]:
    """Run every variant of ``cfg.bench`` and write the Markdown table; returns the report."""
    import tempfile

    started = time.perf_counter()
    bcfg = cfg.bench
    info = machine_info()
    with tempfile.TemporaryDirectory(prefix="segexp-bench-") as tmp:
        workdir = Path(tmp)
        bench = Bench(cfg, workdir)
        peaks = measure_peaks(
            int(bcfg.peak.matmul_size),
            (int(bcfg.peak.conv_batch), *bench.shape[:2], int(bcfg.peak.conv_channels)),
            int(bcfg.peak.repeats),
        )
        rows: list[dict[str, Any]] = []
        keras_result: Result | None = None
        scenarios = [str(s) for s in bcfg.augmentations]
        if "none" not in scenarios:
            scenarios.insert(0, "none")
        for scenario in scenarios:
            aug = _aug_cfg(cfg, scenario)
            a = bench.run_segexp(scenario, aug)
            print(f"segexp-bench: {scenario} (a) {a.images_per_sec:.1f} images/s", flush=True)
            if scenario == "none":
                keras_result = bench.run_keras(scenario)
                print(f"segexp-bench: (b) {keras_result.images_per_sec:.1f} images/s", flush=True)
            c = bench.run_python(scenario, aug) if scenario != "none" else None
            if c is not None:
                print(f"segexp-bench: {scenario} (c) {c.images_per_sec:.1f} images/s", flush=True)
            a_b = a.images_per_sec / keras_result.images_per_sec if keras_result else None
            a_c = a.images_per_sec / c.images_per_sec if c else None
            rows.append({"result": a, "a_b": a_b, "a_c": a_c})
            if scenario == "none" and keras_result is not None:
                rows.append({"result": keras_result})
            if c is not None:
                rows.append({"result": c})
        memory = []
        if bool(bcfg.memory.enabled):
            size = bcfg.memory.get("image_size")
            memory = memory_probe(
                bench,
                int(bcfg.memory.num_images),
                workdir,
                tuple(int(v) for v in size) if size else None,
            )
    targets = []
    for row in rows:
        r = row["result"]
        if r.variant.startswith("a") and r.scenario == "none" and row.get("a_b") is not None:
            targets.append(
                ("(a)/(b) without augmentation >= 0.97", f"{row['a_b']:.3f}", row["a_b"] >= 0.97)
            )
        if r.variant.startswith("a") and row.get("a_c") is not None:
            targets.append(
                (f"(a)/(c) with {r.scenario} >= 2", f"{row['a_c']:.2f}", row["a_c"] >= 2.0)
            )
        if r.variant.startswith("a") and r.scenario == "none":
            targets.append(
                (
                    "MLflow logging share of epoch time < 2% (no augmentation)",
                    f"{r.logging_share:.2%}",
                    r.logging_share < 0.02,
                )
            )
    h, w, c = bench.shape
    report = {
        "machine": info,
        "load_end": " ".join(f"{v:.2f}" for v in os.getloadavg()),
        "command": command,
        "model": {
            "name": str(cfg.model.name),
            "input": f"{h}x{w}x{c}",
            "params": bench.params,
            "flops": bench.flops,
        },
        "peaks": peaks,
        "batch_size": bench.batch_size,
        "steps": bench.steps,
        "images": bench.n_train,
        "warmup": bench.warmup,
        "epochs": bench.epochs,
        "precision": bench.options.precision,
        "jit": bench.options.jit_compile,
        "distribute": bench.options.distribute,
        "validation": bench.validation,
        "rows": rows,
        "targets": targets,
        "memory": memory,
        "memory_note": (
            f"{int(bcfg.memory.num_images)} single-channel images of "
            f"{'x'.join(str(v) for v in (bcfg.memory.get('image_size') or bench.shape[:2]))}, "
            "one subprocess each, two passes of make_dataset(training=True) without a model; "
            "in memory = NumPy arrays + from_tensor_slices + cache; streamed = PNG files via "
            "the folder loader, cache off (shuffle buffer 256 = make_dataset's default "
            "for streaming, or 64)."
        ),
    }
    report["total_s"] = time.perf_counter() - started
    text = render(report)
    output = bcfg.get("output")
    if output:
        path = Path(str(output))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        report["output"] = str(path)
    print(text, flush=True)
    return report


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="bench")
def main(cfg: DictConfig) -> None:
    """``segexp-bench [overrides]``: benchmark the configured training path (see module doc)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        run_bench(cfg, command=" ".join(["segexp-bench", *sys.argv[1:]]))
    except SegexpError as err:
        if os.environ.get("SEGEXP_TRACEBACK"):
            raise
        print(f"segexp-bench: error: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
