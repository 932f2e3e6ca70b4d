"""Build a training job without MLflow: the data, the compiled model and its tf.data streams."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from omegaconf import DictConfig

from segexp.config import input_spec
from segexp.data import load_source
from segexp.data.pipeline import center_crop_mask, make_dataset
from segexp.data.source import DataSource
from segexp.models import output_crop
from segexp.models.heads import model_head
from segexp.train import devices


@dataclass
class Built:
    """What :func:`build` returns: everything ``model.fit`` and the result logging work with."""

    source: DataSource
    model: keras.Model  # compiled, in the strategy scope
    task: str  # segmentation | reconstruction
    head: str  # sigmoid | softmax | linear
    steps: int  # batches per epoch
    data: dict[str, tf.data.Dataset]  # batched train / val / test streams
    samples: tuple[np.ndarray, np.ndarray]  # fixed validation images and targets for panels
    gpu: devices.GpuOptions


def seed_everything(seed: int, deterministic: bool) -> None:
    keras.utils.set_random_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()


def build(
    cfg: DictConfig, *, gpu: devices.GpuOptions | None = None, initial_epoch: int = 0
) -> Built:
    """Seed, load the data, build and compile the model (in the strategy scope of ``gpu``, set
    up from ``cfg.trainer`` when not given) and its streams from ``initial_epoch`` on."""
    from segexp.models import build_model

    gpu = gpu or devices.setup(cfg.trainer)
    seed = int(cfg.seed)
    seed_everything(seed, bool(cfg.trainer.deterministic))
    shape = input_spec(cfg)
    source = load_source(cfg.dataset, shape[:2], shape[2], seed)
    task = str(cfg.model.task)
    epochs = int(cfg.trainer.epochs)
    batch_size = gpu.batch_size  # global: per-replica batch_size * replicas
    steps = cfg.trainer.steps_per_epoch or max(1, math.ceil(source.sizes["train"] / batch_size))
    # Build + compile in the strategy scope (the dtype policy is already set).
    with gpu.scope():
        model = build_model(cfg.model, shape, source.num_classes)
        head = model_head(model, task)
        compile_kw = compile_args(cfg, head, source, task, steps, epochs)
        model.compile(**compile_kw, jit_compile=gpu.jit_compile)
    data = build_datasets(
        cfg, source, model, batch_size=batch_size, epochs=epochs, initial_epoch=initial_epoch
    )
    samples = sample_panels(source, int(cfg.trainer.num_sample_images), output_crop(model))
    return Built(source, model, task, head, steps, data, samples, gpu)


def sample_panels(
    source: DataSource, n: int, crop: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """The first ``n`` validation images and their masks, cropped to the model's output."""
    ds = source.splits["val"].take(n).map(lambda x, y: (x, center_crop_mask(y, crop)))
    images, masks = next(iter(ds.batch(n)))
    return images.numpy(), masks.numpy()


def build_datasets(
    cfg: DictConfig,
    source: DataSource,
    model: keras.Model,
    *,
    batch_size: int,
    epochs: int,
    initial_epoch: int = 0,
    augmentation: DictConfig | None = None,
) -> dict[str, tf.data.Dataset]:
    """The batched train / val / test streams ``model.fit`` and ``evaluate`` consume.

    The training stream holds the epochs ``initial_epoch .. epochs-1`` (order and augmentation a
    function of ``(seed, epoch)``); ``augmentation`` overrides ``cfg.augmentation``.
    """
    from segexp.augment import build_augment
    from segexp.models import input_range

    task = str(cfg.model.task)
    augment = build_augment(cfg.augmentation if augmentation is None else augmentation)
    weights = weight_fn(cfg, source)
    return {
        split: make_dataset(
            # Known sizes let Keras count validation/test steps (tiled or file-based splits
            # otherwise have an unknown cardinality).
            source.splits[split].apply(
                tf.data.experimental.assert_cardinality(source.sizes[split])
            ),
            batch_size=batch_size,
            training=split == "train",
            seed=int(cfg.seed),
            augment=augment if split == "train" else None,
            sample_weight_fn=weights,
            cache=cfg.dataset.cache,
            shuffle_buffer=cfg.dataset.shuffle_buffer,
            input_scale=input_range(cfg.model),
            mask_crop=output_crop(model),
            target="image" if task == "reconstruction" else "mask",
            epochs=epochs,
            initial_epoch=initial_epoch,
            steps_per_epoch=cfg.trainer.steps_per_epoch,
        )
        for split in ("train", "val", "test")
    }


def compile_args(
    cfg: DictConfig, head: str, source: DataSource, task: str, steps: int, epochs: int
) -> dict[str, Any]:
    """Optimizer, loss and metrics for ``model.compile``."""
    from segexp.metrics import build_metrics
    from segexp.optim import build_optimizer

    optimizer = build_optimizer(cfg.optimizer, steps_per_epoch=steps, epochs=epochs)
    if task == "reconstruction":
        return {"optimizer": optimizer, "loss": "mse", "metrics": ["mae"]}
    from segexp.losses import build_loss

    loss = build_loss(
        cfg.loss, head=head, num_classes=source.num_classes, ignore_value=source.ignore_value
    )
    metrics = build_metrics(
        head=head,
        num_classes=source.num_classes,
        class_names=source.class_names,
        ignore_value=source.ignore_value,
    )
    return {
        "optimizer": optimizer,
        "loss": loss,
        "metrics": metrics,
    }


def augment_fn(cfg: DictConfig) -> Any:
    from segexp.augment import build_augment

    return build_augment(cfg.augmentation)


def weight_fn(cfg: DictConfig, source: DataSource) -> Any:
    if str(cfg.model.task) == "reconstruction":
        return None
    from segexp.losses import sample_weight_fn

    return sample_weight_fn(
        cfg.loss,
        num_classes=source.num_classes,
        ignore_value=source.ignore_value,
        class_names=list(source.class_names),
    )
