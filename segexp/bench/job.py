"""What the benchmark calls of segexp's training job: ``train`` (the function ``segexp-train``
runs) and ``build`` (the job's data and model build, without MLflow)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig

from segexp.runner import train  # noqa: F401  (segexp.train.lifecycle.train)


@dataclass
class Built:
    """The built job the benchmark reads: data source, compiled model, batched streams."""

    source: Any  # segexp.data.source.DataSource
    model: Any  # keras.Model, compiled as segexp-train compiles it
    task: str
    head: str
    steps: int  # batches per epoch
    data: dict[str, Any]  # batched train / val / test tf.data streams, as model.fit gets them


def build(cfg: DictConfig) -> Built:
    """The data and model ``train(cfg)`` builds, in the same order from the same seed (so the
    same initial weights). Stands for ``segexp.train.build.build``."""
    import math

    from segexp import devices
    from segexp.config import input_spec
    from segexp.data import load_source
    from segexp.models import build_model
    from segexp.runner import build_datasets, compile_args, head_of, seed_everything

    gpu = devices.setup(cfg.trainer)
    seed_everything(int(cfg.seed), bool(cfg.trainer.get("deterministic", False)))
    shape = input_spec(cfg)
    source = load_source(cfg.dataset, shape[:2], shape[2], int(cfg.seed))
    task = str(cfg.model.get("task", "segmentation"))
    epochs = int(cfg.trainer.epochs)
    steps = cfg.trainer.get("steps_per_epoch") or max(
        1, math.ceil(source.sizes["train"] / gpu.batch_size)
    )
    with gpu.scope():
        model = build_model(cfg.model, shape, source.num_classes)
        head = head_of(model, task)
        model.compile(**compile_args(cfg, head, source, task, steps, epochs))
    data = build_datasets(cfg, source, model, batch_size=gpu.batch_size, epochs=epochs)
    return Built(source=source, model=model, task=task, head=head, steps=steps, data=data)
