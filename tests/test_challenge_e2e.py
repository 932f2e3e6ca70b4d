"""A real training run logs its data set's challenge metrics as run metrics (read back with
MlflowClient): DSB2018 in the Kaggle layout and ISBI 2012 TIFF stacks, one epoch each."""

from __future__ import annotations

import math

import numpy as np
import pytest

from segexp.challenge import evaluate_split
from tests import fixtures_data as fx
from tests._e2e import ONE_EPOCH, train_run
from tests.test_challenge_data import Echo, touching_tree

BASE = [*ONE_EPOCH, "dataset.image_size=[32,32]"]


def test_dsb2018_run_logs_instance_map_image_means_and_hd95(compose, tmp_path, store, monkeypatch):
    """The run logs what the metrics give for the training job's own test stream; the logged values
    come from a stand-in model that predicts every pixel right (so they are known by hand),
    the trained model's values are checked against the pooled Keras metrics."""
    from segexp.train import results

    touching_tree(tmp_path / "dsb")  # 3 samples: one train, one val, one test image
    trained: dict[str, float] = {}

    def with_echo(model, batches, *args, **kwargs):
        trained.update(evaluate_split(model, batches, *args, **kwargs))
        return evaluate_split(Echo(), batches, *args, **kwargs)

    monkeypatch.setattr(results, "evaluate_split", with_echo)
    _, run = train_run(
        compose,
        tmp_path / "work",
        store,
        "dsb",
        [
            *BASE,
            "dataset=dsb2018",
            f"dataset.root={tmp_path / 'dsb'}",
            "dataset.split={train:0.334,val:0.333,test:0.333}",
        ],
    )
    m = run.data.metrics
    assert run.info.status == "FINISHED", run.data.tags.get("error")
    assert not {"test_rand_error", "test_pixel_error"} & set(m)
    # Touching nuclei A and B merge into one predicted component: 5/12 (worked out in
    # tests/test_challenge_data.py); every pixel right: image IoU and Dice 1, HD95 0.
    assert m["test_instance_map"] == pytest.approx(5 / 12)
    assert m["test_image_mean_iou"] == 1.0 and m["test_image_dice"] == 1.0
    assert m["test_hd95"] == 0.0
    # The trained model on one test image: per-image means equal the pooled Keras values.
    assert trained["test_image_mean_iou"] == pytest.approx(m["test_mean_iou"], abs=1e-5)
    assert trained["test_image_dice"] == pytest.approx(m["test_dice"], abs=1e-5)
    assert 0.0 <= trained["test_instance_map"] <= 1.0
    assert 0.0 <= trained["test_hd95"] <= math.hypot(32, 32)


class Truth:
    """A stand-in 'model' that predicts each batch's true mask (membrane = 1)."""

    y = None

    def predict_on_batch(self, x):
        return np.asarray(self.y, np.float32)


def test_isbi2012_run_logs_rand_and_pixel_error(compose, tmp_path, store, monkeypatch):
    """The logged values come from a stand-in that predicts the true membrane (Rand and pixel
    error 0 by definition); the trained model's pixel error is 1 - its Keras accuracy."""
    from segexp.train import results

    trained: dict[str, float] = {}

    def with_truth(model, batches, *args, **kwargs):
        trained.update(evaluate_split(model, batches, *args, **kwargs))
        truth = Truth()

        def feed():
            for batch in batches:
                truth.y = batch[1]
                yield batch

        return evaluate_split(truth, feed(), *args, **kwargs)

    monkeypatch.setattr(results, "evaluate_split", with_truth)
    root = fx.write_isbi_tiff(tmp_path / "isbi", n=6, size=64)
    _, run = train_run(
        compose,
        tmp_path / "work",
        store,
        "isbi",
        [
            *BASE,
            "dataset=isbi2012",
            f"dataset.root={root}",
            "dataset.tile=32",
            "dataset.split={train:0.666,val:0.167,test:0.167}",
        ],
    )
    m = run.data.metrics
    assert run.info.status == "FINISHED", run.data.tags.get("error")
    assert "test_instance_map" not in m
    assert m["test_rand_error"] == 0.0 and m["test_pixel_error"] == 0.0
    assert trained["test_pixel_error"] == pytest.approx(1 - m["test_accuracy"], abs=1e-5)
    assert 0.0 <= trained["test_rand_error"] <= 1.0
