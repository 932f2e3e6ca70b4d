"""Challenge metrics on label arrays, and their evaluation of a model on one split.

Challenge metrics on label arrays (per-image IoU/Dice, DSB2018 instance mAP, ISBI Rand and
pixel error, HD95), and their evaluation of a model on one split.

Which metrics a run computes is the dataset preset's ``challenge_metrics`` list; each is logged
as ``<split>_<name>`` (``test_instance_map``, ...). Definitions, on class-id arrays ``[H, W]``
(pixels labelled ``ignore_value`` are left out of the per-pixel metrics and count as class 0 in
the object and boundary metrics); "foreground" is every class other than 0:

- ``image_mean_iou``: per image, the mean IoU over the classes present in its truth or its
  prediction (a class absent from both is left out of that image's mean); then the mean over
  images (Kaggle, MONAI). The pooled ``test_mean_iou`` sums the pixels of all images instead.
- ``image_dice``: per image, the foreground Dice 2TP / (2TP + FP + FN) for two classes (1 when
  neither truth nor prediction has foreground), or the mean per-class Dice over the classes
  present for more than two; then the mean over images.
- ``instance_map``: the DSB2018 Kaggle score. Predicted objects are the 8-connected components
  of the predicted foreground; true objects are the data set's instances (DSB2018: one per
  nucleus mask file), or the 8-connected components of the true foreground where the loader
  has none. At each IoU threshold t in 0.50, 0.55, ..., 0.95 a true object matched by a
  predicted one with IoU > t is a TP (matches are unique for t >= 0.5), unmatched predictions
  are FPs, unmatched true objects FNs; the image's score is the mean over t of
  TP / (TP + FP + FN) (1 for an image with no object in truth and prediction); then the mean
  over images.
- ``rand_error``: ISBI 2012's foreground-restricted adapted Rand error
  (``skimage.metrics.adapted_rand_error``), per image then averaged. Cells are the 4-connected
  components of class 0 (the non-membrane class; isbi2012 maps cell interior to 0); true
  membrane pixels are not scored; predicted membrane pixels are given to the nearest predicted
  cell (``skimage.segmentation.expand_labels``). Images where it is undefined (no true cell
  pixel, or 0/0) are skipped.
- ``pixel_error``: 1 - pixel accuracy, pooled over all pixels of the split (the ISBI table's
  "pixel error").
- ``hd95``: per image, the 95th percentile symmetric Hausdorff distance in pixels between the
  boundaries of the true and predicted foreground (boundary: foreground pixels with a
  4-neighbour outside it or at the image border), taken as the larger of the two directed 95th
  percentiles (as MONAI); 0 when both are empty, the image diagonal when only one is (a finite
  worst case, so every store can log it); then the mean over images.

Tiles count as images when the data set is tiled. :func:`scores` takes predicted and true
label arrays and can be called on any predictions; :func:`evaluate_split` runs a model over a
split. NumPy, SciPy and scikit-image only; no TensorFlow import.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from segexp.errors import ConfigError

METRICS = ("image_mean_iou", "image_dice", "instance_map", "rand_error", "pixel_error", "hd95")
THRESHOLDS = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))
KEY = "dataset.challenge_metrics"


def check_names(names: Any) -> list[str]:
    """The configured metric names as a list; ConfigError naming the key for unknown ones."""
    if names is None:
        return []
    if isinstance(names, str) or not isinstance(names, Iterable):
        raise ConfigError(f"{KEY}={names!r}: expected a list of names from {', '.join(METRICS)}")
    names = [str(n) for n in names]
    bad = [n for n in names if n not in METRICS]
    if bad:
        raise ConfigError(
            f"{KEY}: unknown metric(s) {', '.join(bad)}; expected names from {', '.join(METRICS)}"
        )
    return list(dict.fromkeys(names))


# --------------------------------------------------------------------------- per image
def image_iou_dice(pred: np.ndarray, true: np.ndarray, num_classes: int) -> tuple[float, float]:
    """(mean IoU over the classes present, Dice) of one image's valid pixels (see module doc)."""
    k = max(int(num_classes), 2)
    cm = np.bincount(true.astype(np.int64) * k + pred, minlength=k * k).reshape(k, k)
    tp = np.diag(cm).astype(np.float64)
    fp, fn = cm.sum(0) - tp, cm.sum(1) - tp
    present = (tp + fp + fn) > 0
    iou = float(np.mean(tp[present] / (tp + fp + fn)[present])) if present.any() else 1.0
    if k == 2:
        denom = 2 * tp[1] + fp[1] + fn[1]
        return iou, float(2 * tp[1] / denom) if denom else 1.0
    dice = 2 * tp[present] / (2 * tp + fp + fn)[present]
    return iou, float(np.mean(dice)) if present.any() else 1.0


def components(mask: np.ndarray, connectivity: int = 2) -> np.ndarray:
    """Connected components of a boolean mask as labels 1..n (0 outside); 2 = 8-connected."""
    from skimage.measure import label

    return label(np.asarray(mask, bool), connectivity=connectivity).astype(np.int64)


def _relabel(labels: np.ndarray) -> tuple[np.ndarray, int]:
    """Labels made consecutive 1..n (0 stays background), and n."""
    ids, inverse = np.unique(labels, return_inverse=True)
    inverse = inverse.reshape(labels.shape)
    if ids[0] != 0:
        return inverse + 1, len(ids)
    return inverse, len(ids) - 1


def iou_matrix(true_labels: np.ndarray, pred_labels: np.ndarray) -> np.ndarray:
    """IoU of every true object (rows) with every predicted object (columns); 0 = background."""
    t, nt = _relabel(true_labels)
    p, npred = _relabel(pred_labels)
    inter = np.bincount(t.ravel() * (npred + 1) + p.ravel(), minlength=(nt + 1) * (npred + 1))
    inter = inter.reshape(nt + 1, npred + 1)
    area_t, area_p = inter.sum(1), inter.sum(0)
    union = area_t[:, None] + area_p[None, :] - inter
    return (inter / np.maximum(union, 1))[1:, 1:]


def instance_ap(
    true_labels: np.ndarray, pred_labels: np.ndarray, thresholds: Sequence[float] = THRESHOLDS
) -> float:
    """The DSB2018 score of one image: mean over ``thresholds`` of TP / (TP + FP + FN)."""
    iou = iou_matrix(true_labels, pred_labels)
    nt, npred = iou.shape
    if nt == 0 and npred == 0:
        return 1.0
    values = []
    for t in thresholds:
        hits = iou > t
        tp = int(hits.any(axis=1).sum())
        values.append(tp / (tp + (npred - int(hits.any(axis=0).sum())) + (nt - tp)))
    return float(np.mean(values))


def rand_error(true_cells: np.ndarray, pred_cells: np.ndarray) -> float | None:
    """Adapted Rand error of one image's cell labels (0 = membrane); None without true cell
    pixels or when it is 0/0 (no two scored pixels share a cell in truth or prediction)."""
    from skimage.metrics import adapted_rand_error
    from skimage.segmentation import expand_labels

    if not (true_cells > 0).any():
        return None
    if (pred_cells > 0).any():
        pred_cells = expand_labels(pred_cells, distance=sum(pred_cells.shape))
    with np.errstate(divide="ignore", invalid="ignore"):
        err = float(adapted_rand_error(true_cells, pred_cells, ignore_labels=(0,))[0])
    return err if np.isfinite(err) else None


def _boundary(mask: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    return mask & ~ndimage.binary_erosion(mask, border_value=0)


def hd95(pred_fg: np.ndarray, true_fg: np.ndarray) -> float:
    """95th percentile symmetric Hausdorff distance (pixels) of two foreground masks."""
    from scipy import ndimage

    pred_fg, true_fg = np.asarray(pred_fg, bool), np.asarray(true_fg, bool)
    if not pred_fg.any() and not true_fg.any():
        return 0.0
    if not pred_fg.any() or not true_fg.any():
        return float(np.hypot(*pred_fg.shape))
    bp, bt = _boundary(pred_fg), _boundary(true_fg)
    to_true = ndimage.distance_transform_edt(~bt)[bp]
    to_pred = ndimage.distance_transform_edt(~bp)[bt]
    return float(max(np.percentile(to_true, 95), np.percentile(to_pred, 95)))


# --------------------------------------------------------------------------- a split
def scores(
    preds: Iterable[np.ndarray],
    trues: Iterable[np.ndarray],
    names: Sequence[str],
    *,
    num_classes: int,
    ignore_value: int | None = None,
    instances: Iterable[np.ndarray] | None = None,
) -> dict[str, float]:
    """The metrics ``names`` over pairs of predicted / true class-id arrays ``[H, W]``.

    ``instances`` (optional, one ``[H, W]`` array per image, 0 = background) are the true
    objects of ``instance_map``; without them, the components of the true foreground.
    """
    names = check_names(names)
    per_image: dict[str, list[float]] = {n: [] for n in names}
    wrong = total = 0
    inst_iter = iter(instances) if instances is not None else None
    for pred, true in zip(preds, trues, strict=True):
        pred = np.asarray(pred).astype(np.int64).reshape(np.shape(true)[:2])
        true = np.asarray(true).astype(np.int64).reshape(pred.shape)
        inst = next(inst_iter) if inst_iter is not None else None
        valid = (true >= 0) & (true < max(num_classes, 2))
        if ignore_value is not None:
            valid &= true != ignore_value
        if "image_mean_iou" in names or "image_dice" in names:
            iou, dice = image_iou_dice(pred[valid], true[valid], num_classes)
            per_image.get("image_mean_iou", []).append(iou)
            per_image.get("image_dice", []).append(dice)
        wrong += int((pred[valid] != true[valid]).sum())
        total += int(valid.sum())
        pred_fg, true_fg = (pred != 0) & valid, (true != 0) & valid
        if "instance_map" in names:
            objects = components(true_fg) if inst is None else np.where(valid, inst, 0)
            per_image["instance_map"].append(instance_ap(objects, components(pred_fg)))
        if "rand_error" in names:
            err = rand_error(components(~true_fg & valid, 1), components(~pred_fg & valid, 1))
            if err is not None:
                per_image["rand_error"].append(err)
        if "hd95" in names:
            per_image["hd95"].append(hd95(pred_fg, true_fg))
    out = {n: float(np.mean(v)) for n, v in per_image.items() if v}
    if "pixel_error" in names and total:
        out["pixel_error"] = wrong / total
    return out


def evaluate_split(
    model: Any, batches: Any, source: Any, dataset_cfg: Any, head: str, split: str = "test"
) -> dict[str, float]:
    """Run ``model`` over the batched ``split`` stream and return ``{<split>_<name>: value}``
    for the dataset's ``challenge_metrics`` (empty for reconstruction models)."""
    from segexp.models.heads import predictions_to_labels

    names = check_names(dataset_cfg.get("challenge_metrics"))
    if not names or head == "linear":
        return {}
    preds: list[np.ndarray] = []
    trues: list[np.ndarray] = []
    for batch in batches:
        x, y = batch[0], batch[1]
        probs = np.asarray(model.predict_on_batch(x))
        preds.extend(predictions_to_labels(probs, head))
        trues.extend(np.asarray(y)[..., 0] if np.ndim(y) == 4 else np.asarray(y))
    stream = (getattr(source, "instances", None) or {}).get(split)
    instances = None
    if stream is not None:
        from segexp.data.pipeline import center_crop_mask

        instances = []
        for ids, true in zip(stream, trues, strict=True):  # ids as the model output: cropped
            ids = np.asarray(ids)
            crop = ((ids.shape[0] - true.shape[0]) // 2, (ids.shape[1] - true.shape[1]) // 2)
            instances.append(center_crop_mask(ids, crop)[..., 0])
    found = scores(
        preds,
        trues,
        names,
        num_classes=int(source.num_classes),
        ignore_value=source.ignore_value,
        instances=instances,
    )
    return {f"{split}_{k}": v for k, v in found.items()}
