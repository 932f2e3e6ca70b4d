"""The confusion-matrix metrics of a compiled model share one matrix, with the values that one
matrix per metric gives."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from segexp.metrics import build_metrics


def _evaluate(shared: bool, logits: np.ndarray, y: np.ndarray, k: int):
    inputs = keras.Input(logits.shape[1:])
    model = keras.Model(inputs, keras.layers.Softmax()(inputs))
    names = [f"c{i}" for i in range(k)]
    metrics = build_metrics(
        head="softmax", num_classes=k, class_names=names, ignore_value=255, shared=shared
    )
    model.compile(loss="mse", metrics=metrics)
    ds = tf.data.Dataset.from_tensor_slices((logits, y)).batch(2)
    out = model.evaluate(ds, verbose=0, return_dict=True)
    matrices = [v for v in model.metrics_variables if "confusion_matrix" in v.path]
    return out, matrices


def test_one_matrix_per_step_same_values_as_one_per_metric():
    rng = np.random.default_rng(3)
    k = 3
    logits = rng.normal(size=(6, 5, 5, k)).astype(np.float32)
    y = rng.integers(0, k, (6, 5, 5, 1)).astype(np.int32)
    y[0, 0, 0] = 255
    shared, one = _evaluate(True, logits, y, k)
    each, many = _evaluate(False, logits, y, k)
    assert len(one) == 1 and len(many) == 3 + k
    assert int(np.sum(one[0].numpy())) == int(np.sum(y != 255))  # each pixel counted once
    assert set(shared) == set(each)
    for key, value in each.items():
        assert shared[key] == pytest.approx(value, rel=1e-9), key
