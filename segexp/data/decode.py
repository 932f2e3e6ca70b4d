"""Decoding image and mask files, mapping mask values to class ids, resizing pairs.

Reading is done with Pillow (PNG, JPEG, GIF, BMP, WebP) and tifffile (TIFF), in NumPy, so the
same code validates files eagerly at load time and decodes them inside ``tf.data`` (through
``tf.numpy_function``). Pillow is used for masks on purpose: ``tf.io.decode_png`` expands palette
PNGs to RGB and would lose the class indices stored in them.

Images become float32 ``[H, W, C]`` in ``[0, 1]``:
- uint8 / 255, uint16 (16-bit PNG/TIFF) / 65535, bool as 0/1; floats already in [0, 1] are kept,
  other floats are min-max scaled per image;
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
def to_float(arr: np.ndarray, *, scale: str = "dtype") -> np.ndarray:
    """Convert an array of any dtype to float32 in ``[0, 1]`` (see module docstring)."""
    if arr.dtype == bool:
        return arr.astype(np.float32)
    if np.issubdtype(arr.dtype, np.integer):
        if arr.dtype in (np.uint8, np.int8):
            top = 255.0
        elif arr.dtype in (np.uint16, np.int16):
            top = 65535.0
        else:  # wider ints (Pillow mode "I", int64 arrays): by their range
            hi = int(arr.max()) if arr.size else 0
            top = 255.0 if hi <= 255 else 65535.0 if hi <= 65535 else float(hi)
        return np.clip(arr.astype(np.float32) / top, 0.0, 1.0)
    out = arr.astype(np.float32)
    if out.size == 0:
        return out
    lo, hi = float(np.nanmin(out)), float(np.nanmax(out))
    if lo >= 0.0 and hi <= 1.0:
        return np.nan_to_num(out)
    if lo >= 0.0 and hi <= 255.0 and scale == "dtype":
        return np.nan_to_num(out / 255.0)
    return np.nan_to_num((out - lo) / max(hi - lo, 1e-12))


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
        image = tf.image.resize(image, (h, w), method="bilinear", antialias=True)
        mask = tf.image.resize(mask, (h, w), method="nearest")
    elif mode in ("crop", "pad"):
        if mode == "pad":
            shape = tf.cast(tf.shape(image)[:2], tf.float32)
            scale = tf.minimum(h / shape[0], w / shape[1])
            new = tf.maximum(tf.cast(tf.round(shape * scale), tf.int32), 1)
            new = tf.minimum(new, [h, w])
            image = tf.image.resize(image, new, method="bilinear", antialias=True)
            mask = tf.image.resize(mask, new, method="nearest")
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
