"""The class colours every figure and mask image uses: previews, prediction panels, predict."""

from __future__ import annotations

import colorsys

import numpy as np

# Class 0 (background) is black; classes 1-7 take the Okabe-Ito colour-blind-safe colours, in an
# order that keeps the first classes far apart (orange, sky blue, green, ...); more classes get
# evenly spread hues (golden-ratio steps).
_BASE = [
    (0, 0, 0),
    (230, 159, 0),
    (86, 180, 233),
    (0, 158, 115),
    (240, 228, 66),
    (0, 114, 178),
    (213, 94, 0),
    (204, 121, 167),
]
IGNORE_RGB = (255, 255, 255)  # "don't care" pixels (the dataset's ignore_value)
OVERLAY_ALPHA = 0.45  # opacity of class colours blended over an image


def class_colours(num_classes: int) -> np.ndarray:
    """``[num_classes, 3]`` uint8 colours: black for class 0, then distinct colours."""
    colours = list(_BASE)
    i = 0
    while len(colours) < num_classes:
        r, g, b = colorsys.hsv_to_rgb((0.13 + i * 0.618033988749895) % 1.0, 0.7, 0.9)
        colours.append((round(r * 255), round(g * 255), round(b * 255)))
        i += 1
    return np.asarray(colours[: max(num_classes, 1)], dtype=np.uint8)


def colorize(mask: np.ndarray, num_classes: int, ignore_value: int | None = None) -> np.ndarray:
    """Class-id mask ``[H, W]`` to RGB uint8 ``[H, W, 3]``; ids outside ``0..num_classes-1``
    (the ignore value) are white."""
    mask = np.asarray(mask).astype(np.int64)
    colours = class_colours(max(num_classes, 1))
    valid = (mask >= 0) & (mask < len(colours))
    rgb = np.empty((*mask.shape, 3), np.uint8)
    rgb[...] = IGNORE_RGB
    rgb[valid] = colours[mask[valid]]
    if ignore_value is not None:
        rgb[mask == ignore_value] = IGNORE_RGB
    return rgb


def overlay_rgba(mask: np.ndarray, num_classes: int, ignore_value: int | None = None) -> np.ndarray:
    """Float RGBA ``[H, W, 4]`` to draw over an image: class 0 transparent, the other classes
    their colour at :data:`OVERLAY_ALPHA`, ignore pixels nearly opaque white."""
    mask = np.asarray(mask).astype(np.int64)
    colours = class_colours(max(num_classes, 1)).astype(np.float32) / 255.0
    out = np.zeros((*mask.shape, 4), np.float32)
    valid = (mask > 0) & (mask < len(colours))
    out[valid, :3] = colours[mask[valid]]
    out[valid, 3] = OVERLAY_ALPHA
    if ignore_value is not None:
        out[mask == ignore_value] = (1.0, 1.0, 1.0, 0.85)
    return out
