"""Figures: sample-prediction panels, learning curves, and the conventions all curves share."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from segexp.palette import class_colours, colorize

# One line-style convention for every curve figure (learning curves, segexp-compare's curves).
LINE_STYLES = {"validation": "-", "train": "--"}
STYLE_NAMES = {"-": "solid", "--": "dashed"}
LOG_SCALE_RATIO = 30.0  # a positive curve whose max/min reaches this is drawn on a log y-axis


def split_label(split: str) -> str:
    """Legend text that states the convention, e.g. ``validation (solid)``."""
    return f"{split} ({STYLE_NAMES[LINE_STYLES[split]]})"


def epoch_axis(ax: Any) -> None:
    """Label the x axis ``epoch`` with integer ticks only."""
    from matplotlib.ticker import MaxNLocator

    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))


def needs_log_scale(values: Sequence[float] | np.ndarray) -> bool:
    """Whether a curve spans orders of magnitude: all finite values positive and
    max / min >= :data:`LOG_SCALE_RATIO` (one epoch-1 loss of 13 beside 0.2 qualifies)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    return bool(v.size > 1 and v.min() > 0 and v.max() / v.min() >= LOG_SCALE_RATIO)


def auto_yscale(ax: Any, values: Sequence[float] | np.ndarray, label: str) -> None:
    """Log y-axis (said in the label) when :func:`needs_log_scale`, else linear."""
    if needs_log_scale(values):
        ax.set_yscale("log")
        label = f"{label} (log scale)"
    ax.set_ylabel(label)


def _fit(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Center-pad (or crop) to ``shape`` so valid-padding outputs line up with their input."""
    out = np.full((*shape, 3), 255, np.uint8)
    h, w = min(shape[0], image.shape[0]), min(shape[1], image.shape[1])
    oy, ox = (shape[0] - h) // 2, (shape[1] - w) // 2
    iy, ix = (image.shape[0] - h) // 2, (image.shape[1] - w) // 2
    out[oy : oy + h, ox : ox + w] = image[iy : iy + h, ix : ix + w]
    return out


def to_rgb(image: np.ndarray) -> np.ndarray:
    """Float image ``[H, W, C]`` in [0, 1] to RGB uint8."""
    image = np.asarray(image, dtype=np.float32)
    if image.ndim == 2:
        image = image[..., None]
    if image.shape[-1] == 1:
        image = np.repeat(image, 3, axis=-1)
    return (np.clip(image[..., :3], 0, 1) * 255).round().astype(np.uint8)


def _masks(target: np.ndarray) -> np.ndarray:
    return np.squeeze(target, -1) if target.ndim == 3 else target


def prediction_panel(images: np.ndarray, targets: np.ndarray, predictions: np.ndarray, **kw: Any):
    """:func:`prediction_figure` as an RGB uint8 array, for ``MlflowClient.log_image``."""
    fig = prediction_figure(images, targets, predictions, **kw)
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()


def prediction_figure(
    images: np.ndarray,
    targets: np.ndarray,
    predictions: np.ndarray,
    *,
    task: str = "segmentation",
    ignore_value: int | None = None,
    class_names: Sequence[str] | None = None,
    epoch: int | None = None,
    title: str = "",
) -> Any:
    """One row per sample, columns labelled input | ground truth | prediction (with the
    epoch), a class legend and ``title`` on top, as a matplotlib figure (no pyplot state).

    Segmentation targets/predictions are class-id masks; for reconstruction they are images.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    at = f" (epoch {epoch})" if epoch is not None else ""
    names = ["input", "target" if task == "reconstruction" else "ground truth", f"prediction{at}"]
    count = 0
    if task != "reconstruction":
        values = np.concatenate([np.ravel(a) for a in (*targets, *predictions)]).astype(np.int64)
        if ignore_value is not None:
            values = values[values != ignore_value]
        found = int(values.max()) + 1 if values.size else 1
        count = len(class_names) if class_names else max(2, found)
    gap = 2
    rows = []
    for image, target, pred in zip(images, targets, predictions, strict=True):
        shown = to_rgb(image)
        if task == "reconstruction":
            cells = [shown, to_rgb(target), to_rgb(pred)]
        else:
            cells = [
                shown,
                colorize(_masks(target), count, ignore_value),
                colorize(_masks(pred), count),
            ]
        cells = [_fit(c, shown.shape[:2]) for c in cells]
        pad = np.full((shown.shape[0], gap, 3), 255, np.uint8)
        rows.append(np.concatenate([cells[0], pad, cells[1], pad, cells[2]], axis=1))
    hpad = np.full((gap, rows[0].shape[1], 3), 255, np.uint8)
    grid = np.concatenate([x for r in rows for x in (r, hpad)][:-1], axis=0)
    # One image in one axes (a grid of axes costs ~100x more to draw), columns labelled on top.
    heading = "validation samples" + at
    heading = f"{title}\n{heading}" if title else heading
    top = 0.45 + 0.2 * (heading.count("\n") + 1)  # inches: title lines and column labels
    img_w, bottom = 6.4, (0.45 if task != "reconstruction" else 0.1)
    img_h = img_w * grid.shape[0] / grid.shape[1]
    fig = Figure(figsize=(img_w + 0.2, img_h + top + bottom), dpi=100)
    FigureCanvasAgg(fig)
    w, h = fig.get_size_inches()
    ax = fig.add_axes((0.1 / w, bottom / h, img_w / w, img_h / h))
    ax.imshow(grid, interpolation="nearest")
    width = grid.shape[1]
    cell = (width - 2 * gap) / 3
    ax.set_xticks([cell / 2 - 0.5 + k * (cell + gap) for k in range(3)], names, fontsize=10)
    ax.xaxis.tick_top()
    ax.tick_params(axis="x", length=0)
    ax.set_yticks([])
    for side in ax.spines.values():
        side.set_visible(False)
    if task != "reconstruction":
        colours = class_colours(count) / 255.0
        labels = list(class_names) if class_names else [f"class {k}" for k in range(count)]
        handles = [
            Patch(facecolor=colours[k], edgecolor="black", label=labels[k]) for k in range(count)
        ]
        if ignore_value is not None:
            handles.append(Patch(facecolor="white", edgecolor="black", label="ignore"))
        fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 5),
                   fontsize=8, frameon=False)  # fmt: skip
    fig.suptitle(heading, fontsize=10, y=1 - 0.05 / h, va="top")
    return fig


def learning_curves(history: Mapping[str, Sequence[float]], metric: str, title: str = ""):
    """Loss and ``metric`` per epoch, train dashed and validation solid, as a matplotlib
    figure; a curve spanning orders of magnitude gets a log y-axis."""
    from matplotlib.figure import Figure

    # Not through pyplot: nothing to close, however many runs one process logs.
    fig = Figure(figsize=(10, 4.2))
    axes = fig.subplots(1, 2)
    for ax, name in zip(axes, ("loss", metric), strict=True):
        shown: list[float] = []
        for key, split in ((name, "train"), (f"val_{name}", "validation")):
            values = history.get(key)
            if values:
                epochs = range(1, len(values) + 1)
                ax.plot(epochs, values, LINE_STYLES[split], marker=".", label=split_label(split))
                shown.extend(values)
        if name == "loss" and history.get("val_loss"):
            best = int(np.nanargmin(history["val_loss"])) + 1
            ax.axvline(best, color="grey", lw=0.8, ls=":", label=f"best epoch {best}")
        epoch_axis(ax)
        auto_yscale(ax, shown, name)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def wrap_title(text: str, width: int = 80, max_lines: int = 3) -> str:
    """Break a long title after spaces or commas into at most ``max_lines`` lines of about
    ``width`` characters (the last one ends in an ellipsis when text is left out)."""
    import re

    lines: list[str] = []
    line = ""
    for piece in re.findall(r"[^ ,]+[ ,]?|[ ,]", text):
        if line and len(line) + len(piece.rstrip()) > width:
            lines.append(line.rstrip())
            line = ""
        line += piece
    lines.append(line.rstrip())
    if len(lines) > max_lines:
        lines = [*lines[: max_lines - 1], lines[max_lines - 1][: width - 3] + "..."]
    return "\n".join(lines)


def run_title(run_name: str | None, model: str, dataset: str) -> str:
    """A figure title naming the run (its varied values) and what it trains, wrapped."""
    what = f"{model} on {dataset}"
    if not run_name or run_name == f"{model}-{dataset}":
        return what
    return wrap_title(f"{run_name}: {what}")
