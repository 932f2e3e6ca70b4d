"""Decoding image and mask files: the one reading path of training and prediction.

Decoding image and mask files, the one reading path of training and prediction: channel
conversion and range scaling of images, stored integer values of masks (class ids are
:mod:`segexp.data.mask_map`'s, sizes :mod:`segexp.data.geometry`'s).

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
The model sees them times ``model.input_range`` (:func:`to_model_input`).

Masks stay integers (raw stored values), which :class:`~segexp.data.mask_map.MaskMap` turns
into class ids:
- palette masks give their palette *indices* (VOC style, e.g. a 255 "void" band), unless the
  palette is grey (r == g == b, typical for GIF), where the grey levels are used;
- RGB(A) masks are accepted only when the three channels are equal; mode "1" gives 0 / 255.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

from segexp.errors import DataError, first_line

TIFF_EXTENSIONS = (".tif", ".tiff")

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
    text = first_line(err)
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


def to_model_input(images: Any, input_range: float) -> Any:
    """Images in ``[0, 1]`` (NumPy array or tf tensor) as the model takes them: times
    ``input_range`` (:func:`segexp.models.input_range`; 255 for models that rescale raw pixels
    inside), in the images' own float dtype; unchanged at 1."""
    scale = float(input_range)
    return images if scale == 1.0 else images * scale


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
