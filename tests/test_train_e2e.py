"""End to end: a tiny `segexp-train` run, then what MLflow holds, read back with MlflowClient."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient

from tests.conftest import TINY

EPOCH_METRICS = ("loss", "val_loss", "accuracy", "val_accuracy", "val_mean_iou", "val_dice")


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """Train once in-process (trimap synthetic data) and return (client, run, cfg)."""
    from hydra import compose, initialize_config_dir

    from segexp.config import CONF_DIR
    from segexp.train.lifecycle import train

    tmp = tmp_path_factory.mktemp("e2e")
    uri = f"sqlite:///{tmp}/mlflow.db"
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(
            "train",
            [*TINY, "dataset.mode=trimap", f"tracking.uri={uri}", "tracking.experiment=e2e"],
        )
    objective = train(cfg)
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("e2e")
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1
    return client, runs[0], cfg, objective


def test_run_finished_with_params_and_tags(finished_run):
    _, run, cfg, _ = finished_run
    assert run.info.status == "FINISHED"
    params = run.data.params
    assert params["trainer.epochs"] == "2"
    assert params["model.filters"] == "4"
    assert params["dataset.image_size"] == "[32, 32]"
    assert params["seed"] == str(cfg.seed)
    assert params["tracking.uri"].startswith("sqlite:///")
    tags = run.data.tags
    assert tags["model"] == "unet_small" and tags["dataset"] == "synthetic"
    assert tags["dataset.num_classes"] == "3"


def test_every_epoch_metric_logged_once_per_epoch(finished_run):
    client, run, _, _ = finished_run
    for key in EPOCH_METRICS:
        history = client.get_metric_history(run.info.run_id, key)
        assert sorted(m.step for m in history) == [1, 2], key
        assert all(np.isfinite(m.value) for m in history)


def test_summary_metrics_agree_with_history(finished_run):
    client, run, _, objective = finished_run
    m = run.data.metrics
    val = {h.step: h.value for h in client.get_metric_history(run.info.run_id, "val_loss")}
    best_step = min(val, key=val.get)
    assert m["best_epoch"] == best_step
    assert m["best_val_loss"] == pytest.approx(val[best_step])
    assert objective == pytest.approx(val[best_step])
    assert m["train_images_per_sec"] > 0
    assert 0 <= m["test_mean_iou"] <= 1 and 0 <= m["test_accuracy"] <= 1
    assert "test_loss" in m and "test_dice" in m


def test_num_params_matches_the_built_model(finished_run, compose):
    _, run, cfg, _ = finished_run
    from segexp.models import build_model

    model = build_model(cfg.model, (32, 32, 1), 3)
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert run.data.metrics["num_params"] == trainable


def test_artifacts(finished_run):
    client, run, _, _ = finished_run
    names = {a.path for a in client.list_artifacts(run.info.run_id)}
    for expected in ("config.yaml", "overrides.yaml", "learning_curves.png", "model_summary.txt"):
        assert expected in names, names
    images = {a.path for a in client.list_artifacts(run.info.run_id, "images")}
    assert any("predictions" in p for p in images), images
    config = client.download_artifacts(run.info.run_id, "config.yaml")
    assert "epochs: 2" in Path(config).read_text()


def test_model_loads_in_keras_and_pyfunc_flavors(finished_run):
    import mlflow

    client, run, _, _ = finished_run
    mlflow.set_tracking_uri(client._tracking_client.tracking_uri)
    uri = f"runs:/{run.info.run_id}/model"
    x = np.random.default_rng(0).random((2, 32, 32, 1), dtype=np.float32)
    keras_model = mlflow.keras.load_model(uri)
    probs = np.asarray(keras_model.predict(x, verbose=0))
    assert probs.shape == (2, 32, 32, 3)
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-4)
    pyfunc = mlflow.pyfunc.load_model(uri)
    np.testing.assert_allclose(np.asarray(pyfunc.predict(x)), probs, atol=1e-5)
    meta = mlflow.models.get_model_info(uri).metadata["segexp"]
    assert meta["input_size"] == [32, 32] and meta["num_classes"] == 3


def test_cli_leaves_exactly_one_finished_run(tmp_path):
    uri = f"sqlite:///{tmp_path}/cli.db"
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "segexp.train",
            *TINY,
            f"tracking.uri={uri}",
            "dataset.mode=binary",
            "tracking.log_model=false",
            f"hydra.run.dir={tmp_path}/out",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("segexp")
    runs = client.search_runs([exp.experiment_id])
    assert [r.info.status for r in runs] == ["FINISHED"]
    tags = runs[0].data.tags
    assert tags["dataset.num_classes"] == "2"
    assert "trainer.epochs=2" in tags["hydra_overrides"].split()
    assert runs[0].info.run_name.startswith("dataset.image_size=[32,32]")
    assert "val_dice" in runs[0].data.metrics


def test_unreachable_server_fails_before_training(tmp_path):
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "segexp.train",
            "tracking.uri=http://127.0.0.1:9",
            f"hydra.run.dir={tmp_path}/out",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert out.returncode == 2
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("segexp-train: error: tracking.uri=http://127.0.0.1:9")
    assert "Traceback" not in out.stderr


def test_sample_panels_crop_the_masks_to_the_model_output():
    """A valid-padding model predicts a smaller map: the panel's masks lose the same border."""
    from types import SimpleNamespace

    import tensorflow as tf

    from segexp.train.build import sample_panels

    x = np.arange(3 * 8 * 8, dtype=np.float32).reshape(3, 8, 8, 1)
    y = np.arange(3 * 8 * 8).reshape(3, 8, 8) % 5
    source = SimpleNamespace(splits={"val": tf.data.Dataset.from_tensor_slices((x, y))})
    images, masks = sample_panels(source, 2, (2, 1))
    np.testing.assert_array_equal(images, x[:2])
    np.testing.assert_array_equal(masks, y[:2, 2:6, 1:7])


def test_params_name_the_targets_and_the_run_name_does_not(finished_run):
    _, run, _, _ = finished_run
    assert run.data.params["model._target_"] == "segexp.models.unet.build_unet"
    assert run.data.params["optimizer._target_"] == "keras.optimizers.Adam"
    assert "_target_" not in run.info.run_name


def one_conv_net(cfg, input_shape, num_classes):
    """A user's builder: one 3x3 conv of ``cfg.filters`` channels, then a 1-channel sigmoid."""
    import keras

    inputs = keras.Input(input_shape)
    x = keras.layers.Conv2D(cfg.filters, 3, padding="same", activation="relu")(inputs)
    outputs = keras.layers.Conv2D(1, 1, activation="sigmoid", name="head")(x)
    return keras.Model(inputs, outputs, name="one_conv")


def recorded_lion(learning_rate, beta_1=0.9, beta_2=0.99, **kwargs):
    """A user's optimizer factory: keras.optimizers.Lion, remembered for the test to inspect."""
    import keras

    BUILT.append(keras.optimizers.Lion(learning_rate, beta_1, beta_2, **kwargs))
    return BUILT[-1]


BUILT: list = []


def test_a_users_builder_and_optimizer_train_by_target(tmp_path):
    from hydra import compose, initialize_config_dir

    from segexp.config import CONF_DIR
    from segexp.train.lifecycle import train

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    overrides = [
        *TINY,
        "dataset.mode=binary",
        "tracking.log_model=false",
        f"tracking.uri={uri}",
        f"model._target_={__name__}.one_conv_net",
        f"optimizer._target_={__name__}.recorded_lion",
        "optimizer.beta_1=0.8",
    ]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides)
    train(cfg)
    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("segexp").experiment_id])
    assert run.info.status == "FINISHED"
    assert run.data.params["model._target_"] == f"{__name__}.one_conv_net"
    assert run.data.params["optimizer._target_"] == f"{__name__}.recorded_lion"
    (optimizer,) = BUILT
    assert optimizer.beta_1 == pytest.approx(0.8) and int(optimizer.iterations.numpy()) > 0
    # (3 * 3 * 1 + 1) * 4 filters + (4 + 1) head weights
    assert run.data.metrics["num_params"] == 45
    assert np.isfinite(run.data.metrics["val_loss"])
