"""Checkpoint and resume: a SIGKILLed run continues into the same MLflow run, exactly once."""

from __future__ import annotations

import json
import os
import re
import signal
import sys
from pathlib import Path

import numpy as np
import pytest

from segexp import track
from segexp.errors import ConfigError
from segexp.train.resume import conflicts, locate
from tests._runs import EPOCH_KEYS, history, only_run, run_cli, steps_of
from tests.conftest import TINY

EPOCHS = 4
SETTINGS = [
    f"trainer.epochs={EPOCHS}",
    "trainer.steps_per_epoch=6",
    "trainer.deterministic=true",
    "augmentation=flip",
    "trainer.log_images_every=1",
]


# SIGKILL at each fault point in turn, each kill in the process resuming the previous one:
# (point, completed epochs in the checkpoint after the kill, epochs the run holds after it).
KILLS = [
    ("run_created", None, 0),  # run.json does not hold the run id yet
    ("mid_epoch", 1, 1),  # during epoch 2
    ("between_epochs", 2, 1),  # epoch 2 is checkpointed, not yet logged
    ("test_evaluation", 3, 3),
    ("model_logging", 3, 3),  # the model is logged, the run not yet FINISHED
]
KILL_SETTINGS = [
    *TINY,
    "trainer.epochs=3",
    "trainer.steps_per_epoch=3",
    "trainer.deterministic=true",
    "augmentation=flip",
    "trainer.log_images_every=1",
]
# Summary metrics that measure time, not the model: compared by count only.
TIMING = ("train_images_per_sec", "mean_epoch_seconds", "mlflow_logging_seconds")


def _metric_counts(client, run) -> dict[str, int]:
    return {k: len(client.get_metric_history(run.info.run_id, k)) for k in run.data.metrics}


def test_sigkill_at_every_phase_then_resume_equals_an_uninterrupted_run(
    tmp_path, compose, monkeypatch
):
    import mlflow

    from segexp.train.lifecycle import train

    uri, out = f"sqlite:///{tmp_path}/mlflow.db", tmp_path / "out"
    cmd = [sys.executable, "-m", "segexp.train", *KILL_SETTINGS, f"tracking.uri={uri}"]
    run_file, state_file = (
        out / "checkpoints/resume/run.json",
        out / "checkpoints/resume/state.json",
    )
    for i, (point, saved, logged) in enumerate(KILLS):
        resume = [f"hydra.run.dir={out}"] if i == 0 else [f"hydra.run.dir={tmp_path}/r{i}"]
        resume += [f"resume={out}"] if i else []
        code, log = run_cli([*cmd, *resume], tmp_path, SEGEXP_FAULT=point)
        assert code == -signal.SIGKILL, f"{point}: exit {code}\n{log[-3000:]}"
        client, run = only_run(uri)
        assert run.info.status == "RUNNING", point  # what a SIGKILL leaves behind
        if saved is None:
            assert json.loads(run_file.read_text())["run_id"] is None
            assert not state_file.exists()
        else:
            assert json.loads(state_file.read_text())["epoch"] == saved, point
        assert steps_of(client, run.info.run_id, "loss") == list(range(1, logged + 1)), point
    has_test = "test_loss" in run.data.metrics
    assert has_test  # logged before the kill while logging the model

    monkeypatch.chdir(tmp_path)
    train(compose([*KILL_SETTINGS, f"tracking.uri={uri}", f"resume={out}"]))
    client, run = only_run(uri)
    assert run.info.status == "FINISHED"
    assert run.data.tags["segexp.resumes"] == str(len(KILLS))
    assert "closed as KILLED" in run.data.tags["segexp.stale_run"]
    assert track.logged_image_steps(client, run.info.run_id) == {1, 2, 3}
    models = mlflow.search_logged_models(
        filter_string=f"source_run_id = '{run.info.run_id}'", output_format="list"
    )
    assert [(m.name, str(m.status)) for m in models] == [("model", "READY")]

    # One uninterrupted reference run of the same config.
    ref_uri = f"sqlite:///{tmp_path}/ref.db"
    (tmp_path / "ref").mkdir()
    monkeypatch.chdir(tmp_path / "ref")
    train(compose([*KILL_SETTINGS, f"tracking.uri={ref_uri}"]))
    ref_client, ref = only_run(ref_uri)
    counts, ref_counts = _metric_counts(client, run), _metric_counts(ref_client, ref)
    assert counts == ref_counts  # every epoch and every summary metric exactly once
    for key in EPOCH_KEYS:
        assert counts[key] == 3, key
    assert counts["num_params"] == counts["test_loss"] == counts["best_val_loss"] == 1
    for key, value in ref.data.metrics.items():
        if key.startswith(TIMING) or key.startswith("mlflow_logging"):
            continue
        if counts[key] > 1:
            assert history(client, run.info.run_id, key) == history(
                ref_client, ref.info.run_id, key
            ), key
        assert run.data.metrics[key] == value, key


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
    track.log_metrics(client, run_id, {"loss": 1.0}, step=1)  # epoch 1 logged, 2-3 lost
    hist = {"loss": [1.0, 0.5, 0.25], "val_loss": [2.0, 1.0, 0.5]}
    assert track.log_missing_epochs(client, run_id, hist) == 5
    assert track.log_missing_epochs(client, run_id, hist) == 0
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

    from segexp.callbacks import EarlyStopping
    from segexp.train.checkpoint import ResumeCheckpoint
    from segexp.train.resume_files import STATE_FILE, resume_dir

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    es = EarlyStopping(patience=3, restore_best_weights=True)
    es.set_model(model)
    best = [np.full(w.shape, 7.0, np.float32) for w in model.get_weights()]
    es.best_weights, es.best, es.wait = best, 0.25, 1
    ckpt = ResumeCheckpoint(tmp_path, "r" * 32, watch=[es])
    ckpt.set_model(model)
    ckpt.on_epoch_end(0, {"loss": 1.0, "val_loss": 0.25})

    state = json.loads((resume_dir(tmp_path) / STATE_FILE).read_text())
    fresh = EarlyStopping(patience=3, restore_best_weights=True)
    fresh.set_model(model)
    fresh.on_train_begin()  # Keras resets best_weights here
    restored = ResumeCheckpoint(tmp_path, "r" * 32, watch=[fresh], state=state)
    restored.set_model(model)
    restored.on_train_begin()
    assert fresh.best == 0.25 and fresh.wait == 1
    for got, want in zip(fresh.best_weights, best, strict=True):
        np.testing.assert_array_equal(got, want)


def test_epoch_timing_survives_a_restart(tmp_path):
    """The checkpoint saves the epoch timer's and the logger's state with each epoch and gives
    it back on resume, so a resumed run's timing summary covers every epoch."""
    import keras

    from segexp.train.checkpoint import ResumeCheckpoint
    from segexp.train.epoch_logger import EpochLogger, EpochTimer, epoch_summary
    from segexp.train.resume_files import STATE_FILE, resume_dir

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    timer, logger = EpochTimer(batch_size=4), EpochLogger(None, "r" * 32)
    timer.epoch_train_seconds, timer.epoch_seconds = [2.0, 1.0], [3.0, 1.5]
    timer.epoch_images, logger.logging_seconds = [8, 8], 0.5
    ckpt = ResumeCheckpoint(tmp_path, "r" * 32, watch=[timer, logger])
    ckpt.set_model(model)
    ckpt.on_epoch_end(1, {"loss": 1.0})

    state = json.loads((resume_dir(tmp_path) / STATE_FILE).read_text())
    fresh_timer, fresh_logger = EpochTimer(batch_size=4), EpochLogger(None, "r" * 32)
    restored = ResumeCheckpoint(tmp_path, "r" * 32, watch=[fresh_timer, fresh_logger], state=state)
    restored.set_model(model)
    restored.on_train_begin()
    # Throughput skips the first (tracing) epoch: 8 images in 1 s; 5 s over 2 epochs in all.
    assert epoch_summary(fresh_timer, fresh_logger) == pytest.approx(
        {
            "train_images_per_sec": 8.0,
            "mean_epoch_seconds": 2.5,
            "mlflow_logging_seconds": 0.5,
            "mlflow_logging_share": 0.1,
        }
    )


def test_deterministic_resume_with_dropout_matches_an_uninterrupted_run(
    tmp_path, compose, monkeypatch
):
    """Dropout's seed generators are part of the checkpoint: after an interrupt at epoch 2 the
    resumed run draws the masks the uninterrupted run drew, so every epoch's metrics agree."""
    from segexp.train.lifecycle import train

    settings = [
        *TINY,
        "trainer.epochs=4",
        "trainer.deterministic=true",
        "model.dropout=0.5",
        "tracking.log_model=false",
        "trainer.evaluate_test=false",
    ]
    ref_uri, uri, out = _reference_then_interrupted_at_epoch_2(
        tmp_path, compose, monkeypatch, settings
    )
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


@pytest.mark.slow
def test_resume_keeps_early_stopping_and_plateau_counters(tmp_path, compose, monkeypatch):
    """Interrupted after epoch 2, a run with early stopping and a plateau schedule stops at the
    epoch and with the learning rates of an uninterrupted run: both callbacks' counters (no
    improvement since epoch 1) survive the resume. Without them the resumed run would count
    epoch 3 as an improvement: no reduction after it, and no stop after epoch 4."""
    from segexp.train.lifecycle import train

    settings = [
        *TINY,
        "trainer.epochs=6",
        "trainer.deterministic=true",
        "trainer.early_stopping.enabled=true",
        "trainer.early_stopping.patience=3",
        "trainer.early_stopping.min_delta=1e9",  # never an improvement after the first epoch
        "optimizer.schedule.name=plateau",
        "+optimizer.schedule.patience=1",
        "+optimizer.schedule.factor=0.5",
        "+optimizer.schedule.min_delta=1e9",
        "tracking.log_model=false",
        "trainer.evaluate_test=false",
    ]
    ref_uri, uri, out = _reference_then_interrupted_at_epoch_2(
        tmp_path, compose, monkeypatch, settings
    )
    state = json.loads((out / "checkpoints/resume/state.json").read_text())
    assert state["epoch"] == 2
    assert (out / "checkpoints/resume/early_stopping_best.npz").is_file()
    train(compose([*settings, f"tracking.uri={uri}", f"resume={out}"]))

    client, run = only_run(uri)
    ref_client, ref = only_run(ref_uri)
    assert run.info.status == "FINISHED"
    assert steps_of(ref_client, ref.info.run_id, "loss") == [1, 2, 3, 4]  # stopped early
    lrs = history(ref_client, ref.info.run_id, "lr")
    assert lrs == pytest.approx([1e-3, 1e-3, 5e-4, 2.5e-4])  # halved after epochs 2 and 3
    for key in ("loss", "val_loss", "lr"):
        assert steps_of(client, run.info.run_id, key) == [1, 2, 3, 4], key
        assert history(client, run.info.run_id, key) == history(ref_client, ref.info.run_id, key)


def test_checkpoint_variables_round_trip_and_refuse_another_model(tmp_path):
    """Model and optimizer variables come back exactly; another model's checkpoint is refused."""
    import keras

    from segexp.train.checkpoint import load_weights, save_variables
    from segexp.train.resume import Resume
    from segexp.train.resume_files import RESUME_SUBDIR

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


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory):
    """A run of 3 epochs interrupted (Ctrl-C) while logging epoch 2: KILLED, with the
    checkpoints of epochs 1 and 2. Each test gets its own copy of the output folder and store."""
    import shutil

    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    import segexp.train.epoch_logger as epoch_logger
    from segexp.config import CONF_DIR
    from segexp.train.lifecycle import train

    base = tmp_path_factory.mktemp("interrupted")
    uri, out = f"sqlite:///{base}/mlflow.db", base / "out"
    settings = [*TINY, "trainer.epochs=3", "trainer.evaluate_test=false"]
    settings += ["tracking.log_model=false", f"tracking.uri={uri}"]
    real = epoch_logger.track.log_metrics

    def interrupt_at_2(client, run_id, metrics, step=None):
        if step == 2:
            raise KeyboardInterrupt
        return real(client, run_id, metrics, step=step)

    out.mkdir()
    previous = os.getcwd()
    os.chdir(out)
    epoch_logger.track.log_metrics = interrupt_at_2
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = hydra_compose(config_name="train", overrides=settings)
        with pytest.raises(KeyboardInterrupt):
            train(cfg)
    finally:
        epoch_logger.track.log_metrics = real
        os.chdir(previous)
    assert sorted(p.name for p in (out / "checkpoints/resume").glob("*.npz")) == [
        "epoch-00001.npz",
        "epoch-00002.npz",
    ]

    def copy(dest: Path) -> tuple[str, Path, list[str]]:
        shutil.copytree(out, dest / "out")
        shutil.copy(base / "mlflow.db", dest / "mlflow.db")
        new_uri = f"sqlite:///{dest}/mlflow.db"
        saved = dest / "out/checkpoints/resume/config.yaml"  # the copy's own store
        saved.write_text(saved.read_text().replace(uri, new_uri))
        return new_uri, dest / "out", [*settings[:-1], f"tracking.uri={new_uri}"]

    return copy


def _cli(cwd: Path, *args: str) -> tuple[int, str]:
    """`segexp-train ARGS`: (exit status, console output)."""
    return run_cli([sys.executable, "-m", "segexp.train", *args], cwd)


def _one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("segexp-train:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_truncated_newest_checkpoint_falls_back_to_the_previous_epoch(
    tmp_path, interrupted, compose, monkeypatch, capsys
):
    from segexp.train.lifecycle import train

    uri, out, settings = interrupted(tmp_path)
    newest = out / "checkpoints/resume/epoch-00002.npz"
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])
    monkeypatch.chdir(tmp_path)
    train(compose([*settings, f"resume={out}"]))
    said = capsys.readouterr().out
    assert f"resume: {newest} is unreadable (BadZipFile" in said
    assert "continuing from the previous checkpoint epoch-00001.npz (epoch 1)" in said
    client, run = only_run(uri)
    assert run.info.status == "FINISHED"
    assert run.data.tags["segexp.resumed_from_epoch"] == "1"
    for key in EPOCH_KEYS:
        assert steps_of(client, run.info.run_id, key) == [1, 2, 3], key


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("empty_weights", r"epoch-00002\.npz is unreadable \(EOFError.*no earlier checkpoint"),
        ("empty_config", r"config\.yaml is empty, not a saved segexp config; copy the run's"),
        ("empty_state", r"state\.json is unreadable \(.*\); start a new run"),
    ],
)
def test_an_unreadable_checkpoint_file_is_one_line_and_leaves_the_run_killed(
    tmp_path, interrupted, case, expected
):
    from mlflow import MlflowClient

    uri, out, _ = interrupted(tmp_path)
    folder = out / "checkpoints/resume"
    if case == "empty_weights":
        (folder / "epoch-00002.npz").write_bytes(b"")
        (folder / "epoch-00001.npz").unlink()
    else:
        (folder / ("config.yaml" if case == "empty_config" else "state.json")).write_text("")
    code, err = _cli(tmp_path, f"resume={out}", f"hydra.run.dir={tmp_path}/r")
    line = _one_line(err)
    assert code == 2
    assert re.search(expected, line), line
    run = MlflowClient(uri).get_run(json.loads((folder / "run.json").read_text())["run_id"])
    assert run.info.status == "KILLED"  # as the interrupt left it: not FAILED
    assert run.data.tags["segexp.resume_error"] == line.removeprefix("segexp-train: error: ")
    assert run.data.tags["segexp.status_reason"] == "interrupted (received SIGINT)"


def test_a_failed_resume_closes_a_run_whose_process_is_gone_as_killed(tmp_path, interrupted):
    """What SIGKILL leaves (RUNNING, its process gone) plus a corrupt checkpoint: the resume
    cannot start, and the run is closed as KILLED with the reason."""
    import subprocess

    from mlflow import MlflowClient

    uri, out, _ = interrupted(tmp_path)
    folder = out / "checkpoints/resume"
    record = json.loads((folder / "run.json").read_text())
    gone = subprocess.Popen(["true"])
    gone.wait()
    (folder / "run.json").write_text(json.dumps({**record, "pid": gone.pid}))
    client = MlflowClient(uri)
    client.update_run(record["run_id"], status="RUNNING")
    (folder / "config.yaml").write_text("")
    code, err = _cli(tmp_path, f"resume={out}", f"hydra.run.dir={tmp_path}/r")
    line = _one_line(err)
    assert code == 2
    run = client.get_run(record["run_id"])
    assert run.info.status == "KILLED"
    reason = run.data.tags["segexp.status_reason"]
    assert reason.startswith(f"killed (process {gone.pid} on ") and "config.yaml is empty" in reason
    assert run.data.tags["segexp.resume_error"] in line


def test_a_launch_killed_before_its_run_existed_is_resumed_into_a_new_run(
    tmp_path, compose, monkeypatch, capsys
):
    """The kill came after run.json (no run id) but before MLflow created the run: resume
    creates the run and trains it from epoch 0."""
    from mlflow import MlflowClient

    from segexp.train.lifecycle import train

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    out = tmp_path / "out"
    out.mkdir()
    monkeypatch.chdir(out)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    settings = [*TINY, "trainer.epochs=1", "trainer.evaluate_test=false"]
    settings += ["tracking.log_model=false", f"tracking.uri={uri}"]
    with monkeypatch.context() as patch:
        patch.setattr(MlflowClient, "create_run", killed)
        with pytest.raises(KeyboardInterrupt):
            train(compose(settings))
    record = json.loads((out / "checkpoints/resume/run.json").read_text())
    assert record["run_id"] is None and record["launch"]
    assert (
        MlflowClient(uri).search_runs(
            [MlflowClient(uri).get_experiment_by_name("segexp").experiment_id]
        )
        == []
    )
    train(compose([*settings, f"resume={out}"]))
    assert (
        "the interrupted launch never created its MLflow run; creating it"
        in capsys.readouterr().out
    )
    client, run = only_run(uri)
    assert run.info.status == "FINISHED"
    assert run.data.tags["segexp.launch"] == record["launch"]
    assert steps_of(client, run.info.run_id, "loss") == [1]
    assert (
        json.loads((out / "checkpoints/resume/run.json").read_text())["run_id"] == run.info.run_id
    )


def _reference_then_interrupted_at_epoch_2(tmp_path, compose, monkeypatch, settings):
    """An uninterrupted reference run (store ``ref.db``), then the same config interrupted
    (KeyboardInterrupt) while logging epoch 2, run in ``out/``; returns both stores and ``out``."""
    import segexp.train.epoch_logger as epoch_logger
    from segexp.train.lifecycle import train

    (tmp_path / "ref").mkdir()
    monkeypatch.chdir(tmp_path / "ref")
    ref_uri = f"sqlite:///{tmp_path}/ref.db"
    train(compose([*settings, f"tracking.uri={ref_uri}"]))

    real = epoch_logger.track.log_metrics

    def interrupted(client, run_id, metrics, step=None):
        if step == 2:
            raise KeyboardInterrupt
        return real(client, run_id, metrics, step=step)

    uri, out = f"sqlite:///{tmp_path}/mlflow.db", tmp_path / "out"
    out.mkdir()
    monkeypatch.chdir(out)
    with monkeypatch.context() as patch:
        patch.setattr(epoch_logger.track, "log_metrics", interrupted)
        with pytest.raises(KeyboardInterrupt):
            train(compose([*settings, f"tracking.uri={uri}"]))
    return ref_uri, uri, out
