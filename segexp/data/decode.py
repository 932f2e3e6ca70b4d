"""The one preprocessing path of training and prediction: decoding image and mask files,
channel conversion, range scaling, mask values to class ids, resampling/crop/pad/tile geometry
and the input contract a model records (:func:`training_geometry`) and predict follows.

Reading is done with Pillow (PNG, JPEG, GIF, BMP, WebP) and tifffile (TIFF), in NumPy, so the
same code validates files eagerly at load time and decodes them inside ``tf.data`` (through
``tf.numpy_function``). Pillow is used for masks on purpose: ``tf.io.decode_png`` expands palette
PNGs to RGB and would lose the class indices stored in them.

Images become float32 ``[H, W, C]`` in ``[0, 1]`` (:func:`value_range`, :func:`to_float`):
- uint8 / 255, uint16 (16-bit PNG/TIFF) / 65535, bool as 0/1; floats already in [0, 1] are kept,
  floats in [0, 255] divided by 255, other floats min-max scaled (per image for files, over
  the whole array for array loaders);
- alpha is dropped (RGBA -> RGB, LA -> L), palette and CMYK images become RGB;
- grayscale -> RGB repeats the channel, RGB -> grayscale uses ITU-R 601 luma (as Pillow does).

Masks stay integers (raw stored values), then :class:`MaskMap` turns them into class ids:
- palette masks give their palette *indices* (VOC style, e.g. a 255 "void" band), unless the
  palette is grey (r == g == b, typical for GIF), where the grey levels are used;
- RGB(A) masks are accepted only when the three channels are equal; mode "1" gives 0 / 255.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from segexp.errors import ConfigError, DataError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".gif", ".bmp", ".webp")
TIFF_EXTENSIONS = (".tif", ".tiff")
RESIZE_MODES = ("resize", "crop", "pad")

_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


# ----------------------------------------------------------------------------- raw reading
def _source(path: str | Path, data: bytes | None) -> Any:
    return io.BytesIO(data) if data is not None else str(path)


def _read_tiff(path: str | Path, data: bytes | None) -> np.ndarray:
    import tifffile

    with tifffile.TiffFile(_source(path, data)) as tif:
        if len(tif.pages) > 1 and len(tif.series) and tif.series[0].shape[0] == len(tif.pages):
            raise DataError(
                f"{path}: multi-page TIFF ({len(tif.pages)} pages) where one image was expected; "
                "use a stack loader (dataset=isbi2012) or save one file per slice"
            )
        return tif.pages[0].asarray()


def read_raw(
    path: str | Path, data: bytes | None = None, *, mask: bool = False, palette: str = "auto"
) -> np.ndarray:
    """Read one image file as an array ``[H, W]`` or ``[H, W, C]`` in its stored dtype.

    ``data`` are the file's bytes when already read. Raises :class:`DataError` naming the file
    when it cannot be decoded. ``mask=True`` keeps stored values (see module docstring);
    ``palette`` is ``auto``, ``index`` or ``gray`` for palette masks.
    """
    suffix = Path(str(path)).suffix.lower()
    try:
        if suffix in TIFF_EXTENSIONS:
            try:
                arr = _read_tiff(path, data)
            except DataError:
                raise
            except Exception:  # compressed TIFFs tifffile cannot decode alone: try Pillow
                arr = _read_pil(path, data, mask=mask, palette=palette)
        else:
            arr = _read_pil(path, data, mask=mask, palette=palette)
    except DataError:
        raise
    except Exception as err:
        raise DataError(f"cannot read {path}: corrupt or unsupported file ({_why(err)})") from None
    if arr.ndim not in (2, 3) or arr.size == 0:
        raise DataError(f"cannot read {path}: unexpected array shape {arr.shape}")
    return arr


def _read_pil(path: str | Path, data: bytes | None, *, mask: bool, palette: str) -> np.ndarray:
    from PIL import Image

    with Image.open(_source(path, data)) as im:
        im.load()
        mode = im.mode
        if mask:
            if mode == "P":
                return _palette_mask(im, palette)
            if mode == "1":
                return np.asarray(im.convert("L"))
            if mode in ("PA", "CMYK", "YCbCr", "LAB", "HSV"):
                return np.asarray(im.convert("RGB"))
            return np.asarray(im)
        if mode == "1":
            return np.asarray(im)  # bool
        if mode in ("P", "PA"):
            rgba = "transparency" in im.info or mode == "PA"
            return np.asarray(im.convert("RGBA" if rgba else "RGB"))
        if mode in ("CMYK", "YCbCr", "LAB", "HSV"):
            return np.asarray(im.convert("RGB"))
        return np.asarray(im)


def _palette_mask(im: Any, palette: str) -> np.ndarray:
    indices = np.asarray(im)
    if palette == "index":
        return indices
    pal = np.asarray(im.getpalette() or [], np.int32).reshape(-1, 3)
    used = np.unique(indices)
    used = used[used < len(pal)]
    grey = len(pal) > 0 and bool(
        np.all(pal[used, 0] == pal[used, 1]) and np.all(pal[used, 1] == pal[used, 2])
    )
    if palette == "gray" or (palette == "auto" and grey):
        lut = np.zeros(256, np.uint8)
        lut[: len(pal)] = pal[:256, 0]
        return lut[indices]
    return indices


def image_shape(path: str | Path, data: bytes | None = None) -> tuple[int, int]:
    """``(height, width)`` from the file header only (no pixel decoding)."""
    suffix = Path(str(path)).suffix.lower()
    try:
        if suffix in TIFF_EXTENSIONS:
            import tifffile

            with tifffile.TiffFile(_source(path, data)) as tif:
                page = tif.pages[0]
                return int(page.imagelength), int(page.imagewidth)
        from PIL import Image

        with Image.open(_source(path, data)) as im:
            return int(im.height), int(im.width)
    except Exception as err:
        raise DataError(f"cannot read {path}: corrupt or unsupported file ({_why(err)})") from None


def _why(err: Exception) -> str:
    """A short reason for a decoding failure (no object reprs)."""
    if type(err).__name__ == "UnidentifiedImageError":
        return "not a recognised image format"
    text = str(err).splitlines()[0] if str(err) else type(err).__name__
    return text if " object at 0x" not in text else type(err).__name__


# ----------------------------------------------------------------------------- images
def value_range(arr: np.ndarray) -> tuple[float, float]:
    """``(offset, divisor)`` that bring ``arr`` into ``[0, 1]`` (see module docstring): the
    dtype's range for integers, floats kept in [0, 1], /255 in [0, 255], else min-max. Array
    loaders take it over the whole array, files per image (:func:`to_float`)."""
    if arr.dtype == bool:
        return 0.0, 1.0
    if np.issubdtype(arr.dtype, np.integer):
        if arr.dtype in (np.uint8, np.int8):
            return 0.0, 255.0
        if arr.dtype in (np.uint16, np.int16):
            return 0.0, 65535.0
        hi = int(arr.max()) if arr.size else 0  # wider ints (Pillow mode "I"): by their range
        return 0.0, 255.0 if hi <= 255 else 65535.0 if hi <= 65535 else float(hi)
    lo, hi = np.inf, -np.inf
    for start in range(0, len(arr), 1024):  # chunked: memory-mapped arrays stay on disk
        part = np.asarray(arr[start : start + 1024])
        if part.size and np.isfinite(part).any():
            lo, hi = min(lo, float(np.nanmin(part))), max(hi, float(np.nanmax(part)))
    if not np.isfinite(lo) or (lo >= 0.0 and hi <= 1.0):
        return 0.0, 1.0
    if lo >= 0.0 and hi <= 255.0:
        return 0.0, 255.0
    return lo, max(hi - lo, 1e-12)


def to_float(arr: np.ndarray, *, scaling: tuple[float, float] | None = None) -> np.ndarray:
    """Convert an array of any dtype to float32 in ``[0, 1]`` by ``scaling = (offset,
    divisor)`` (:func:`value_range` of ``arr`` itself unless given); NaNs become 0."""
    offset, divisor = value_range(arr) if scaling is None else scaling
    out = arr.astype(np.float32)
    if offset or divisor != 1.0:
        out = (out - np.float32(offset)) / np.float32(divisor)
    return np.clip(np.nan_to_num(out), 0.0, 1.0)


def convert_channels(img: np.ndarray, channels: int, name: str = "image") -> np.ndarray:
    """``[H, W]`` or ``[H, W, C]`` float image -> ``[H, W, channels]``; alpha is dropped."""
    if img.ndim == 2:
        img = img[..., None]
    c = img.shape[-1]
    if c == channels:
        return img
    if c == 2:
        img, c = img[..., :1], 1
    elif c == 4:
        img, c = img[..., :3], 3
    if c == channels:
        return img
    if c == 1 and channels == 3:
        return np.repeat(img, 3, axis=-1)
    if c == 3 and channels == 1:
        return (img @ _LUMA)[..., None].astype(np.float32)
    raise DataError(f"{name}: has {img.shape[-1]} channels, cannot convert to {channels}")


def read_image(path: str | Path, channels: int, data: bytes | None = None) -> np.ndarray:
    """Decode an image file to float32 ``[H, W, channels]`` in ``[0, 1]``."""
    return convert_channels(to_float(read_raw(path, data)), channels, str(path))


# ----------------------------------------------------------------------------- masks
def mask_plane(raw: np.ndarray, name: str = "mask") -> np.ndarray:
    """A raw mask array -> one integer plane ``[H, W]`` of stored values."""
    if raw.ndim == 3:
        if raw.shape[-1] == 1:
            raw = raw[..., 0]
        elif raw.shape[-1] in (2, 3, 4):
            colour = raw[..., : 3 if raw.shape[-1] >= 3 else 1]
            if colour.shape[-1] == 3 and not (
                np.array_equal(colour[..., 0], colour[..., 1])
                and np.array_equal(colour[..., 1], colour[..., 2])
            ):
                raise DataError(
                    f"{name}: colour (RGB) mask; masks must hold class values "
                    "(grey or palette-indexed PNG)"
                )
            raw = colour[..., 0]
        else:
            raise DataError(f"{name}: mask has {raw.shape[-1]} channels, expected 1")
    if raw.dtype == bool:
        return raw.astype(np.uint8) * 255
    return integral(raw, name)


def integral(raw: np.ndarray, name: str = "mask") -> np.ndarray:
    """Float masks holding whole numbers -> int64 (any shape); DataError otherwise."""
    if np.issubdtype(raw.dtype, np.floating):
        if not np.all(np.isfinite(raw)) or not np.all(raw == np.round(raw)):
            raise DataError(f"{name}: mask holds non-integer values")
        return raw.astype(np.int64)
    if raw.dtype == bool:
        return raw.astype(np.int64)
    return raw


def read_mask(path: str | Path, data: bytes | None = None, palette: str = "auto") -> np.ndarray:
    """Decode a mask file to its stored integer values ``[H, W]``."""
    return mask_plane(read_raw(path, data, mask=True, palette=palette), str(path))


class MaskMap:
    """Stored mask values -> class ids.

    ``mask_values`` maps stored values to class ids (``None``: identity, values must already be
    ``0..num_classes-1``). ``ignore_value`` (e.g. 255) is kept as-is so losses and metrics skip
    it. ``threshold`` binarises instead: ``value >= threshold`` -> 1, else 0.
    """

    def __init__(
        self,
        num_classes: int,
        mask_values: Mapping[Any, Any] | None = None,
        ignore_value: int | None = None,
        threshold: float | None = None,
    ) -> None:
        self.num_classes = int(num_classes)
        self.ignore_value = None if ignore_value is None else int(ignore_value)
        self.threshold = None if threshold is None else float(threshold)
        if mask_values is None:
            table = {i: i for i in range(self.num_classes)}
        else:
            try:
                table = {int(k): int(v) for k, v in dict(mask_values).items()}
            except (TypeError, ValueError):
                raise ConfigError(
                    f"dataset.mask_values={dict(mask_values)}: expected a map of integers "
                    "{stored value: class id}"
                ) from None
        for stored, cls in table.items():
            if not (0 <= cls < self.num_classes) and cls != self.ignore_value:
                raise ConfigError(
                    f"dataset.mask_values maps {stored} to {cls}: class ids must be "
                    f"0..{self.num_classes - 1} or ignore_value ({self.ignore_value})"
                )
        if self.ignore_value is not None and table.get(self.ignore_value, self.ignore_value) != (
            self.ignore_value
        ):
            raise ConfigError(
                f"dataset.mask_values maps {self.ignore_value} (dataset.ignore_value) to class "
                f"{table[self.ignore_value]}: drop it from the map, e.g. "
                "'dataset.mask_values={0:0,1:1}' (a plain override replaces the preset's map)"
            )
        if self.ignore_value is not None and self.ignore_value not in table:
            table[self.ignore_value] = self.ignore_value
        self.table = table
        size = max(max(table) + 1, 256) if table else 256
        self._lut = np.full(size, -1, np.int64)
        for stored, cls in table.items():
            if stored >= 0:
                self._lut[stored] = cls

    def describe(self) -> str:
        """The accepted stored values, for error messages."""
        if self.threshold is not None:
            return f"any (threshold {self.threshold:g})"
        return str(sorted(self.table))

    def invalid_values(self, raw: np.ndarray, limit: int = 8) -> list[int]:
        """Stored values in ``raw`` that the map does not cover (at most ``limit``)."""
        if self.threshold is not None:
            return []
        values = _present_values(raw)
        bad = [int(v) for v in values if int(v) not in self.table]
        return bad[:limit]

    def apply(self, raw: np.ndarray) -> np.ndarray:
        """Map stored values to int32 class ids (unknown values become ignore_value or -1)."""
        if self.threshold is not None:
            return (raw >= self.threshold).astype(np.int32)
        raw = np.asarray(raw)
        if raw.size and (raw.min() < 0 or raw.max() >= len(self._lut)):
            out = np.full(raw.shape, -1, np.int32)
            for stored, cls in self.table.items():
                out[raw == stored] = cls
        else:
            out = self._lut[raw].astype(np.int32)
        if self.ignore_value is not None:
            out[out < 0] = self.ignore_value
        return out

    def class_counts(self, ids: np.ndarray) -> np.ndarray:
        """Pixel counts per class id (``num_classes`` entries; ignore pixels excluded)."""
        ids = ids[(ids >= 0) & (ids < self.num_classes)]
        return np.bincount(ids.ravel(), minlength=self.num_classes)[: self.num_classes]


def _present_values(raw: np.ndarray) -> np.ndarray:
    if raw.size and np.issubdtype(raw.dtype, np.integer) and raw.min() >= 0 and raw.max() < 70000:
        return np.flatnonzero(np.bincount(raw.ravel()))
    return np.unique(raw)


def mask_map_from_cfg(cfg: Any, num_classes: int) -> MaskMap:
    """Build the :class:`MaskMap` of a dataset config (keys mask_values, ignore_value,
    mask_threshold)."""
    values = cfg.get("mask_values")
    if values is not None and hasattr(values, "items"):
        values = {k: v for k, v in values.items()}
    return MaskMap(num_classes, values, cfg.get("ignore_value"), cfg.get("mask_threshold"))


# ----------------------------------------------------------------------------- TF geometry
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


# ----------------------------------------------------------------------------- input contract
PREDICT_MODES = ("auto", "resize", "tile")


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


def describe_geometry(geo: dict[str, Any]) -> str:
    """What training did, in words (for segexp-predict's mode message)."""
    h, w = geo["size"]
    kind = geo.get("kind")
    if kind == "resize":
        return f"whole images resized to {h}x{w}"
    if kind == "pad":
        return f"whole images scaled to fit {h}x{w} and padded (letterbox)"
    if kind == "crop":
        return f"native-resolution centre crops of {h}x{w}"
    if kind == "tile":
        t = int(geo["tile"])
        extra = "" if [t, t] == [h, w] else f", resized to {h}x{w}"
        return f"native-resolution {t}x{t} tiles (dataset.tile={t}){extra}"
    return f"{h}x{w} images at their native resolution"


def predict_mode(geo: dict[str, Any] | None, requested: str = "auto") -> tuple[str, str]:
    """``(mode, reason)``: ``resize`` (whole image at the model size) or ``tile`` (sliding
    window), chosen from the training geometry unless ``requested`` says which."""
    if requested not in PREDICT_MODES:
        raise ConfigError(f"mode={requested!r}: expected one of {', '.join(PREDICT_MODES)}")
    if not geo or "kind" not in geo:
        if requested != "auto":
            return requested, "as requested (the model records no training geometry)"
        return "tile", (
            "the model's metadata records no training geometry (saved by an older segexp): "
            "sliding the input size over native-resolution images; pass mode=resize if it was "
            "trained on resized whole images"
        )
    trained = f"the model was trained on {describe_geometry(geo)}"
    if requested != "auto":
        return requested, f"as requested ({trained})"
    return ("resize" if geo["kind"] in ("resize", "pad") else "tile"), f"because {trained}"


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
