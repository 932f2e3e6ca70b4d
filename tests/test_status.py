"""Honest run status: FAILED with the error, FAILED on a NaN loss, KILLED on SIGTERM with a
checkpoint, and a transient logging outage that does not stop a fine training."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from segexp import track
from segexp.track import store
from segexp.train.checkpoint import NaNLossError
from tests._runs import only_run, spawn, steps_of, train_cmd, wait_for_epoch
from tests.conftest import TINY

FAST = ["tracking.log_model=false", "trainer.evaluate_test=false"]


def _cfg(compose, uri, *extra):
    return compose([*TINY, *FAST, f"tracking.uri={uri}", *extra])


def test_nan_loss_ends_failed_with_the_reason(tmp_path, compose, monkeypatch):
    import keras

    from segexp.train import build
    from segexp.train.lifecycle import train

    real = build.compile_args

    def nan_loss(*args, **kwargs):
        # Inject the NaN: the loss of the very first batch is NaN, on every machine.
        compiled = real(*args, **kwargs)
        compiled["loss"] = lambda y_true, y_pred: keras.ops.mean(y_pred) * float("nan")
        return compiled

    monkeypatch.setattr(build, "compile_args", nan_loss)
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    with pytest.raises(NaNLossError, match="NaN loss at epoch 1"):
        train(_cfg(compose, uri))
    client, run = only_run(uri)
    assert run.info.status == "FAILED"
    assert run.data.tags["error"] == "NaNLossError: NaN loss at epoch 1"
    assert steps_of(client, run.info.run_id, "loss") == []  # the aborted epoch is not logged
    text = Path(client.download_artifacts(run.info.run_id, "error.txt")).read_text()
    assert "NaN loss at epoch 1" in text


def test_exception_marks_the_run_failed_with_the_error(tmp_path, compose, monkeypatch):
    from segexp.train import results
    from segexp.train.lifecycle import train

    def boom(*args, **kwargs):
        raise RuntimeError("disk full while logging results")

    monkeypatch.setattr(results, "log_results", boom)
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    with pytest.raises(RuntimeError):
        train(_cfg(compose, uri, "trainer.epochs=1"))
    client, run = only_run(uri)
    assert run.info.status == "FAILED"
    assert run.data.tags["error"] == "RuntimeError: disk full while logging results"
    assert "Traceback" in Path(client.download_artifacts(run.info.run_id, "error.txt")).read_text()
    assert steps_of(client, run.info.run_id, "loss") == [1]
    # The realised split sizes sit beside the configured fractions.
    params = run.data.params
    sizes = {k: int(params[f"dataset.split_sizes.{k}"]) for k in ("train", "val", "test")}
    assert sum(sizes.values()) == 24 and min(sizes.values()) >= 1
    assert float(params["dataset.split.train"]) > 0


def test_split_fractions_must_sum_to_one(tmp_path, compose, monkeypatch):
    from segexp.data.split import split_fractions
    from segexp.errors import ConfigError
    from segexp.train.lifecycle import train

    thirds = split_fractions({"train": 0.3333, "val": 0.3333, "test": 0.3333})  # rounding
    assert thirds == pytest.approx({"train": 1 / 3, "val": 1 / 3, "test": 1 / 3})
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    with pytest.raises(ConfigError) as info:
        train(_cfg(compose, uri, "dataset.split={train:0.7,val:0.3,test:0.2}"))
    assert str(info.value) == (
        "dataset.split={train: 0.7, val: 0.3, test: 0.2} sums to 1.2; the fractions must sum "
        "to 1 (change dataset.split.train / val / test)"
    )


def test_transient_logging_errors_are_retried_and_never_crash(tmp_path, compose, monkeypatch):
    from mlflow import MlflowClient

    from segexp.train.lifecycle import train

    monkeypatch.setattr(store.time, "sleep", lambda s: None)
    real = MlflowClient.log_batch
    failures = {"n": 0}

    def flaky(self, run_id, metrics=(), *args, **kwargs):
        # Every call logging epoch 1 fails 5 times (more than the retries): the epoch is only
        # logged by the catch-up at the end. Other calls fail once and succeed on retry.
        if metrics and any(m.step == 1 for m in metrics) and failures["n"] < 5:
            failures["n"] += 1
            raise ConnectionError("store hiccup")
        return real(self, run_id, metrics, *args, **kwargs)

    monkeypatch.setattr(MlflowClient, "log_batch", flaky)
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    with pytest.warns(RuntimeWarning, match="logging epoch 1 to MLflow failed"):
        train(_cfg(compose, uri))
    client, run = only_run(uri)
    assert run.info.status == "FINISHED"
    assert failures["n"] == 5
    for key in ("loss", "val_loss", "lr"):
        assert steps_of(client, run.info.run_id, key) == [1, 2], key


def test_sigterm_saves_a_checkpoint_and_marks_the_run_killed(tmp_path):
    uri, out = f"sqlite:///{tmp_path}/mlflow.db", tmp_path / "out"
    proc = spawn(train_cmd(uri, out, "trainer.epochs=50", "trainer.steps_per_epoch=4"), tmp_path)
    wait_for_epoch(proc, out, 1)
    proc.send_signal(signal.SIGTERM)
    log = proc.communicate(timeout=60)[0]
    assert proc.returncode != 0
    assert f"segexp-train resume={out}" in log
    client, run = only_run(uri)
    assert run.info.status == "KILLED"
    assert "SIGTERM" in run.data.tags["segexp.status_reason"]
    folder = out / "checkpoints" / "resume"
    assert run.data.tags["segexp.resume_checkpoint"] == str(folder)
    state = json.loads((folder / "state.json").read_text())
    assert state["run_id"] == run.info.run_id and state["epoch"] >= 1
    assert (folder / state["weights"]).is_file()
    assert steps_of(client, run.info.run_id, "loss") == list(range(1, state["epoch"] + 1))


def test_an_interrupt_between_checkpoint_and_logging_still_logs_the_epoch(
    tmp_path, compose, monkeypatch
):
    """Ctrl-C after epoch 2's checkpoint but before it is logged: the KILLED run holds epoch 2."""
    import segexp.train.epoch_logger as epoch_logger
    from segexp.train.lifecycle import train

    real = epoch_logger.track.log_metrics

    def interrupted(client, run_id, metrics, step=None):
        if step == 2:
            raise KeyboardInterrupt
        return real(client, run_id, metrics, step=step)

    monkeypatch.setattr(epoch_logger.track, "log_metrics", interrupted)
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    with pytest.raises(KeyboardInterrupt):
        train(_cfg(compose, uri, "trainer.epochs=3"))
    client, run = only_run(uri)
    assert run.info.status == "KILLED"
    assert run.data.tags["segexp.status_reason"] == "interrupted (received SIGINT)"
    state = json.loads(Path(run.data.tags["segexp.resume_checkpoint"], "state.json").read_text())
    assert state["epoch"] == 2
    for key in ("loss", "val_loss", "lr"):
        assert steps_of(client, run.info.run_id, key) == [1, 2], key


def test_resume_after_a_crash_past_model_logging_keeps_one_model(tmp_path, compose, monkeypatch):
    """The run crashed after its model was logged and registered: resuming finishes the run
    without a second logged model or a second registered version."""
    import mlflow

    from segexp.train.lifecycle import train

    real = track.log_model

    def log_then_crash(*args, **kwargs):
        real(*args, **kwargs)
        raise OSError("disk full after logging the model")

    out = tmp_path / "out"
    out.mkdir()
    monkeypatch.chdir(out)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    settings = [*TINY, "trainer.epochs=1", "trainer.evaluate_test=false", f"tracking.uri={uri}"]
    settings.append("tracking.registered_model_name=tiny")
    with monkeypatch.context() as patch:
        patch.setattr(track, "log_model", log_then_crash)
        with pytest.raises(OSError):
            train(compose(settings))
    client, run = only_run(uri)
    assert run.info.status == "FAILED"

    train(compose([*settings, f"resume={out}"]))
    client, run = only_run(uri)
    assert run.info.status == "FINISHED"
    models = mlflow.search_logged_models(
        filter_string=f"source_run_id = '{run.info.run_id}'", output_format="list"
    )
    assert [(m.name, str(m.status)) for m in models] == [("model", "READY")]
    assert [int(v.version) for v in client.search_model_versions("name = 'tiny'")] == [1]
