"""Tracking stores: a real `mlflow server` on 127.0.0.1 (with a password in the URI that must
never be logged), an unreachable server, and parallel writers on one SQLite file."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from segexp import track
from segexp.config import mask_secrets, redact
from segexp.errors import ConfigError, TrackingError
from tests._runs import free_port, only_run, run_cli, start_mlflow_server, steps_of, stop_server
from tests.conftest import TINY


@pytest.fixture
def server(tmp_path):
    """``mlflow server`` on 127.0.0.1 with its own SQLite store and artifact folder."""
    port = free_port()
    proc = start_mlflow_server(
        f"sqlite:///{tmp_path}/srv.db",
        tmp_path / "server.log",
        port,
        artifacts=tmp_path / "art",
        cwd=tmp_path,
        timeout=90,
    )
    try:
        yield port
    finally:
        stop_server(proc, timeout=20)


@pytest.mark.slow
def test_training_against_a_real_server_never_logs_the_password(
    tmp_path, server, compose, monkeypatch
):
    from segexp.train.lifecycle import train

    uri = f"http://user:s3cr3tpw@127.0.0.1:{server}"
    monkeypatch.chdir(tmp_path)
    for name in (track.USER_ENV, track.PASSWORD_ENV):  # set by the run; unset after
        monkeypatch.setenv(name, "")
    cfg = compose(
        [
            *TINY,
            f"tracking.uri={uri}",
            "tracking.log_model=false",
            "trainer.epochs=1",
            "+tracking.tags.api_token=tok3n-value",
        ]
    )
    train(cfg)
    client, run = only_run(f"http://127.0.0.1:{server}")
    assert run.info.status == "FINISHED"
    assert steps_of(client, run.info.run_id, "val_loss") == [1]
    # The credentials travel in MLflow's environment variables, not in the URI.
    assert run.data.params["tracking.uri"] == f"http://127.0.0.1:{server}"
    assert run.data.tags["api_token"] == "***"
    logged = [*run.data.params.values(), *run.data.tags.values(), run.info.run_name]
    for name in ("config.yaml", "overrides.yaml"):
        logged.append(
            Path(client.download_artifacts(run.info.run_id, name, str(tmp_path))).read_text()
        )
    text = "\n".join(map(str, logged))
    assert "s3cr3tpw" not in text and "tok3n-value" not in text
    assert "api_token: '***'" in text or "api_token: ***" in text
    # The artifacts went through the server into its own artifact folder.
    assert list((tmp_path / "art").rglob("config.yaml"))


def test_no_secret_reaches_the_output_folder_or_the_console(tmp_path, server, compose, monkeypatch):
    """A password in tracking.uri and a secret tag: neither is in any file under the output
    folders (Hydra's .hydra/*.yaml, the resume checkpoint) nor in the console output of a run
    killed mid-way, a resume without the credentials, and a resume with them in the env."""
    from segexp.train.resume import prepare

    uri = f"http://user:s3cr3tpw@127.0.0.1:{server}"
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "segexp.train", *TINY, "tracking.log_model=false"]
    first = [f"tracking.uri={uri}", "+tracking.tags.api_token=tok3n-value", f"hydra.run.dir={out}"]
    code, killed = run_cli([*cmd, *first], tmp_path, SEGEXP_FAULT="between_epochs")
    assert code == -9, killed[-3000:]
    hydra_config = (out / ".hydra" / "config.yaml").read_text()
    assert "api_token: '***'" in hydra_config and "user:***@" in hydra_config

    for name in (track.USER_ENV, track.PASSWORD_ENV):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigError) as refused:  # a resume without the credentials: one line
        prepare(compose([f"resume={out}"]), [f"resume={out}"])
    assert str(refused.value) == (
        f"resume={out}: the run's tracking store http://127.0.0.1:{server} needs credentials; "
        "set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD (or pass "
        "tracking.uri=<uri with user:password@>)"
    )
    resume = [*cmd, f"resume={out}", f"hydra.run.dir={tmp_path}/r"]
    credentials = {track.USER_ENV: "user", track.PASSWORD_ENV: "s3cr3tpw"}
    code, resumed = run_cli(resume, tmp_path, **credentials)
    assert code == 0, resumed[-3000:]
    assert "View run " in resumed and f"at: http://127.0.0.1:{server}/#/" in resumed
    client, run = only_run(f"http://127.0.0.1:{server}")
    assert run.info.status == "FINISHED" and run.data.tags["api_token"] == "***"

    files = [p for p in tmp_path.glob("[or]*/**/*") if p.is_file()]
    assert {".hydra/hydra.yaml", ".hydra/overrides.yaml", "checkpoints/resume/config.yaml"} <= {
        str(p.relative_to(out)) for p in files if p.is_relative_to(out)
    }
    for text in [
        killed,
        str(refused.value),
        resumed,
        *(p.read_bytes().decode("latin-1") for p in files),
    ]:
        assert "s3cr3tpw" not in text and "tok3n-value" not in text


def test_no_secret_reaches_a_sweeps_files_or_console(tmp_path, server):
    """The same for a one-job multirun: Hydra escapes the override (``http\\://user\\:pw@``),
    its launcher logs every job's overrides, and the parent run has its own MLflow client."""
    uri = f"http://user:s3cr3tpw@127.0.0.1:{server}"
    cmd = [sys.executable, "-m", "segexp.train", "-m", *TINY, "tracking.log_model=false"]
    extra = [f"tracking.uri={uri}", "+tracking.tags.api_token=tok3n-value", "seed=1"]
    code, console = run_cli([*cmd, *extra, f"hydra.sweep.dir={tmp_path}/sweep"], tmp_path)
    assert code == 0, console[-3000:]
    assert "#0 : " in console and "user\\:***@" in console  # the launcher's line, masked
    from mlflow import MlflowClient

    client = MlflowClient(f"http://127.0.0.1:{server}")
    (exp,) = [e for e in client.search_experiments() if e.name != "Default"]
    runs = client.search_runs([exp.experiment_id])
    assert sorted(r.data.tags.get("segexp.sweep_role", "child") for r in runs) == [
        "child",
        "parent",
    ]
    assert all(r.info.status == "FINISHED" for r in runs)
    files = [p for p in (tmp_path / "sweep").glob("**/*") if p.is_file()]
    assert any(p.name == "overrides.yaml" for p in files)
    for text in [console, *(p.read_bytes().decode("latin-1") for p in files)]:
        assert "s3cr3tpw" not in text and "tok3n-value" not in text


def test_unreachable_server_fails_with_one_redacted_line():
    with pytest.raises(TrackingError) as info:
        track.check_store("http://me:pw123@127.0.0.1:9", timeout=2)
    message = str(info.value)
    assert "\n" not in message and "pw123" not in message
    assert message.startswith("tracking.uri=http://me:***@127.0.0.1:9: MLflow server not reachable")


def test_redaction_helpers():
    assert redact("a +dataset.password=x tracking.uri=http://u:p@h") == (
        "a +dataset.password=*** tracking.uri=http://u:***@h"
    )
    # as Hydra escapes a multirun override
    assert redact("tracking.uri=http\\://u\\:p4ss@h\\:5000") == (
        "tracking.uri=http\\://u\\:***@h\\:5000"
    )
    assert mask_secrets({"tags": {"token": "t", "owner": "me"}, "uri": "s3://k:v@b"}) == {
        "tags": {"token": "***", "owner": "me"},
        "uri": "s3://k:***@b",
    }


_WRITER = """
import sys, mlflow
from mlflow import MlflowClient
from segexp import track
track.check_store(sys.argv[1])  # what segexp-train does first (schema init under a lock)
client = MlflowClient(sys.argv[1])
mlflow.set_tracking_uri(sys.argv[1])
exp = track.retry(mlflow.set_experiment, "par").experiment_id
run = track.retry(client.create_run, exp).info.run_id
for step in range(1, 41):
    track.log_metrics(client, run, {"a": step, "b": -step}, step=step)
track.set_status(client, run, "FINISHED")
"""


@pytest.mark.slow
def test_sqlite_store_survives_parallel_writers(tmp_path):
    """Four processes create runs and log 40 steps each into one fresh SQLite file at once."""
    uri = f"sqlite:///{tmp_path}/par.db"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WRITER, uri],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(4)
    ]
    outputs = [p.communicate(timeout=240)[0] for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, "\n".join(o[-2000:] for o in outputs)
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("par").experiment_id])
    assert len(runs) == 4 and {r.info.status for r in runs} == {"FINISHED"}
    for run in runs:
        assert steps_of(client, run.info.run_id, "a") == list(range(1, 41))
