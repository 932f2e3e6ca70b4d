"""segexp-predict's scores against true masks, with the run's challenge metrics.

Mask files matched to the inputs by stem, read with the training data's mask map, scored with
the run's challenge metrics."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from segexp.errors import ConfigError, DataError
from segexp.predict.contract import PROG

if TYPE_CHECKING:
    from segexp.predict.schema import PredictConfig

DEFAULT_METRICS = ("image_mean_iou", "image_dice")
POOLED = "mean_iou"  # the pooled mean IoU over all pixels, as the run's test_mean_iou
RESULT_FILE = "metrics.json"


def dataset_meta(dataset_cfg: Any) -> dict[str, Any]:
    """How the dataset stores its masks and what it scores, for the model's metadata."""
    from segexp.challenge import check_names

    values = dataset_cfg.get("mask_values")
    threshold = dataset_cfg.get("mask_threshold")
    return {
        "mask_values": None
        if values is None
        else {str(k): int(v) for k, v in dict(values).items()},
        "mask_threshold": None if threshold is None else float(threshold),
        "mask_palette": str(dataset_cfg.get("mask_palette") or "auto"),
        "challenge_metrics": check_names(dataset_cfg.get("challenge_metrics")),
    }


def metric_names(meta: dict[str, Any], requested: Sequence[str] | None) -> tuple[list[str], str]:
    """``(names, where they come from)``: the ``metrics=`` key, else the dataset's
    ``challenge_metrics`` recorded with the model, else :data:`DEFAULT_METRICS`."""
    from segexp.challenge import METRICS

    if requested is not None:
        names = [str(n) for n in requested]
        bad = [n for n in names if n not in METRICS]
        if bad or not names:
            raise ConfigError(
                f"metrics={names}: unknown metric(s) {', '.join(bad) or '(none given)'}; "
                f"expected names from {', '.join(METRICS)}"
            )
        return list(dict.fromkeys(names)), "metrics="
    recorded = meta.get("challenge_metrics")
    if recorded:
        return [str(n) for n in recorded], "the dataset's challenge_metrics"
    return list(DEFAULT_METRICS), "the default"


def match_masks(spec: str, files: list[Path]) -> list[Path]:
    """The true mask of each input image, by file stem, from a directory, file or glob."""
    import glob

    from segexp.data.pairing import list_files, pair_files

    path = Path(spec).expanduser()
    if path.is_dir():
        candidates = list_files(path)
    elif path.is_file():
        candidates = [path]
    elif glob.has_magic(spec):
        candidates = sorted(Path(p) for p in glob.glob(str(path), recursive=True))
        candidates = [p for p in candidates if p.is_file()]
    else:
        raise DataError(f"masks={spec}: no such file or directory")
    try:
        pairs, lonely, _ = pair_files(files, candidates)
    except DataError as err:
        raise DataError(f"masks={spec}: {err}") from None
    if lonely:
        more = f" (and {len(lonely) - 1} more)" if len(lonely) > 1 else ""
        raise DataError(
            f"masks={spec}: no mask for image {lonely[0]}{more}; expected a file named "
            f"{lonely[0].stem}.<ext> there"
        )
    by_image = {image: mask for _, image, mask in pairs}
    return [by_image[p] for p in files]


def read_truths(masks: list[Path], meta: dict[str, Any]) -> list[np.ndarray]:
    """Class ids of the true mask files, read as the training data loaders read them."""
    from segexp.data.decode import read_mask
    from segexp.data.mask_map import MaskMap

    mask_map = MaskMap(
        int(meta["num_classes"]),
        meta.get("mask_values"),
        meta.get("ignore_value"),
        meta.get("mask_threshold"),
    )
    palette = str(meta.get("mask_palette") or "auto")
    out = []
    for path in masks:
        raw = read_mask(path, None, palette)
        bad = mask_map.invalid_values(raw)
        if bad:
            raise DataError(
                f"masks: {path} has values {bad} outside the model's class map (accepted "
                f"stored values {mask_map.describe()}, the training dataset's mask_values)"
            )
        out.append(mask_map.apply(raw))
    return out


def score(
    preds: list[np.ndarray], trues: list[np.ndarray], names: list[str], meta: dict[str, Any]
) -> dict[str, float]:
    """The metrics ``names`` (:func:`segexp.challenge.scores`) and the pooled mean IoU."""
    from segexp.challenge import scores
    from segexp.metrics import confusion_matrix, confusion_matrix_metrics

    k = max(int(meta["num_classes"]), 2)
    ignore = meta.get("ignore_value")
    found = scores(preds, trues, names, num_classes=k, ignore_value=ignore)
    cm = sum(confusion_matrix(t, p, k, ignore) for p, t in zip(preds, trues, strict=True))
    class_names = list(meta.get("class_names") or [])
    if len(class_names) != k:
        class_names = [f"class_{i}" for i in range(k)]
    found[POOLED] = confusion_matrix_metrics(cm, class_names)["mean_iou"]
    return found


def check_shapes(files: list[Path], masks: list[Path], trues: list[np.ndarray]) -> None:
    """Each true mask has its image's size (read from the image file's header; an unreadable
    image is left to the prediction, which reports it as failed)."""
    from segexp.data.decode import image_shape

    for image, path, true in zip(files, masks, trues, strict=True):
        try:
            h, w = image_shape(image)
        except DataError:
            continue
        if (h, w) != true.shape:
            raise DataError(
                f"masks: {path} is {true.shape[1]}x{true.shape[0]}, its image {image} {w}x{h}"
            )


def format_table(values: dict[str, float], scored: int, total: int, source: str) -> str:
    """The scores as a small text table."""
    width = max(len(n) for n in values)
    lines = [f"{'metric':<{width}}  value", f"{'-' * width}  ------"]
    for name, value in values.items():
        note = "  (pooled over all pixels)" if name == POOLED else ""
        lines.append(f"{name:<{width}}  {value:.4f}{note}")
    lines.append(f"on {scored} of {total} image(s); metrics from {source}")
    if scored < total:
        lines.append(f"INCOMPLETE: {total - scored} image(s) failed and are not scored")
    return "\n".join(lines)


def write_result(
    output: Path, values: dict[str, float], images: list[str], failed: list[str], source: str
) -> Path:
    """``<output>/metrics.json``: the scores, the images scored and those that failed."""
    path = Path(output) / RESULT_FILE
    result = {
        "metrics": values,
        "metrics_from": source,
        "images": images,
        "failed": failed,
        "complete": not failed,
    }
    path.write_text(json.dumps(result, indent=2) + "\n")
    return path


def report(
    cfg: PredictConfig,
    meta: dict[str, Any],
    files: list[Path],
    truths: list[Any],
    keep: dict[Path, Any],
) -> None:
    """Score the segmented images against their true masks; print and write metrics.json."""
    names, source = metric_names(meta, cfg.metrics)
    done = [i for i, p in enumerate(files) if p in keep]
    preds = [keep[files[i]] for i in done]
    trues = [truths[i] for i in done]
    failed = [str(p) for p in files if p not in keep]
    if not done:
        print(f"{PROG}: no image was segmented, nothing to score", file=sys.stderr)
        return
    values = score(preds, trues, names, meta)
    print(format_table(values, len(done), len(files), source))
    path = write_result(
        Path(cfg.output).expanduser(), values, [str(files[i]) for i in done], failed, source
    )
    print(f"{PROG}: scores written to {path}")
