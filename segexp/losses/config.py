"""Loss config parsing shared by the loss builder and the weight-map pipeline function."""

from __future__ import annotations

from typing import Any

from segexp.config import to_dict, with_defaults
from segexp.errors import ConfigError

KINDS = ("bce", "cce", "dice", "bce_dice", "ce_dice", "focal", "unet_weighted", "mse")

# Allowed keys (besides `name`) and defaults per option.
LOSS_DEFAULTS: dict[str, dict[str, Any]] = {
    "auto": {"class_weights": None},
    "bce": {"class_weights": None},
    "cce": {"class_weights": None},
    "dice": {"smooth": 1.0, "include_background": "auto", "batch_dice": False},
    "bce_dice": {
        "smooth": 1.0,
        "include_background": "auto",
        "batch_dice": False,
        "ce_weight": 1.0,
        "dice_weight": 1.0,
        "class_weights": None,
    },
    "focal": {"gamma": 2.0, "alpha": None},
    "unet_weighted": {
        "object_class": "auto",
        "w0": 10.0,
        "sigma": 5.0,
        "class_weights": "balanced",
        "background_only": True,
        "connectivity": 1,
    },
    "mse": {},
}
LOSS_DEFAULTS["ce_dice"] = LOSS_DEFAULTS["bce_dice"]


def _to_dict(cfg: Any) -> dict[str, Any]:
    return to_dict(cfg, "loss")


def resolve_head(head: str, num_classes: int) -> str:
    """``auto`` -> ``sigmoid`` for 2 classes, else ``softmax``; validates the name."""
    head = str(head).lower()
    if head == "auto":
        return "sigmoid" if num_classes == 2 else "softmax"
    if head not in ("sigmoid", "softmax", "linear"):
        raise ConfigError(f"model.head={head!r}: expected auto, sigmoid, softmax or linear")
    return head


def _loss_params(loss_cfg: Any) -> tuple[str, dict[str, Any]]:
    cfg = _to_dict(loss_cfg)
    name = str(cfg.get("name", "auto")).lower()
    if name not in LOSS_DEFAULTS:
        raise ConfigError(f"loss.name={name!r}: expected one of {sorted(LOSS_DEFAULTS)}")
    return name, with_defaults(cfg, LOSS_DEFAULTS[name], f"loss({name})")
