"""Image geometry, the one rule of training and prediction: how images reach the model size.

Images reach the model size by ``dataset.tile`` (patches), then ``dataset.resize`` (resize, crop
or pad), applied to tf.data pairs at training time, recorded with the model
(:func:`training_geometry`) and replayed on whole images by segexp-predict (:func:`to_model_grid`,
:func:`from_model_grid`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from segexp.data.keys import opt
from segexp.errors import ConfigError

RESIZE_MODES = ("resize", "crop", "pad")


def resample(x: Any, size: Any, *, labels: bool = False) -> Any:
    """Resize an ``[H, W, C]`` array or tensor to ``size``: bilinear with antialiasing for
    images and probabilities, nearest neighbour for class ids (``labels``). The one resampling
    rule of training (:func:`resize_pair`) and of prediction (:func:`to_model_grid`)."""
    import tensorflow as tf

    if labels:
        return tf.image.resize(x, size, method="nearest")
    return tf.image.resize(x, size, method="bilinear", antialias=True)


def letterbox_size(shape: Any, size: tuple[int, int]) -> Any:
    """``(h, w)`` an image of ``shape`` is scaled to before padding to ``size`` (``pad`` mode):
    the aspect ratio kept, rounded half to even, at least 1, at most ``size``."""
    import tensorflow as tf

    h, w = int(size[0]), int(size[1])
    shape = tf.cast(shape, tf.float32)
    scale = tf.minimum(h / shape[0], w / shape[1])
    new = tf.maximum(tf.cast(tf.round(shape * scale), tf.int32), 1)
    return tf.minimum(new, [h, w])


def resize_pair(
    image: Any, mask: Any, size: tuple[int, int], mode: str = "resize", fill: int = 0
) -> tuple[Any, Any]:
    """Bring an ``(image, mask)`` pair to ``size`` (TF tensors, inside tf.data).

    ``resize``: bilinear (antialiased) for the image, nearest neighbour for the mask.
    ``crop``: centre crop, padding when smaller (image with 0, mask with ``fill``).
    ``pad``: keep the aspect ratio, scale to fit, then pad (letterbox).
    """
    import tensorflow as tf

    h, w = int(size[0]), int(size[1])
    channels = image.shape[-1]
    if mode == "resize":
        image = resample(image, (h, w))
        mask = resample(mask, (h, w), labels=True)
    elif mode in ("crop", "pad"):
        if mode == "pad":
            new = letterbox_size(tf.shape(image)[:2], (h, w))
            image = resample(image, new)
            mask = resample(mask, new, labels=True)
        image, mask = _crop_or_pad(image, mask, h, w, fill)
    else:
        raise ConfigError(f"dataset.resize={mode!r}: expected one of {', '.join(RESIZE_MODES)}")
    image = tf.clip_by_value(tf.cast(image, tf.float32), 0.0, 1.0)
    image = tf.ensure_shape(image, (h, w, channels))
    mask = tf.ensure_shape(tf.cast(mask, tf.int32), (h, w, 1))
    return image, mask


def _crop_or_pad(image: Any, mask: Any, h: int, w: int, fill: int) -> tuple[Any, Any]:
    import tensorflow as tf

    shape = tf.shape(image)
    ph, pw = tf.maximum(h - shape[0], 0), tf.maximum(w - shape[1], 0)
    pads = [[ph // 2, ph - ph // 2], [pw // 2, pw - pw // 2], [0, 0]]
    image = tf.pad(image, pads)
    mask = tf.pad(mask, pads, constant_values=fill)
    shape = tf.shape(image)
    top, left = (shape[0] - h) // 2, (shape[1] - w) // 2
    return image[top : top + h, left : left + w], mask[top : top + h, left : left + w]


def tile_pair(image: Any, mask: Any, tile: int) -> tuple[Any, Any]:
    """Cut a pair into non-overlapping ``tile x tile`` patches (remainders dropped):
    returns ``[N, tile, tile, C]`` and ``[N, tile, tile, 1]``."""
    import tensorflow as tf

    def cut(x: Any) -> Any:
        c = x.shape[-1]
        shape = tf.shape(x)
        nh, nw = shape[0] // tile, shape[1] // tile
        x = x[: nh * tile, : nw * tile]
        x = tf.reshape(x, [nh, tile, nw, tile, c])
        x = tf.transpose(x, [0, 2, 1, 3, 4])
        return tf.reshape(x, [-1, tile, tile, c])

    return cut(image), cut(mask)


def tiles_per_image(shape: tuple[int, int], tile: int | None) -> int:
    """How many patches :func:`tile_pair` cuts from an image of ``shape``."""
    if not tile:
        return 1
    return (shape[0] // tile) * (shape[1] // tile)


def apply_geometry(ds: Any, cfg: Any, image_size: tuple[int, int], fill: int) -> Any:
    """Optional tiling (``tile: 256``), then resize/crop/pad to ``image_size``."""
    import tensorflow as tf

    tile = opt(cfg, "tile")
    mode = str(cfg.resize)
    if mode not in RESIZE_MODES:
        raise ConfigError(f"dataset.resize={mode!r}: expected one of {RESIZE_MODES}")
    if tile:
        t = int(tile)
        ds = ds.flat_map(lambda im, m: tf.data.Dataset.from_tensor_slices(tile_pair(im, m, t)))
    return ds.map(
        lambda im, m: resize_pair(im, m, image_size, mode, fill),
        num_parallel_calls=tf.data.AUTOTUNE,
    )


def training_geometry(dataset_cfg: Any, size: tuple[int, int] | list[int]) -> dict[str, Any]:
    """How training brought images to the model input ``size`` (stored with the model).

    ``kind``: ``resize`` / ``pad`` / ``crop`` (``dataset.resize``, whole images), ``tile``
    (``dataset.tile`` patches cut at native resolution, then brought to ``size`` by ``then``),
    or ``native`` (generated at ``size``, no resampling)."""
    h, w = (int(v) for v in size)
    tile, resize = dataset_cfg.get("tile"), dataset_cfg.get("resize")
    geo: dict[str, Any] = {
        "size": [h, w],
        "image_interpolation": "bilinear_antialias",
        "mask_interpolation": "nearest",
    }
    if tile:
        geo.update(kind="tile", tile=int(tile), then=str(resize or "resize"))
    elif resize is None:
        geo.update(kind="native")
    else:
        geo.update(kind=str(resize))
    return geo


def _tile_scale(geo: dict[str, Any] | None) -> tuple[float, float]:
    if not geo or geo.get("kind") != "tile" or geo.get("then") != "resize":
        return 1.0, 1.0
    t = float(geo["tile"])
    return geo["size"][0] / t, geo["size"][1] / t


def to_model_grid(image: np.ndarray, geo: dict[str, Any] | None, mode: str) -> np.ndarray:
    """A float ``[H, W, C]`` image as training resampled it: the whole image at the model size
    (``resize``; letterboxed for ``pad``), or rescaled like the training tiles (``tile``)."""
    import tensorflow as tf

    h, w = image.shape[:2]
    if mode == "tile":
        sy, sx = _tile_scale(geo)
        if (sy, sx) == (1.0, 1.0):
            return image
        size = (max(round(h * sy), 1), max(round(w * sx), 1))
        return np.asarray(resample(image, size), np.float32)
    if geo is None:
        raise ConfigError("mode=resize needs the model input size")
    size = tuple(int(v) for v in geo["size"])
    # No clipping: bilinear resampling (a non-negative kernel) stays within the image's own
    # range, which is [0, input_range] for models that rescale inside (e.g. 0..255).
    if geo.get("kind") != "pad":
        return np.asarray(resample(image, size), np.float32)
    nh, nw = (int(v) for v in np.asarray(letterbox_size((h, w), size)))
    small = resample(image, (nh, nw))
    top, left = (size[0] - nh) // 2, (size[1] - nw) // 2
    pads = [[top, size[0] - nh - top], [left, size[1] - nw - left], [0, 0]]
    return np.asarray(tf.pad(small, pads), np.float32)


def from_model_grid(
    pred: np.ndarray,
    shape: tuple[int, int],
    geo: dict[str, Any] | None,
    mode: str,
    *,
    labels: bool,
) -> np.ndarray:
    """Undo :func:`to_model_grid` on a prediction ``[h, w]`` (class ids, ``labels``: nearest)
    or ``[h, w, K]`` (probabilities: bilinear), back to the original ``shape``."""
    shape = (int(shape[0]), int(shape[1]))
    if tuple(pred.shape[:2]) == shape:
        return pred
    if mode == "resize" and geo is not None and geo.get("kind") == "pad":
        size = tuple(int(v) for v in geo["size"])
        nh, nw = (int(v) for v in np.asarray(letterbox_size(shape, size)))
        top, left = (size[0] - nh) // 2, (size[1] - nw) // 2
        pred = pred[top : top + nh, left : left + nw]
    plane = pred.ndim == 2
    out = np.asarray(resample(pred[..., None] if plane else pred, shape, labels=labels))
    out = out[..., 0] if plane else out
    return out.astype(pred.dtype) if labels else out.astype(np.float32)
