"""Where conf/ lives, the input shape a config gives, and config sections as plain dicts."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

PROJECT_ROOT = Path(__file__).resolve().parents[2]
CONF_DIR = PROJECT_ROOT / "conf"


def input_spec(cfg: DictConfig) -> tuple[int, int, int]:
    """The model's input shape: the preset's fixed ``input_shape`` or the dataset's size."""
    if cfg.model.input_shape:
        h, w, c = (int(v) for v in cfg.model.input_shape)
        return h, w, c
    h, w = (int(v) for v in cfg.dataset.image_size)
    return h, w, int(cfg.dataset.channels)


def to_dict(cfg: Any, where: str = "config") -> dict[str, Any]:
    """A config section (DictConfig, mapping or None) as a plain, resolved dict."""
    if cfg is None:
        return {}
    if isinstance(cfg, DictConfig):
        return dict(OmegaConf.to_container(cfg, resolve=True))
    if isinstance(cfg, Mapping):
        return dict(cfg)
    from segexp.errors import ConfigError

    raise ConfigError(f"{where}: expected a mapping, got {type(cfg).__name__}")
