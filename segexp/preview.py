"""``segexp-preview``: look at the data before training.

Same config and overrides as ``segexp-train`` (``conf/preview.yaml`` composes ``train`` and adds
a ``preview`` section), e.g.::

    segexp-preview dataset=folder dataset.images=img dataset.masks=gt augmentation=basic \\
        preview.n=12 preview.split=val preview.out=look.png

writes a PNG grid of ``n`` samples of a split: each image with its mask overlaid (class 0
unshaded, ``ignore_value`` pixels hatched white) and a class legend, after augmentation when
one is configured (``preview.augment=false`` shows the raw samples).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig

import segexp
from segexp.config import input_spec
from segexp.errors import SegexpError

CONF_DIR = str(Path(segexp.__file__).resolve().parents[1] / "conf")


def overlay(mask: Any, num_classes: int, ignore_value: int | None = None) -> Any:
    """An RGBA overlay ``[H, W, 4]`` for an integer mask ``[H, W]`` (see segexp/palette.py)."""
    from segexp.palette import overlay_rgba

    return overlay_rgba(mask, num_classes, ignore_value)


def render_preview(
    source_split_ds: Any,
    class_names: Sequence[str],
    n: int,
    path: str | Path,
    augment: Callable | None = None,
    seed: int = 0,
    *,
    ignore_value: int | None = None,
    labels: Sequence[Any] | None = None,
    title: str | None = None,
) -> Path:
    """Write a PNG grid of the first ``n`` samples of an unbatched ``(image, mask)`` dataset.

    ``augment(image, mask, seed)`` (stateless, seed int64 ``[2]``) is applied per sample with
    seeds ``[seed, i]``. ``labels`` (e.g. MNIST digits) are shown in the panel titles.
    Returns the written path.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    import tensorflow as tf
    from matplotlib.patches import Patch

    from segexp.palette import class_colours

    samples = []
    for i, (image, mask) in enumerate(source_split_ds.take(int(n))):
        if augment is not None:
            image, mask = augment(image, mask, tf.constant([int(seed), i], tf.int64))
        samples.append((np.asarray(image, np.float32), np.asarray(mask)[..., 0].astype(int)))
    num_classes = len(class_names)
    cols = max(1, min(4, len(samples)))
    rows = max(1, math.ceil(len(samples) / cols))
    # Constrained layout keeps every row's panel titles clear of the row above (tight_layout
    # let the second row's titles overlap the first row's images).
    fig, axes = plt.subplots(
        rows,
        cols,
        figsize=(3.2 * cols, 3.4 * rows + 0.9),
        squeeze=False,
        layout="constrained",
    )
    for ax in axes.ravel():
        ax.axis("off")
    for i, (image, mask) in enumerate(samples):
        ax = axes.ravel()[i]
        shown = np.clip(image, 0.0, 1.0)
        if shown.shape[-1] == 1:
            ax.imshow(shown[..., 0], cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
        else:
            ax.imshow(shown[..., :3], interpolation="nearest")
        ax.imshow(overlay(mask, num_classes, ignore_value), interpolation="nearest")
        present = sorted(int(v) for v in np.unique(mask))
        names = [class_names[v] if 0 <= v < num_classes else f"ignore({v})" for v in present]
        label = f" [{labels[i]}]" if labels is not None and i < len(labels) else ""
        ax.set_title(f"#{i}{label}: " + ", ".join(names), fontsize=8)
    colors = class_colours(num_classes) / 255.0
    handles = [
        Patch(
            facecolor=colors[k] if k else "none",
            edgecolor="black",
            label=f"{k} {class_names[k]}" + (" (unshaded)" if k == 0 else ""),
        )
        for k in range(num_classes)
    ]
    if ignore_value is not None:
        handles.append(
            Patch(facecolor="white", edgecolor="black", hatch="//", label=f"{ignore_value} ignore")
        )
    fig.legend(
        handles=handles,
        loc="outside lower center",
        ncol=min(len(handles), 6),
        fontsize=8,
        frameon=False,
    )
    if title:
        fig.suptitle(title, fontsize=10)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def input_geometry(cfg: DictConfig) -> tuple[tuple[int, int], int]:
    """``(image_size, channels)`` as training uses them (:func:`segexp.config.input_spec`)."""
    h, w, c = input_spec(cfg)
    return (h, w), c


def build_preview_augment(cfg: DictConfig) -> Callable | None:
    """The configured augmentation, or None (``augmentation=none`` or not available)."""
    if str(cfg.augmentation.name) == "none":
        return None
    from segexp.augment import build_augment

    return build_augment(cfg.augmentation)


def preview(cfg: DictConfig) -> Path:
    """Load the configured dataset and write the preview grid; returns its path."""
    from segexp.data import load_source

    settings = cfg.preview
    n, split = int(settings.n), str(settings.split)
    out = settings.out or _default_out()
    seed = int(cfg.seed if settings.seed is None else settings.seed)
    image_size, channels = input_geometry(cfg)
    source = load_source(cfg.dataset, image_size, channels, seed)
    if split not in source.splits:
        from segexp.errors import ConfigError

        raise ConfigError(f"preview.split={split!r}: expected one of {sorted(source.splits)}")
    augment = build_preview_augment(cfg) if settings.augment and split == "train" else None
    labels = source.labels.get(split) if source.labels else None
    aug_name = cfg.augmentation.name if augment else "none"
    title = (
        f"{source.name}: {split} split, {source.sizes.get(split, 0)} samples, "
        f"augmentation {aug_name}"
    )
    return render_preview(
        source.splits[split],
        source.class_names,
        n,
        out,
        augment=augment,
        seed=seed,
        ignore_value=source.ignore_value,
        labels=labels,
        title=title,
    )


def _default_out() -> Path:
    """``preview.png`` in the app's output folder (``hydra.run.dir``)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        from segexp.errors import ConfigError

        raise ConfigError("preview.out=null needs the segexp-preview app; set preview.out=<file>")
    return Path(HydraConfig.get().runtime.output_dir) / "preview.png"


@hydra.main(version_base=None, config_path=CONF_DIR, config_name="preview")
def _app(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig

    from segexp.cli import import_tensorflow, remove_unused_output

    folder = Path(HydraConfig.get().runtime.output_dir)
    try:
        import_tensorflow(bool(cfg.verbose))
        path = preview(cfg)
    except SegexpError as err:
        if cfg.preview.traceback:
            raise
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)
    finally:
        remove_unused_output(folder)
    print(f"wrote {path}")


def main() -> None:
    """Console entry point ``segexp-preview``: key and data-path checks, then the app."""
    from segexp.cli import check_paths, preflight

    try:
        sys.argv[1:] = preflight(sys.argv[1:], "preview", checks=lambda c: check_paths(c.dataset))
    except SegexpError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)
    _app()
