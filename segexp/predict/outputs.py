"""segexp-predict's files: the input images it reads and what it writes for each.

Input images found and read as the model input, and what it writes for each (the class-id mask
PNG, optional colour overlay and probabilities), with progress and per-file failures reported
instead of stopping the batch."""

from __future__ import annotations

import glob
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from segexp.config.schema.dataset import IMAGE_EXTENSIONS
from segexp.data.decode import (
    convert_channels,
    read_image,
    read_raw,
    to_model_input,
)
from segexp.errors import ConfigError, DataError, SegexpError, first_line
from segexp.palette import OVERLAY_ALPHA, class_colours
from segexp.predict.contract import NORMALIZATIONS, PROG


def model_input(
    path: str | Path, channels: int, normalization: str = "unit", input_range: float = 1.0
) -> np.ndarray:
    """Read an image file as the model input ``[H, W, channels]`` float32, as training did.

    ``unit``: decoded and scaled to [0, 1] by :func:`segexp.data.decode.read_image` (the
    loaders' function), times ``input_range`` (255 for models that rescale inside);
    ``none``: the stored pixel values as floats.
    """
    if normalization == "unit":
        image = read_image(path, channels)
    elif normalization == "none":
        raw = read_raw(path).astype(np.float32)
        image = convert_channels(raw, channels, str(path))
    else:
        raise ConfigError(f"normalization={normalization!r}: expected one of {NORMALIZATIONS}")
    return to_model_input(image, input_range)


def display_rgb(image: np.ndarray) -> np.ndarray:
    """An ``[H, W, 3]`` uint8 rendering of a float image in [0, 1] (other ranges min-max
    scaled), for overlays."""
    a = np.asarray(image, np.float32)
    lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 1.0)
    if lo < 0.0 or hi > 1.0:
        a = (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)
    rgb = convert_channels(a, 3, "image")
    return np.rint(rgb * 255).astype(np.uint8)


def overlay_image(
    rgb: np.ndarray, mask: np.ndarray, num_classes: int, alpha: float = OVERLAY_ALPHA
) -> np.ndarray:
    """Blend class colours over an RGB image wherever the mask is not background (0)."""
    colours = class_colours(max(num_classes, int(mask.max()) + 1))
    out = rgb.astype(np.float32)
    fg = mask > 0
    out[fg] = (1 - alpha) * out[fg] + alpha * colours[mask[fg]].astype(np.float32)
    return np.rint(out).astype(np.uint8)


def save_mask(mask: np.ndarray, path: str | Path, *, num_classes: int, palette: bool) -> None:
    """Write class ids as a PNG: L-mode raw ids, or P-mode with a colour per class."""
    from PIL import Image

    if num_classes > 256 or mask.max(initial=0) > 255:
        if palette:
            raise ConfigError(
                f"palette=true: palette PNGs hold at most 256 classes, not {num_classes}"
            )
        Image.fromarray(mask.astype(np.uint16)).save(path)
        return
    img = Image.fromarray(mask.astype(np.uint8), mode="L")
    if palette:
        img = img.convert("P")
        pal = np.zeros((256, 3), np.uint8)
        pal[:num_classes] = class_colours(num_classes)
        img.putpalette(pal.reshape(-1).tolist())
    img.save(path)


def find_inputs(spec: str) -> list[Path]:
    """Image files named by a file, a directory (its image files) or a glob pattern."""
    path = Path(spec).expanduser()
    if path.is_file():
        return [path]
    if path.is_dir():
        files = [p for p in sorted(path.iterdir()) if p.is_file()]
        files = [p for p in files if p.suffix.lower() in IMAGE_EXTENSIONS]
        if not files:
            raise DataError(f"input={spec}: no image files ({', '.join(IMAGE_EXTENSIONS)})")
        return files
    if glob.has_magic(spec):
        files = [Path(p) for p in sorted(glob.glob(os.path.expanduser(spec), recursive=True))]
        files = [p for p in files if p.is_file()]
        if not files:
            raise DataError(f"input={spec}: the pattern matches no files")
        return files
    raise DataError(f"input={spec}: no such file or directory")


def _output_stems(files: list[Path]) -> list[str]:
    """Output base names: the file stem, or stem_ext where two inputs share a stem."""
    stems = [p.stem for p in files]
    dup = {s for s in stems if stems.count(s) > 1}
    out, seen = [], set()
    for p, s in zip(files, stems, strict=True):
        name = f"{s}_{p.suffix.lstrip('.').lower()}" if s in dup else s
        base, i = name, 1
        while name in seen:
            name, i = f"{base}_{i}", i + 1
        seen.add(name)
        out.append(name)
    return out


class _Progress:
    """A plain-text progress bar on stderr (one line per image when not a terminal)."""

    def __init__(self, total: int, width: int = 30) -> None:
        self.total, self.width, self.start = total, width, time.monotonic()
        self.tty = sys.stderr.isatty()

    def update(self, done: int, name: str, status: str) -> None:
        elapsed = time.monotonic() - self.start
        if self.tty:
            fill = int(self.width * done / max(self.total, 1))
            bar = "#" * fill + "." * (self.width - fill)
            end = "\n" if done == self.total else ""
            line = f"\r[{bar}] {done}/{self.total} {elapsed:6.1f}s {name[:40]:<40}"
            print(line, end=end, file=sys.stderr, flush=True)
        else:
            print(f"[{done}/{self.total}] {name}: {status}", file=sys.stderr, flush=True)


def predict_files(
    files: list[Path],
    output: str | Path,
    predictor: Any,
    meta: dict[str, Any],
    *,
    overlay: bool = False,
    palette: bool = False,
    save_probs: bool = False,
    progress: bool = True,
    keep: dict[Path, Any] | None = None,
) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Segment ``files`` into ``output``; returns (written mask paths, [(failed file, reason)]).
    ``keep``, if given, receives each segmented input's class-id mask."""
    from PIL import Image

    out_dir = Path(output).expanduser()
    out_dir.mkdir(parents=True, exist_ok=True)
    resolved = {p.resolve() for p in files}
    n_classes = int(meta["num_classes"])
    written: list[Path] = []
    failed: list[tuple[Path, str]] = []
    bar = _Progress(len(files)) if progress else None
    for i, (path, stem) in enumerate(zip(files, _output_stems(files), strict=True), start=1):
        mask_path = out_dir / f"{stem}.png"
        status = "ok"
        try:
            if mask_path.resolve() in resolved:
                raise DataError(f"{path}: the mask {mask_path} would overwrite an input image")
            image = model_input(
                path,
                int(meta["channels"]),
                str(meta["normalization"]),
                float(meta.get("input_range") or 1.0),
            )
            mask, probs = predictor.segment(image, probabilities=save_probs)
            save_mask(mask, mask_path, num_classes=n_classes, palette=palette)
            if overlay:
                ov = overlay_image(display_rgb(image), mask, n_classes)
                Image.fromarray(ov).save(out_dir / f"{stem}_overlay.png")
            if save_probs:
                np.save(out_dir / f"{stem}_probs.npy", probs)
            written.append(mask_path)
            if keep is not None:
                keep[path] = mask
            h, w = mask.shape
            tiles = predictor.last_tiles
            status = f"ok ({w}x{h}, {tiles} tile{'s' if tiles > 1 else ''})"
        except Exception as err:  # noqa: BLE001 - report this file and go on with the others
            reason = first_line(err)
            if not isinstance(err, SegexpError):
                reason = f"{type(err).__name__}: {reason}"
            failed.append((path, reason))
            status = "FAILED"
            print(f"{PROG}: failed: {path.name}: {reason}", file=sys.stderr, flush=True)
        if bar:
            bar.update(i, path.name, status)
    return written, failed
