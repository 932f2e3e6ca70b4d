"""Dataset loaders, chosen by ``dataset.name``, and their pre-TensorFlow path checks.

``dataset.name`` names a module ``segexp.data.<name>`` with ``load(cfg, size, channels, seed)``
(synthetic, folder, arrays, oxford_pets, dsb2018, isbi2012, mnist). What they share: ``keys``
(dataset keys), ``decode`` (reading files), ``mask_map`` (stored values to class ids),
``geometry`` (tile/resize/crop/pad), ``pairing`` and ``validate`` (file samples),
``file_source`` and ``array_source`` (streaming them as a ``source.DataSource``), ``split``, and
``pipeline`` (the tf.data input of ``model.fit``)."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from segexp.challenge import check_names
from segexp.errors import ConfigError

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from segexp.data.source import DataSource


def _loader(name: str):
    # By module name, not `_target_`: a loader is a module (``load``, optional ``check_paths``,
    # ``LAYOUT``) that the pre-TensorFlow path checks import without building anything.
    try:
        module = importlib.import_module(f"segexp.data.{name}")
    except ModuleNotFoundError as err:
        if err.name != f"segexp.data.{name}":
            raise
        raise ConfigError(f"dataset.name={name!r}: no loader segexp/data/{name}.py") from None
    if not hasattr(module, "load"):
        raise ConfigError(f"dataset.name={name!r}: segexp/data/{name}.py is not a loader (no load)")
    return module


def check_paths(dataset_cfg: DictConfig) -> None:
    """Before TensorFlow starts: the paths the dataset keys name exist (the loader's one-line
    errors). A loader's own ``check_paths`` decides; otherwise a set ``dataset.root`` must exist."""
    if not {"root", "images", "masks"} & set(dataset_cfg.keys()):
        return  # generated data (synthetic): no loader import, no paths
    name = str(dataset_cfg.name)
    module = _loader(name)
    if hasattr(module, "check_paths"):
        module.check_paths(dataset_cfg)
        return
    layout = getattr(module, "LAYOUT", None)
    if layout is None or dataset_cfg.get("root") in (None, "", "???"):
        return
    from segexp.data.keys import require_root

    require_root(dataset_cfg, dataset=name, layout=layout, where=getattr(module, "WHERE", ""))


def load_source(
    dataset_cfg: DictConfig, image_size: tuple[int, int], channels: int, seed: int
) -> DataSource:
    """Load the dataset named by ``dataset_cfg.name`` at ``image_size`` with ``channels``."""
    check_names(dataset_cfg.get("challenge_metrics"))
    module = _loader(str(dataset_cfg.name))
    return module.load(dataset_cfg, tuple(image_size), int(channels), int(seed))
