"""A config as MLflow params: flattened dotted keys, shortened values, readable run names."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from segexp.config.keys import override_key
from segexp.config.secrets import MASK, is_secret_key, redact

# Keys that describe where and how a run is tracked, not what it trains.
RUN_NAME_EXCLUDED_PREFIXES = ("tracking.", "hydra.", "resume", "trainer.verbose", "verbose")


def flatten(cfg: DictConfig | dict, prefix: str = "") -> dict[str, Any]:
    """Flatten a config to dotted keys; lists stay as values. Secrets are redacted."""
    container = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg
    flat: dict[str, Any] = {}
    for key, value in container.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{dotted}."))
        elif is_secret_key(key) and value is not None:
            flat[dotted] = MASK
        elif isinstance(value, str):
            flat[dotted] = redact(value)
        else:
            flat[dotted] = value
    return flat


def as_params(cfg: DictConfig, max_length: int = 6000) -> dict[str, str]:
    """Config values as MLflow params: strings, over-long values shortened with a marker.

    The full, unshortened config is always logged as ``config.yaml``.
    """
    params = {}
    for key, value in flatten(cfg).items():
        text = "null" if value is None else str(value)
        if len(text) > max_length:
            marker = f"...[{len(text)} chars, see config.yaml]"
            text = text[: max_length - len(marker)] + marker
        params[key] = text
    return params


def run_name(cfg: DictConfig, overrides: list[str] | ListConfig) -> str:
    """Readable run name: the job's own overrides, or ``<model>-<dataset>`` without any."""
    if cfg.tracking.get("run_name"):
        return str(cfg.tracking.run_name)
    keys = [override_key(o) for o in overrides]
    kept = [
        redact(o)
        for i, o in enumerate(overrides)
        if not keys[i].startswith(RUN_NAME_EXCLUDED_PREFIXES)
        and keys[i] not in keys[i + 1 :]  # a later override of the same key wins
    ]
    if kept:
        return ",".join(kept)
    return f"{cfg.model.name}-{cfg.dataset.name}"
