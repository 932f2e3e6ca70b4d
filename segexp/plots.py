"""Figures: sample-prediction panels and learning curves."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

# Distinct colours for class ids (background first); the ignore value is drawn white.
PALETTE = np.array(
    [
        [0, 0, 0],
        [230, 159, 0],
        [86, 180, 233],
        [0, 158, 115],
        [240, 228, 66],
        [0, 114, 178],
        [213, 94, 0],
        [204, 121, 167],
        [120, 120, 120],
        [160, 40, 40],
    ],
    dtype=np.uint8,
)


def colorize(mask: np.ndarray, ignore_value: int | None = None) -> np.ndarray:
    """Class-id mask ``[H, W]`` to an RGB image ``[H, W, 3]`` uint8."""
    mask = np.asarray(mask).astype(np.int64)
    rgb = PALETTE[np.clip(mask, 0, None) % len(PALETTE)]
    if ignore_value is not None:
        rgb[mask == ignore_value] = 255
    return rgb


def to_rgb(image: np.ndarray) -> np.ndarray:
    """Float image ``[H, W, C]`` in [0, 1] to RGB uint8."""
    image = np.asarray(image, dtype=np.float32)
    if image.ndim == 2:
        image = image[..., None]
    if image.shape[-1] == 1:
        image = np.repeat(image, 3, axis=-1)
    return (np.clip(image[..., :3], 0, 1) * 255).round().astype(np.uint8)


def _upscale(image: np.ndarray, min_size: int = 128) -> np.ndarray:
    factor = max(1, int(np.ceil(min_size / max(image.shape[:2]))))
    return image.repeat(factor, axis=0).repeat(factor, axis=1)


def _fit(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Center-pad (or crop) to ``shape`` so valid-padding outputs line up with their input."""
    out = np.full((*shape, 3), 255, np.uint8)
    h, w = min(shape[0], image.shape[0]), min(shape[1], image.shape[1])
    oy, ox = (shape[0] - h) // 2, (shape[1] - w) // 2
    iy, ix = (image.shape[0] - h) // 2, (image.shape[1] - w) // 2
    out[oy : oy + h, ox : ox + w] = image[iy : iy + h, ix : ix + w]
    return out


def prediction_panel(
    images: np.ndarray,
    targets: np.ndarray,
    predictions: np.ndarray,
    *,
    task: str = "segmentation",
    ignore_value: int | None = None,
    gap: int = 4,
) -> np.ndarray:
    """One row per sample: input | ground truth | prediction, as an RGB uint8 array.

    Segmentation targets/predictions are class-id masks; for reconstruction they are images.
    """
    rows = []
    for image, target, pred in zip(images, targets, predictions, strict=True):
        shown = to_rgb(image)
        if task == "reconstruction":
            cells = [shown, to_rgb(pred)]
        else:
            cells = [
                shown,
                colorize(np.squeeze(target, -1) if target.ndim == 3 else target, ignore_value),
                colorize(pred),
            ]
        cells = [_upscale(_fit(c, shown.shape[:2])) for c in cells]
        pad = np.full((cells[0].shape[0], gap, 3), 255, np.uint8)
        rows.append(np.concatenate([x for c in cells for x in (c, pad)][:-1], axis=1))
    hpad = np.full((gap, rows[0].shape[1], 3), 255, np.uint8)
    return np.concatenate([x for r in rows for x in (r, hpad)][:-1], axis=0)


def learning_curves(history: Mapping[str, Sequence[float]], metric: str, title: str = ""):
    """Loss and ``metric`` per epoch, train vs validation, as a matplotlib figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, name in zip(axes, ("loss", metric), strict=True):
        for key, style in ((name, "-"), (f"val_{name}", "--")):
            values = history.get(key)
            if values:
                ax.plot(
                    range(1, len(values) + 1),
                    values,
                    style,
                    label="validation" if key.startswith("val_") else "train",
                )
        if name == "loss" and history.get("val_loss"):
            best = int(np.argmin(history["val_loss"])) + 1
            ax.axvline(best, color="grey", lw=0.8, ls=":", label=f"best epoch {best}")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
