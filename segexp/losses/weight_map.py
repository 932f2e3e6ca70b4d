"""The U-Net paper's per-pixel weight map, computed once per mask in the input pipeline.

``make_dataset`` computes each sample's map before the cache and carries it through
augmentation as a second int32 mask channel (the float32 bits, :func:`pack_weights`), so
geometric augmentation moves it exactly like the mask (nearest neighbour) and it is never
recomputed per epoch; :func:`unpack_weights` splits it off again before batching. Pixels that a
constant-fill augmentation invents get weight 0.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import tensorflow as tf

from segexp.errors import ConfigError
from segexp.losses.config import loss_params


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
    object_classes: list[int] | None = None,
) -> np.ndarray:
    """U-Net paper weight map ``w = w_c + w0 * exp(-(d1 + d2)^2 / (2 sigma^2))`` (float32 [H, W]).

    Objects are connected components (``connectivity`` 1: 4-neighbour, 2: 8-neighbour) of the
    pixels of ``object_classes`` (None: any valid class but 0); d1/d2 are Euclidean distances to
    the nearest and second-nearest object (border term 0 with fewer than two objects).
    ``class_weights``: ``balanced`` (per-mask inverse class frequency, mean 1 over valid
    pixels), ``none`` (1), or a list of K weights. ``background_only`` applies the border term
    to pixels outside the objects only (the separating borders). Ignore pixels get weight 0.
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

    if object_classes is None:
        foreground = valid & (labels != 0)
    else:
        foreground = valid & np.isin(labels, np.asarray(object_classes, np.int64))
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


def weight_map_params(prm: dict[str, Any], num_classes: int) -> dict[str, Any]:
    """The :func:`unet_weight_map` settings of an ``unet_weighted`` loss's keys ``prm``
    (:func:`segexp.losses.config.loss_params`), checked (``object_class`` still unresolved)."""
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
        "object_class": prm["object_class"],
        "w0": float(prm["w0"]),
        "sigma": float(prm["sigma"]),
        "class_weights": cw,
        "background_only": bool(prm["background_only"]),
        "connectivity": int(prm["connectivity"]),
    }


def object_classes(
    value: Any, num_classes: int, class_names: list[str] | None = None
) -> list[int] | None:
    """Class ids of ``loss.object_class``: ``auto`` (None: every class but 0, the foreground of a
    binary task), a class id, a class name, or a list of them."""
    if value is None or (isinstance(value, str) and value.lower() == "auto"):
        return None
    names = [str(c) for c in (class_names or [])]
    ids = []
    for item in value if isinstance(value, list | tuple) else [value]:
        if isinstance(item, int) and not isinstance(item, bool) and 0 <= item < num_classes:
            ids.append(int(item))
        elif isinstance(item, str) and item in names:
            ids.append(names.index(item))
        else:
            raise ConfigError(
                f"loss.object_class={value!r}: expected auto, a class id 0..{num_classes - 1} "
                f"or a class name of {names} (dataset.class_names)"
            )
    return ids


def pack_weights(mask: tf.Tensor, weights: tf.Tensor) -> tf.Tensor:
    """``mask [H, W, 1]`` and ``weights [H, W]`` float32 as one int32 ``[H, W, 2]`` mask."""
    bits = tf.bitcast(tf.cast(weights, tf.float32), tf.int32)[..., None]
    return tf.concat([tf.cast(mask, tf.int32), bits], axis=-1)


def unpack_weights(packed: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Inverse of :func:`pack_weights`: ``(mask [H, W, 1] int32, weights [H, W] float32)``."""
    return packed[..., :1], tf.bitcast(packed[..., 1], tf.float32)


def sample_weight_fn(
    loss_cfg: Any,
    *,
    num_classes: int,
    ignore_value: int | None,
    class_names: list[str] | None = None,
) -> Callable[[tf.Tensor], tf.Tensor] | None:
    """Per-pixel weight function ``mask [H, W, 1] int32 -> [H, W] float32`` for ``unet_weighted``.

    None for every other loss. Runs ``unet_weight_map`` through ``tf.numpy_function`` (scipy);
    ``class_names`` resolve a named ``loss.object_class``.
    """
    name, prm = loss_params(loss_cfg)
    if name != "unet_weighted":
        return None
    kwargs = weight_map_params(prm, num_classes)
    kwargs["object_classes"] = object_classes(kwargs.pop("object_class"), num_classes, class_names)

    def _np_weights(mask: np.ndarray) -> np.ndarray:
        return unet_weight_map(mask, num_classes=num_classes, ignore_value=ignore_value, **kwargs)

    def weight_fn(mask: tf.Tensor) -> tf.Tensor:
        weights = tf.numpy_function(_np_weights, [mask], tf.float32, stateful=False)
        weights = tf.reshape(weights, tf.shape(mask)[:2])
        weights.set_shape(mask.shape[:2])
        return weights

    return weight_fn
