"""Confusion-matrix metrics against a NumPy reference over several batches."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from segexp.metrics import (
    ConfusionMatrixMetric,
    build_metrics,
    confusion_matrix,
    confusion_matrix_metrics,
)

IGNORE = 255


def reference(y: np.ndarray, pred: np.ndarray, k: int) -> dict[str, float]:
    """Metrics straight from boolean masks over all pixels of all batches (no confusion matrix)."""
    valid = y != IGNORE
    t, p = y[valid], pred[valid]
    out = {"accuracy": float((t == p).mean())}
    ious, dices = {}, {}
    for c in range(k):
        inter = np.sum((t == c) & (p == c))
        union = np.sum((t == c) | (p == c))
        size = np.sum(t == c) + np.sum(p == c)
        ious[c] = inter / union if union else math.nan
        dices[c] = 2 * inter / size if size else math.nan
    present = [c for c in range(k) if not math.isnan(ious[c])]
    out["mean_iou"] = float(np.mean([ious[c] for c in present]))
    out["dice"] = float(dices[1]) if k == 2 else float(np.mean([dices[c] for c in present]))
    for c in range(k):
        out[f"iou_c{c}"] = float(ious[c])
    return out


def batches(head: str, n: int = 3, seed: int = 0):
    rng = np.random.default_rng(seed)
    k = 2 if head == "sigmoid" else 4
    ys, ps = [], []
    for _ in range(n):
        y = rng.integers(0, k, (2, 6, 6, 1)).astype(np.int32)
        y[0, 0] = IGNORE
        if head == "sigmoid":
            # predictions correlated with the labels so the metrics are not trivial
            p = np.clip(0.7 * y + rng.normal(0.15, 0.3, y.shape), 0, 1).astype(np.float32)
            p[y == IGNORE] = rng.random(p[y == IGNORE].shape)
        else:
            p = rng.random((2, 6, 6, k)).astype(np.float32)
            p += 0.4 * np.eye(k, dtype=np.float32)[np.where(y[..., 0] == IGNORE, 0, y[..., 0])]
            p /= p.sum(-1, keepdims=True)
        ys.append(y)
        ps.append(p)
    return ys, ps, k


def labels_of(p: np.ndarray, head: str) -> np.ndarray:
    return (p[..., 0] > 0.5).astype(int) if head == "sigmoid" else p.argmax(-1)


@pytest.mark.parametrize("head", ["sigmoid", "softmax"])
def test_metric_objects_accumulate_over_batches(head):
    ys, ps, k = batches(head)
    names = [f"c{i}" for i in range(k)]
    metrics = build_metrics(head=head, num_classes=k, class_names=names, ignore_value=IGNORE)
    assert [m.name for m in metrics] == ["accuracy", "mean_iou", "dice"] + [
        f"iou_{n}" for n in names
    ]
    for y, p in zip(ys, ps, strict=True):
        for m in metrics:
            m.update_state(tf.constant(y), tf.constant(p))
    y_all = np.concatenate(ys)[..., 0]
    pred_all = np.concatenate([labels_of(p, head) for p in ps])
    ref = reference(y_all, pred_all, k)
    for m in metrics:
        assert float(m.result()) == pytest.approx(ref[m.name], rel=1e-6), m.name
    # a per-batch average would differ from the epoch value for at least one metric
    per_batch = [
        reference(y[..., 0], labels_of(p, head), k)["mean_iou"] for y, p in zip(ys, ps, strict=True)
    ]
    assert abs(np.mean(per_batch) - ref["mean_iou"]) > 1e-6
    for m in metrics:
        m.reset_state()
    assert int(tf.reduce_sum(metrics[0].total_cm)) == 0


def test_numpy_confusion_matrix_metrics_hand_computed():
    cm = np.array([[5, 1, 0], [2, 3, 0], [0, 0, 0]])  # class 2 absent everywhere
    out = confusion_matrix_metrics(cm, ["bg", "cell", "edge"])
    assert out["accuracy"] == pytest.approx(8 / 11)
    assert out["iou_bg"] == pytest.approx(5 / 8)
    assert out["iou_cell"] == pytest.approx(3 / 6)
    assert math.isnan(out["iou_edge"])
    assert out["mean_iou"] == pytest.approx((5 / 8 + 3 / 6) / 2)
    assert out["dice"] == pytest.approx((10 / 13 + 6 / 9) / 2)
    binary = confusion_matrix_metrics(np.array([[6, 2], [1, 3]]), ["background", "nucleus"])
    assert binary["dice"] == pytest.approx(6 / 9)  # foreground dice for binary problems
    assert binary["mean_iou"] == pytest.approx((6 / 9 + 3 / 6) / 2)


def test_numpy_confusion_matrix_matches_reference():
    ys, ps, k = batches("softmax", seed=5)
    y = np.concatenate(ys)[..., 0]
    pred = np.concatenate([labels_of(p, "softmax") for p in ps])
    cm = confusion_matrix(y, pred, k, ignore_value=IGNORE)
    assert cm.sum() == (y != IGNORE).sum()
    out = confusion_matrix_metrics(cm, [f"c{i}" for i in range(k)])
    ref = reference(y, pred, k)
    for key, value in ref.items():
        assert out[key] == pytest.approx(value, rel=1e-9)


@pytest.mark.parametrize("jit", [False, True])
def test_compiled_model_evaluate_over_whole_split(jit):
    ys, ps, k = batches("softmax", n=3, seed=7)
    logits = np.log(np.concatenate(ps))
    y = np.concatenate(ys)
    inputs = keras.Input((6, 6, k))
    model = keras.Model(inputs, keras.layers.Softmax()(inputs))
    names = [f"c{i}" for i in range(k)]
    model.compile(
        loss="mse",
        jit_compile=jit,
        metrics=build_metrics(
            head="softmax", num_classes=k, class_names=names, ignore_value=IGNORE
        ),
    )
    ds = tf.data.Dataset.from_tensor_slices((logits, y)).batch(2)  # 3 batches
    for _ in range(2):  # second call must start from a reset state
        out = model.evaluate(ds, verbose=0, return_dict=True)
        ref = reference(y[..., 0], np.concatenate([labels_of(p, "softmax") for p in ps]), k)
        for key, value in ref.items():
            assert out[key] == pytest.approx(value, rel=1e-5), key


def test_absent_class_is_nan_and_config_roundtrip():
    m = ConfusionMatrixMetric("iou", num_classes=3, head="softmax", class_id=2, name="iou_x")
    m.update_state(
        tf.constant([[[[0]], [[1]]]]), tf.constant([[[[0.9, 0.1, 0.0]], [[0.1, 0.9, 0.0]]]])
    )
    assert math.isnan(float(m.result()))
    clone = ConfusionMatrixMetric.from_config(m.get_config())
    assert clone.name == "iou_x" and clone.class_id == 2
