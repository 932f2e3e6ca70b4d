"""Loss config parsing shared by the loss builder and the weight-map pipeline function."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from segexp.config import to_dict, typed
from segexp.config.schema import option_name
from segexp.config.schema.loss import LOSSES
from segexp.errors import ConfigError

# Concrete loss kinds (``auto`` resolves to one of them by head).
KINDS = tuple(name for name in LOSSES if name != "auto")


# By name, not `_target_`: every option is one Keras loss class (SegmentationLoss) of that kind.
def loss_params(loss_cfg: Any) -> tuple[str, dict[str, Any]]:
    """``(name, keys)`` of ``loss_cfg``, checked against its schema (``name`` excluded)."""
    cfg = to_dict(loss_cfg, "loss")
    name = option_name(cfg, "loss")
    if name not in LOSSES:
        raise ConfigError(f"loss.name={name!r}: expected one of {sorted(LOSSES)}")
    prm = asdict(typed(cfg, LOSSES[name], f"loss({name})"))
    prm.pop("name")
    return name, prm
