"""Checkpoint and resume: a SIGKILLed run continues into the same MLflow run, exactly once."""

from __future__ import annotations

import json
import signal

import numpy as np
import pytest

from segexp import tracking
from segexp.checkpoint import conflicts, locate
from segexp.errors import ConfigError
from tests._runs import EPOCH_KEYS, history, only_run, spawn, steps_of, train_cmd, wait_for_epoch
from tests.conftest import TINY

EPOCHS = 4
SETTINGS = [
    f"trainer.epochs={EPOCHS}",
    "trainer.steps_per_epoch=6",
    "trainer.deterministic=true",
    "augmentation=flip",
    "trainer.log_images_every=1",
]


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_logs_each_epoch_once(tmp_path, compose, monkeypatch):
    uri, out = f"sqlite:///{tmp_path}/mlflow.db", tmp_path / "out"
    proc = spawn(train_cmd(uri, out, *SETTINGS), tmp_path)
    wait_for_epoch(proc, out, 2)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    client, run = only_run(uri)
    assert run.info.status == "RUNNING"  # what a SIGKILL leaves behind
    saved = json.loads((out / "checkpoints/resume/state.json").read_text())["epoch"]
    assert 2 <= saved < EPOCHS

    # The same command plus resume=<output dir> (a different hydra.run.dir is fine).
    resumed = spawn(train_cmd(uri, tmp_path / "out2", *SETTINGS, f"resume={out}"), tmp_path)
    log = resumed.communicate(timeout=300)[0]
    assert resumed.returncode == 0, log[-3000:]
    assert f"resuming MLflow run {run.info.run_id} after epoch {saved}" in log

    client, run = only_run(uri)
    assert run.info.status == "FINISHED"
    assert run.data.tags["segexp.resumes"] == "1"
    assert run.data.tags["segexp.resumed_from_epoch"] == str(saved)
    assert "closed as KILLED" in run.data.tags["segexp.stale_run"]
    for key in EPOCH_KEYS:
        assert steps_of(client, run.info.run_id, key) == list(range(1, EPOCHS + 1)), key
    assert tracking.logged_image_steps(client, run.info.run_id) == set(range(1, EPOCHS + 1))
    names = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config.yaml", "learning_curves.png", "model_summary.txt"} <= names
    assert run.data.metrics["epochs_trained"] == EPOCHS

    # Deterministic mode: identical to an uninterrupted run of the same config.
    from segexp.runner import train

    ref_uri = f"sqlite:///{tmp_path}/ref.db"
    monkeypatch.chdir(tmp_path)
    train(
        compose(
            [
                *TINY,
                *SETTINGS,
                f"tracking.uri={ref_uri}",
                "tracking.log_model=false",
                "trainer.evaluate_test=false",
            ]
        )
    )
    ref_client, ref = only_run(ref_uri)
    for key in ("loss", "val_loss", "val_accuracy"):
        assert history(client, run.info.run_id, key) == history(ref_client, ref.info.run_id, key)


def test_resume_of_a_finished_run_is_refused(tmp_path):
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri)
    run = client.create_run(client.create_experiment("x"), tags={"output_dir": str(tmp_path)})
    with pytest.raises(ConfigError, match="no resume checkpoint"):
        locate(run.info.run_id, uri)
    with pytest.raises(ConfigError, match="neither an existing output directory"):
        locate("not-a-run", uri)
    with pytest.raises(ConfigError, match="no checkpoints/resume/run.json"):
        locate(str(tmp_path), uri)
    with pytest.raises(ConfigError, match="no such run"):
        locate("0" * 32, uri)


def test_conflicting_overrides_are_named(compose):
    saved = compose(["trainer.epochs=4", "model.filters=4"])
    same = compose(["trainer.epochs=4", "model.filters=4", "resume=/x", "trainer.verbose=0"])
    assert conflicts(same, saved, ["trainer.epochs=4", "resume=/x", "trainer.verbose=0"]) == []
    other = compose(["trainer.epochs=4", "model=unet_original"])
    found = conflicts(other, saved, ["model=unet_original"])
    assert found and all(f.startswith("model.") for f in found)
    assert conflicts(other, saved, []) == []  # no explicit override: the saved config is used


def test_log_missing_epochs_is_idempotent(tmp_path):
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri)
    run_id = client.create_run(client.create_experiment("x")).info.run_id
    tracking.log_metrics(client, run_id, {"loss": 1.0}, step=1)  # epoch 1 logged, 2-3 lost
    hist = {"loss": [1.0, 0.5, 0.25], "val_loss": [2.0, 1.0, 0.5]}
    assert tracking.log_missing_epochs(client, run_id, hist) == 5
    assert tracking.log_missing_epochs(client, run_id, hist) == 0
    assert steps_of(client, run_id, "loss") == [1, 2, 3]
    assert history(client, run_id, "val_loss") == [2.0, 1.0, 0.5]


def test_models_hold_no_code_and_load_in_safe_mode(tmp_path, compose):
    import keras

    from segexp.models import build_model

    cfg = compose(["model.depth=2", "model.filters=4"])
    model = build_model(cfg.model, (32, 32, 1), 3)
    assert not [layer for layer in model.layers if isinstance(layer, keras.layers.Lambda)]
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    assert loaded.count_params() == model.count_params()


def test_early_stopping_best_weights_survive_a_restart(tmp_path):
    """EarlyStopping(restore_best_weights) keeps its best weights in memory only; the resume
    checkpoint saves them, so a resumed run ends on the same weights."""
    import json

    import keras
    import numpy as np

    from segexp.checkpoint import STATE_FILE, ResumeCheckpoint, resume_dir

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    es = keras.callbacks.EarlyStopping(patience=3, restore_best_weights=True)
    es.set_model(model)
    best = [np.full(w.shape, 7.0, np.float32) for w in model.get_weights()]
    es.best_weights, es.best, es.wait = best, 0.25, 1
    ckpt = ResumeCheckpoint(tmp_path, "r" * 32, watch=[es])
    ckpt.set_model(model)
    ckpt.before_log(0, {"loss": 1.0, "val_loss": 0.25})

    state = json.loads((resume_dir(tmp_path) / STATE_FILE).read_text())
    fresh = keras.callbacks.EarlyStopping(patience=3, restore_best_weights=True)
    fresh.set_model(model)
    fresh.on_train_begin()  # Keras resets best_weights here
    restored = ResumeCheckpoint(tmp_path, "r" * 32, watch=[fresh], state=state)
    restored.set_model(model)
    restored.on_train_begin()
    assert fresh.best == 0.25 and fresh.wait == 1
    for got, want in zip(fresh.best_weights, best, strict=True):
        np.testing.assert_array_equal(got, want)


def test_deterministic_resume_with_dropout_matches_an_uninterrupted_run(
    tmp_path, compose, monkeypatch
):
    """Dropout's seed generators are part of the checkpoint: after an interrupt at epoch 2 the
    resumed run draws the masks the uninterrupted run drew, so every epoch's metrics agree."""
    import segexp.epoch_logger as epoch_logger
    from segexp.runner import train

    settings = [
        *TINY,
        "trainer.epochs=4",
        "trainer.deterministic=true",
        "model.dropout=0.5",
        "tracking.log_model=false",
        "trainer.evaluate_test=false",
    ]
    (tmp_path / "ref").mkdir()
    monkeypatch.chdir(tmp_path / "ref")
    ref_uri = f"sqlite:///{tmp_path}/ref.db"
    train(compose([*settings, f"tracking.uri={ref_uri}"]))

    real = epoch_logger.tracking.log_metrics

    def interrupted(client, run_id, metrics, step=None):
        if step == 2:
            raise KeyboardInterrupt
        return real(client, run_id, metrics, step=step)

    uri, out = f"sqlite:///{tmp_path}/mlflow.db", tmp_path / "out"
    out.mkdir()
    monkeypatch.chdir(out)
    with monkeypatch.context() as patch:
        patch.setattr(epoch_logger.tracking, "log_metrics", interrupted)
        with pytest.raises(KeyboardInterrupt):
            train(compose([*settings, f"tracking.uri={uri}"]))
    state = json.loads((out / "checkpoints/resume/state.json").read_text())
    assert state["epoch"] == 2
    with np.load(out / "checkpoints/resume" / state["weights"]) as saved:
        seeds = [saved[k] for k in saved.files if k.startswith("model_") and saved[k].shape == (2,)]
    assert len(seeds) == 3  # one seed-generator state per Dropout layer
    train(compose([*settings, f"tracking.uri={uri}", f"resume={out}"]))

    client, run = only_run(uri)
    ref_client, ref = only_run(ref_uri)
    assert run.info.status == "FINISHED"
    for key in ("loss", "val_loss", "val_accuracy"):
        assert steps_of(client, run.info.run_id, key) == [1, 2, 3, 4], key
        assert history(client, run.info.run_id, key) == history(ref_client, ref.info.run_id, key)


def test_checkpoint_variables_round_trip_and_refuse_another_model(tmp_path):
    """Model and optimizer variables come back exactly; another model's checkpoint is refused."""
    import keras

    from segexp.checkpoint import RESUME_SUBDIR, Resume, load_weights, save_variables

    def net(width: int) -> keras.Model:
        model = keras.Sequential(
            [keras.Input((3,)), keras.layers.Dense(width), keras.layers.Dropout(0.5, seed=1)]
        )
        model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
        return model

    x = np.random.default_rng(0).normal(size=(16, 3)).astype(np.float32)
    trained = net(2)
    trained.fit(x, x[:, :2], epochs=2, batch_size=4, verbose=0)
    folder = tmp_path / RESUME_SUBDIR
    folder.mkdir(parents=True)
    save_variables(trained, folder / "epoch-00002.npz")
    resume = Resume(tmp_path, "r" * 32, {"epoch": 2, "weights": "epoch-00002.npz"})

    fresh = net(2)
    load_weights(fresh, resume)
    for got, want in zip(fresh.variables, trained.variables, strict=True):
        np.testing.assert_array_equal(got.numpy(), want.numpy())  # incl. the seed generator
    assert int(fresh.optimizer.iterations.numpy()) == 8
    for got, want in zip(fresh.optimizer.variables, trained.optimizer.variables, strict=True):
        np.testing.assert_array_equal(got.numpy(), want.numpy())

    with pytest.raises(ConfigError, match=r"epoch-00002\.npz .*another model"):
        load_weights(net(5), resume)
