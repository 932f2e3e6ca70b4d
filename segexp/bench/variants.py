"""What the benchmark variants share, and the baselines (b) and (c).

What the variants share (config, data, model size) and the baselines: (b) plain Keras fit
and (c) a Python augmentation loop, each fed the tensors segexp's own data build produces.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from segexp.bench.measure import model_flops, peak_rss_mb, reset_peak_rss
from segexp.bench.python_baseline import python_dataset
from segexp.bench.segexp_run import run_config, run_segexp
from segexp.bench.timing import Result, make_timer, median, pipeline_rate
from segexp.config import CONF_DIR, load_preset
from segexp.errors import ConfigError, SegexpError


def _numpy_split(ds: Any) -> tuple[Any, ...]:
    """A (batched or not) split as NumPy arrays, one per element part (x, y[, weights])."""
    import numpy as np

    parts = list(ds.as_numpy_iterator())
    return tuple(np.concatenate([p[i] for p in parts]) for i in range(len(parts[0])))


def aug_config(cfg: DictConfig, name: str) -> DictConfig:
    """The augmentation config named by ``bench.augmentations``: the run's own or its preset."""
    if str(cfg.augmentation.get("name")) == name:
        return cfg.augmentation
    path = CONF_DIR / "augmentation" / f"{name}.yaml"
    if not path.exists():
        raise ConfigError(f"bench.augmentations: {name!r} is not in {path.parent}")
    return load_preset("augmentation", name)


class Bench:
    """Everything shared by the variants: config, work folder, the data source and model size."""

    def __init__(self, cfg: DictConfig, workdir: Path) -> None:
        from segexp.config import input_spec
        from segexp.models import input_range, output_crop
        from segexp.train import devices

        self.cfg, self.workdir = cfg, workdir
        self.bcfg = cfg.bench
        self.seed = int(cfg.seed)
        self.warmup = int(self.bcfg.warmup_epochs)
        self.epochs = int(self.bcfg.epochs)
        if self.epochs < 1 or self.warmup < 1:
            raise ConfigError(
                f"bench.epochs={self.epochs}, bench.warmup_epochs={self.warmup}: expected "
                "epochs >= 1 and warmup_epochs >= 1 (the first epoch traces and compiles)"
            )
        if cfg.trainer.get("steps_per_epoch"):
            raise ConfigError(
                f"trainer.steps_per_epoch={cfg.trainer.steps_per_epoch}: segexp-bench times "
                "full passes over the training split; leave trainer.steps_per_epoch null"
            )
        self.options = devices.setup(cfg.trainer)
        self.batch_size = self.options.batch_size
        self.shape = input_spec(cfg)
        self.input_scale = input_range(cfg.model)
        built = self.build("none")
        self.source, self.task, self.steps = built.source, built.task, built.steps
        self.head = built.head
        self.target = "image" if self.task == "reconstruction" else "mask"
        self.crop = output_crop(built.model)
        self.flops = model_flops(built.model)
        self.params = int(built.model.count_params())
        self.n_train = int(self.source.sizes["train"])
        # The split as loaded (images in [0, 1], full-size masks), for (c) and the memory probe.
        self.x_train, self.y_train = _numpy_split(self.source.splits["train"].batch(1024))
        self.validation = bool(self.bcfg.validation)
        del built

    def build(self, augmentation: str | DictConfig, epochs: int | None = None) -> Any:
        """segexp's own build of the run's data and compiled model (initial weights from the
        seed, as ``train`` gets them), with ``augmentation``, for ``epochs`` (default: all)."""
        from segexp.train.build import build

        aug = aug_config(self.cfg, augmentation) if isinstance(augmentation, str) else augmentation
        total = self.warmup + self.epochs if epochs is None else epochs
        return build(run_config(self.cfg, aug, self.workdir, total, "build"))

    # ------------------------------------------------------------------ variants
    def run_segexp(self, scenario: str, aug_cfg: DictConfig, round_: int = 1) -> Result:
        """(a): the function segexp-train runs (see :mod:`segexp.bench.segexp_run`)."""
        return run_segexp(self, scenario, aug_cfg, round_)

    def keras_tensors(self) -> tuple[Any, Any, dict[str, Any]]:
        """(b)'s compiled model and what ``fit`` gets: the training split as segexp's pipeline
        feeds the model (input scale, mask crop or image target, sample weights), one epoch of
        its training stream collected into arrays, and its validation stream."""
        built = self.build("none")
        train = built.data["train"].take(self.steps)
        parts = _numpy_split(train)
        fit = {"x": parts[0], "y": parts[1], "sample_weight": parts[2] if len(parts) > 2 else None}
        if len(fit["x"]) != self.n_train:
            raise SegexpError(f"bench: one epoch held {len(fit['x'])} images, not {self.n_train}")
        return built.model, built.data["val"], fit

    def run_keras(self, scenario: str) -> Result:
        """(b) plain ``model.fit`` on in-memory NumPy arrays, shuffled by Keras."""
        model, val, fit = self.keras_tensors()
        reset_peak_rss()
        timer = make_timer(self.n_train, self.batch_size)
        model.fit(
            **fit,
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

    @cached_property
    def w_train(self) -> Any:
        """Each training sample's sample-weight map ``[N, H, W]`` as segexp's pipeline computes
        it from the mask before augmentation (``unet_weighted``; None for other losses)."""
        from segexp.train.build import weight_fn

        weights = weight_fn(self.cfg, self.source)
        if weights is None:
            return None
        train = self.source.splits["train"].map(lambda _image, mask: (weights(mask),))
        return _numpy_split(train.batch(1024))[0]

    def _python_data(self, aug_cfg: DictConfig) -> Any:
        from segexp.augment import option_defaults

        kind = str(aug_cfg.name)
        defaults = {k: option_defaults(k) for k in ("affine", "elastic", "flip")}
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
            crop=self.crop,
            target=self.target,
            input_scale=self.input_scale,
            weights=self.w_train,
        )

    def run_python(self, scenario: str, aug_cfg: DictConfig) -> Result | None:
        """(c) ImageDataGenerator-like SciPy augmentation in a Python ``PyDataset``, feeding the
        model segexp builds (same scale, crop and sample weights as segexp's pipeline)."""
        data = self._python_data(aug_cfg)
        if data is None:
            return None
        model, val, _ = self.keras_tensors()
        reset_peak_rss()
        timer = make_timer(self.n_train, self.batch_size)
        model.fit(
            data,
            validation_data=val if self.validation else None,
            epochs=self.warmup + self.epochs,
            callbacks=[timer],
            verbose=0,
        )
        peak = peak_rss_mb()
        rate = self.python_pipeline_rate(aug_cfg)
        return self._result(scenario, "c: python aug", timer, peak, pipeline_images_per_sec=rate)

    def _result(self, scenario: str, variant: str, timer: Any, peak: float, **kw: Any) -> Result:
        w = self.warmup
        if any(b != self.steps for b in timer.batches):
            raise SegexpError(f"bench: {variant} ran {timer.batches} steps, expected {self.steps}")
        return Result(
            scenario=scenario,
            variant=variant,
            images_per_epoch=self.n_train,
            steps=self.steps,
            epoch_seconds=median(timer.epoch_seconds[w:]),
            val_seconds=median(timer.val_seconds[w:]),
            images_per_sec=timer.images_per_second(),
            peak_rss_mb=peak,
            final_loss=timer.losses[-1],
            **kw,
        )
