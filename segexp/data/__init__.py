"""Dataset loaders: each `segexp.data.<name>` module has ``load(cfg, size, channels, seed)``."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from segexp.challenge import check_names
from segexp.errors import ConfigError

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from segexp.data.source import DataSource


def load_source(
    dataset_cfg: DictConfig, image_size: tuple[int, int], channels: int, seed: int
) -> DataSource:
    """Load the dataset named by ``dataset_cfg.name`` at ``image_size`` with ``channels``."""
    name = str(dataset_cfg.name)
    check_names(dataset_cfg.get("challenge_metrics"))
    try:
        module = importlib.import_module(f"segexp.data.{name}")
    except ModuleNotFoundError as err:
        if err.name != f"segexp.data.{name}":
            raise
        raise ConfigError(f"dataset.name={name!r}: no loader segexp/data/{name}.py") from None
    return module.load(dataset_cfg, tuple(image_size), int(channels), int(seed))
