"""Epoch-level segmentation metrics from an accumulated confusion matrix.

Each metric (``accuracy``, ``mean_iou``, ``dice``, ``iou_<class>``) is a Keras ``Metric`` derived
from a K x K confusion matrix (rows: true class, columns: predicted class) accumulated over the
whole split, not averaged per batch; Keras resets the state at the start of every epoch /
evaluate call. :func:`build_metrics` computes that matrix once per step: the first metric
(``accuracy``) accumulates it and the others read it. Predictions
(:func:`segexp.models.heads.predictions_to_labels`): sigmoid head -> class 1 where p > 0.5
(K = 2), softmax head -> argmax. Pixels labelled ``ignore_value`` (or outside ``[0, K)``) are
skipped.

Definitions (the same in ``confusion_matrix_metrics``):

- ``accuracy``: correctly classified valid pixels / valid pixels.
- ``iou_<c>``: TP / (TP + FP + FN) of class c; NaN if c is absent from labels and predictions.
- ``mean_iou``: mean of the per-class IoUs over classes that occur (labels or predictions).
- ``dice``: binary problems (K = 2): foreground Dice 2 TP / (2 TP + FP + FN) of class 1;
  K > 2: mean per-class Dice over classes that occur (background included).
"""

from __future__ import annotations

import re

import keras
import numpy as np
import tensorflow as tf

from segexp.models.heads import predictions_to_labels, resolve_head

KINDS = ("accuracy", "mean_iou", "dice", "iou")


# ----------------------------------------------------------------------------------- NumPy
def confusion_matrix(
    y_true: np.ndarray, y_pred: np.ndarray, num_classes: int, ignore_value: int | None = None
) -> np.ndarray:
    """K x K int64 confusion matrix of class ids (rows true, columns predicted); ignore skipped."""
    t = np.asarray(y_true).astype(np.int64).ravel()
    p = np.asarray(y_pred).astype(np.int64).ravel()
    valid = (t >= 0) & (t < num_classes) & (p >= 0) & (p < num_classes)
    if ignore_value is not None:
        valid &= t != ignore_value
    idx = t[valid] * num_classes + p[valid]
    return np.bincount(idx, minlength=num_classes**2).reshape(num_classes, num_classes)


def metric_name(class_name: str) -> str:
    """``iou_<class_name>`` with characters other than ``[A-Za-z0-9_.-]`` replaced by ``_``."""
    return "iou_" + re.sub(r"[^A-Za-z0-9_.\-]", "_", str(class_name))


def _class_metric_names(class_names: list[str]) -> list[str]:
    names: list[str] = []
    for i, c in enumerate(class_names):
        name = metric_name(c)
        names.append(name if name not in names else f"{name}_{i}")
    return names


def confusion_matrix_metrics(cm: np.ndarray, class_names: list[str]) -> dict[str, float]:
    """``accuracy``, ``mean_iou``, ``dice`` and ``iou_<class>`` from a K x K confusion matrix."""
    cm = np.asarray(cm, np.float64)
    k = cm.shape[0]
    if len(class_names) != k:
        raise ValueError(f"{len(class_names)} class names for a {k}x{k} confusion matrix")
    tp = np.diag(cm)
    fp = cm.sum(axis=0) - tp
    fn = cm.sum(axis=1) - tp
    total = cm.sum()
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(tp + fp + fn > 0, tp / (tp + fp + fn), np.nan)
        dice_c = np.where(tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), np.nan)
    present = tp + fp + fn > 0
    out = {
        "accuracy": float(tp.sum() / total) if total > 0 else float("nan"),
        "mean_iou": float(iou[present].mean()) if present.any() else float("nan"),
    }
    if k == 2:
        out["dice"] = float(dice_c[1]) if present[1] else float("nan")
    else:
        out["dice"] = float(dice_c[present].mean()) if present.any() else float("nan")
    for name, value in zip(_class_metric_names(class_names), iou, strict=True):
        out[name] = float(value)
    return out


# ----------------------------------------------------------------------------------- Keras
def batch_confusion_matrix(
    y_true: tf.Tensor,
    y_pred: tf.Tensor,
    *,
    num_classes: int,
    head: str,
    ignore_value: int | None,
) -> tf.Tensor:
    """Batch confusion matrix (int64 K x K) in graph ops (XLA-compatible, no boolean_mask)."""
    labels = tf.cast(tf.round(tf.cast(y_true, tf.float32)), tf.int32)
    if labels.shape.rank == 4:
        labels = labels[..., 0]
    pred = tf.cast(predictions_to_labels(tf.cast(y_pred, tf.float32), head), tf.int32)
    valid = (labels >= 0) & (labels < num_classes)
    if ignore_value is not None:
        valid &= labels != ignore_value
    idx = tf.where(valid, labels * num_classes + pred, tf.zeros_like(labels))
    counts = tf.math.unsorted_segment_sum(
        tf.reshape(tf.cast(valid, tf.int64), [-1]), tf.reshape(idx, [-1]), num_classes**2
    )
    return tf.reshape(counts, [num_classes, num_classes])


@keras.saving.register_keras_serializable(package="segexp")
class ConfusionMatrixMetric(keras.metrics.Metric):
    """One scalar derived from a confusion matrix accumulated over the epoch.

    ``kind``: ``accuracy``, ``mean_iou``, ``dice`` or ``iou`` (with ``class_id``).
    ``sample_weight`` is ignored (pixels count once; ignore pixels are skipped by label).
    ``reads``: another ConfusionMatrixMetric of the same problem whose matrix this one reads
    (its own ``update_state`` and ``reset_state`` then do nothing); not part of the config, so a
    reloaded model's metrics each keep their own matrix, with the same values.
    """

    def __init__(
        self,
        kind: str = "mean_iou",
        *,
        num_classes: int = 2,
        head: str = "softmax",
        ignore_value: int | None = None,
        class_id: int | None = None,
        name: str | None = None,
        dtype: str | None = None,
        reads: ConfusionMatrixMetric | None = None,
    ) -> None:
        super().__init__(name=name or kind, dtype=dtype)
        if kind not in KINDS:
            raise ValueError(f"kind={kind!r}: expected one of {KINDS}")
        if kind == "iou" and class_id is None:
            raise ValueError("kind='iou' needs a class_id")
        self._direction = "up"  # higher is better (used by Keras' mode="auto" monitors)
        self.kind = kind
        self.num_classes = int(num_classes)
        self.head = resolve_head(head, self.num_classes)
        self.ignore_value = None if ignore_value is None else int(ignore_value)
        self.class_id = None if class_id is None else int(class_id)
        if reads is not None:
            same = (reads.num_classes, reads.head, reads.ignore_value)
            if same != (self.num_classes, self.head, self.ignore_value) or reads._source:
                raise ValueError(f"{self.name} cannot read the matrix of {reads.name}")
            self._source = _Source(reads)  # a plain holder: Keras does not track it
            return
        self._source = None
        self.total_cm = self.add_variable(
            shape=(self.num_classes, self.num_classes),
            initializer="zeros",
            dtype="int64",
            name="total_confusion_matrix",
        )

    def update_state(
        self, y_true: tf.Tensor, y_pred: tf.Tensor, sample_weight: tf.Tensor | None = None
    ) -> None:
        if self._source:
            return  # the metric it reads adds the batch
        cm = batch_confusion_matrix(
            y_true,
            y_pred,
            num_classes=self.num_classes,
            head=self.head,
            ignore_value=self.ignore_value,
        )
        self.total_cm.assign_add(cm)

    def result(self) -> tf.Tensor:
        matrix = self._source.metric.total_cm if self._source else self.total_cm
        cm = tf.cast(tf.convert_to_tensor(matrix), tf.float64)
        tp = tf.linalg.diag_part(cm)
        fp = tf.reduce_sum(cm, axis=0) - tp
        fn = tf.reduce_sum(cm, axis=1) - tp
        nan = tf.constant(np.nan, tf.float64)
        if self.kind == "accuracy":
            total = tf.reduce_sum(cm)
            value = tf.where(total > 0, tf.math.divide_no_nan(tf.reduce_sum(tp), total), nan)
        else:
            union = tp + fp + fn
            present = union > 0
            if self.kind == "dice":
                per_class = tf.math.divide_no_nan(2.0 * tp, 2.0 * tp + fp + fn)
            else:
                per_class = tf.math.divide_no_nan(tp, union)
            if self.kind == "iou" or (self.kind == "dice" and self.num_classes == 2):
                c = self.class_id if self.kind == "iou" else 1
                value = tf.where(present[c], per_class[c], nan)
            else:
                n_present = tf.reduce_sum(tf.cast(present, tf.float64))
                mean = tf.math.divide_no_nan(
                    tf.reduce_sum(tf.where(present, per_class, 0.0)), n_present
                )
                value = tf.where(n_present > 0, mean, nan)
        return tf.cast(value, self.dtype)

    def reset_state(self) -> None:
        if not self._source:
            self.total_cm.assign(tf.zeros_like(self.total_cm))

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            kind=self.kind,
            num_classes=self.num_classes,
            head=self.head,
            ignore_value=self.ignore_value,
            class_id=self.class_id,
        )
        return config


class _Source:
    """The metric whose confusion matrix another one reads (kept out of Keras' tracking)."""

    def __init__(self, metric: ConfusionMatrixMetric) -> None:
        self.metric = metric


def build_metrics(
    *,
    head: str,
    num_classes: int,
    class_names: list[str],
    ignore_value: int | None,
    shared: bool = True,
) -> list[keras.metrics.Metric]:
    """``accuracy``, ``mean_iou``, ``dice`` and ``iou_<class_name>`` per class (confusion matrix).

    ``shared``: one confusion matrix per step, accumulated by ``accuracy`` and read by the
    others (False: one matrix per metric, the same values; the benchmark compares the two).
    A linear head (reconstruction) gets ``mse`` and ``mae`` instead.
    """
    head = resolve_head(head, num_classes)
    if head == "linear":
        return [
            keras.metrics.MeanSquaredError(name="mse"),
            keras.metrics.MeanAbsoluteError(name="mae"),
        ]
    if len(class_names) != num_classes:
        raise ValueError(f"{len(class_names)} class names for num_classes={num_classes}")
    common = {"num_classes": num_classes, "head": head, "ignore_value": ignore_value}
    first = ConfusionMatrixMetric("accuracy", name="accuracy", **common)
    reads = {"reads": first} if shared else {}
    metrics: list[keras.metrics.Metric] = [first]
    metrics += [ConfusionMatrixMetric(k, name=k, **common, **reads) for k in ("mean_iou", "dice")]
    for i, name in enumerate(_class_metric_names(class_names)):
        metrics.append(ConfusionMatrixMetric("iou", class_id=i, name=name, **common, **reads))
    return metrics
