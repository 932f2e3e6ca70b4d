"""The U-Net paper's per-pixel weight map, computed from masks in the input pipeline."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import tensorflow as tf

from segexp.errors import ConfigError
from segexp.losses.config import _loss_params


def unet_weight_map(
    mask: np.ndarray,
    *,
    num_classes: int,
    ignore_value: int | None = None,
    w0: float = 10.0,
    sigma: float = 5.0,
    class_weights: str | list[float] | None = "balanced",
    background_only: bool = True,
    connectivity: int = 1,
) -> np.ndarray:
    """U-Net paper weight map ``w = w_c + w0 * exp(-(d1 + d2)^2 / (2 sigma^2))`` (float32 [H, W]).

    Objects are connected components (``connectivity`` 1: 4-neighbour, 2: 8-neighbour) of the
    foreground (any valid class but 0); d1/d2 are Euclidean distances to the nearest and
    second-nearest object (border term 0 with fewer than two objects). ``class_weights``:
    ``balanced`` (per-mask inverse class frequency, mean 1 over valid pixels), ``none`` (1),
    or a list of K weights. ``background_only`` applies the border term to background pixels
    only (the separation borders). Ignore pixels get weight 0.
    """
    from scipy import ndimage

    mask = np.asarray(mask)
    if mask.ndim == 3:
        mask = mask[..., 0]
    labels = mask.astype(np.int64)
    valid = (labels >= 0) & (labels < num_classes)
    if ignore_value is not None:
        valid &= labels != ignore_value
    n_valid = int(valid.sum())
    weights = np.zeros(mask.shape, np.float64)
    if n_valid == 0:
        return weights.astype(np.float32)
    if isinstance(class_weights, str) and class_weights == "balanced":
        counts = np.bincount(labels[valid], minlength=num_classes).astype(np.float64)
        present = counts > 0
        per_class = np.zeros(num_classes)
        per_class[present] = n_valid / (present.sum() * counts[present])
    elif class_weights is None or (isinstance(class_weights, str) and class_weights == "none"):
        per_class = np.ones(num_classes)
    else:
        per_class = np.asarray(class_weights, np.float64)
    weights[valid] = per_class[labels[valid]]

    foreground = valid & (labels != 0)
    structure = ndimage.generate_binary_structure(2, connectivity)
    components, n_objects = ndimage.label(foreground, structure=structure)
    if n_objects >= 2 and w0 != 0:
        d1 = np.full(mask.shape, np.inf)
        d2 = np.full(mask.shape, np.inf)
        for i in range(1, n_objects + 1):
            d = ndimage.distance_transform_edt(components != i)
            d2 = np.minimum(d2, np.maximum(d1, d))
            d1 = np.minimum(d1, d)
        border = w0 * np.exp(-((d1 + d2) ** 2) / (2.0 * sigma**2))
        region = valid & ~foreground if background_only else valid
        weights[region] += border[region]
    return weights.astype(np.float32)


def _unet_params(prm: dict[str, Any], num_classes: int) -> dict[str, Any]:
    cw = prm["class_weights"]
    if isinstance(cw, list | tuple):
        if len(cw) != num_classes:
            raise ConfigError(f"loss.class_weights={cw}: expected {num_classes} values")
        cw = [float(x) for x in cw]
    elif cw is not None and cw not in ("balanced", "none"):
        raise ConfigError(f"loss.class_weights={cw!r}: expected balanced, none or a list")
    if float(prm["sigma"]) <= 0:
        raise ConfigError(f"loss.sigma={prm['sigma']!r}: expected a number > 0")
    if int(prm["connectivity"]) not in (1, 2):
        raise ConfigError(f"loss.connectivity={prm['connectivity']!r}: expected 1 or 2")
    return {
        "w0": float(prm["w0"]),
        "sigma": float(prm["sigma"]),
        "class_weights": cw,
        "background_only": bool(prm["background_only"]),
        "connectivity": int(prm["connectivity"]),
    }


def sample_weight_fn(
    loss_cfg: Any, *, num_classes: int, ignore_value: int | None
) -> Callable[[tf.Tensor], tf.Tensor] | None:
    """Per-pixel weight function ``mask [H, W, 1] int32 -> [H, W] float32`` for ``unet_weighted``.

    None for every other loss. Runs ``unet_weight_map`` through ``tf.numpy_function`` (scipy).
    """
    name, prm = _loss_params(loss_cfg)
    if name != "unet_weighted":
        return None
    kwargs = _unet_params(prm, num_classes)

    def _np_weights(mask: np.ndarray) -> np.ndarray:
        return unet_weight_map(mask, num_classes=num_classes, ignore_value=ignore_value, **kwargs)

    def weight_fn(mask: tf.Tensor) -> tf.Tensor:
        weights = tf.numpy_function(_np_weights, [mask], tf.float32, stateful=False)
        weights = tf.reshape(weights, tf.shape(mask)[:2])
        weights.set_shape(mask.shape[:2])
        return weights

    return weight_fn
