"""Load without loss: 8 concurrent jobs into a new experiment of the PostgreSQL-backed server and
8 into one new SQLite file; a server killed and restarted while a run trains."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest
from mlflow import MlflowClient

from tests._runs import (
    EPOCH_KEYS,
    ROOT,
    free_port,
    start_mlflow_server,
    steps_of,
    stop_server,
    wait_for_epoch,
)
from tests.cluster._cluster import (
    artifact_paths,
    default_runs,
    record_figure,
    runs_in,
    train_args,
)

pytestmark = pytest.mark.cluster
JOBS, EPOCHS = 8, 3
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
# Set-up artifacts plus the learning curves and a prediction panel at epochs 2 and 3.
ARTIFACTS = {"config.yaml", "overrides.yaml", "model_summary.txt", "preview.png"}


def _parallel_jobs(uri: str, experiment: str, tmp_path: Path) -> None:
    procs = [
        subprocess.Popen(
            train_args(
                uri,
                experiment,
                f"seed={i}",
                f"trainer.epochs={EPOCHS}",
                f"hydra.run.dir={tmp_path}/job{i}",
            ),
            cwd=tmp_path,
            env=ENV,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(JOBS)
    ]
    outs = [p.communicate(timeout=900)[0] for p in procs]
    failed = [o[-2000:] for p, o in zip(procs, outs, strict=True) if p.returncode != 0]
    assert not failed, "\n----\n".join(failed)


def _count(client: MlflowClient, experiment: str, label: str) -> None:
    runs = runs_in(client, experiment)
    epochs = {
        r.info.run_id: {k: steps_of(client, r.info.run_id, k) for k in EPOCH_KEYS} for r in runs
    }
    found_epochs = sum(len(s) for per_run in epochs.values() for s in per_run.values())
    files = {r.info.run_id: artifact_paths(client, r.info.run_id) for r in runs}
    panels = sum(
        len([f for f in fs if f.startswith("images/predictions")]) for fs in files.values()
    )
    expected_epochs = JOBS * EPOCHS * len(EPOCH_KEYS)
    set_up = sum(len(ARTIFACTS & f) for f in files.values())
    record_figure(
        f"{label}: {JOBS} concurrent jobs; runs {len(runs)}/{JOBS} (in Default: "
        f"{len(default_runs(client))}); epoch values {found_epochs}/{expected_epochs}; "
        f"set-up artifacts {set_up}/{JOBS * len(ARTIFACTS)}; prediction panels {panels}"
    )
    assert len(runs) == JOBS
    assert default_runs(client) == []
    assert sorted(int(r.data.params["seed"]) for r in runs) == list(range(JOBS))
    for run in runs:
        run_id = run.info.run_id
        assert run.info.status == "FINISHED", run.data.tags.get("error")
        for key, steps in epochs[run_id].items():
            assert steps == list(range(1, EPOCHS + 1)), (run_id, key, steps)
        assert ARTIFACTS | {"learning_curves.png"} <= files[run_id], files[run_id]
    assert panels > 0


def test_eight_parallel_jobs_into_a_new_experiment_on_the_postgresql_server(tmp_path, server_uri):
    _parallel_jobs(server_uri, "load-postgresql", tmp_path)
    _count(MlflowClient(server_uri), "load-postgresql", "PostgreSQL-backed server")


def test_eight_parallel_jobs_into_a_new_experiment_in_one_sqlite_file(tmp_path):
    uri = f"sqlite:///{tmp_path}/load.db"
    _parallel_jobs(uri, "load-sqlite", tmp_path)
    _count(MlflowClient(uri), "load-sqlite", "one SQLite file")


def _start_server(port: int, log: Path, artifacts: Path) -> subprocess.Popen:
    """The harness's PostgreSQL store behind a server of this test's own (its own process group:
    the workers go with it)."""
    backend = os.environ["SEGEXP_CLUSTER_DB_URI"]
    return start_mlflow_server(backend, log, port, artifacts=artifacts, own_group=True)


def test_server_killed_and_restarted_mid_run_loses_and_duplicates_no_epoch(tmp_path):
    port = free_port()
    uri, epochs, out = f"http://127.0.0.1:{port}", 30, tmp_path / "run"
    server = _start_server(port, tmp_path / "server.log", tmp_path / "art")
    # Fail fast while the server is down (MLflow's client would otherwise retry each call for
    # minutes, and training would wait instead of going on).
    env = {**ENV, "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"}
    cmd = train_args(
        uri,
        "restart",
        f"trainer.epochs={epochs}",
        "trainer.log_images_every=10",
        f"hydra.run.dir={out}",
    )
    proc = subprocess.Popen(
        cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        wait_for_epoch(proc, out, 3, timeout=300)
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()
        down_at = _saved_epoch(out)
        wait_for_epoch(proc, out, down_at + 3, timeout=300)  # training goes on while it is down
        server = _start_server(port, tmp_path / "server.log", tmp_path / "art")
        up_at = _saved_epoch(out)
        log, _ = proc.communicate(timeout=600)
        assert proc.returncode == 0, log[-3000:]
        client = MlflowClient(uri)
        (run,) = runs_in(client, "restart")
        assert run.info.status == "FINISHED", run.data.tags.get("error")
        assert "training goes on" in log  # epochs really failed to log while it was down
        counts = {
            k: sorted(m.step for m in client.get_metric_history(run.info.run_id, k))
            for k in EPOCH_KEYS
        }
    finally:
        if proc.poll() is None:
            proc.kill()
        stop_server(server, own_group=True)
    for key, steps in counts.items():
        assert steps == list(range(1, epochs + 1)), (key, steps)  # every epoch, each once
    record_figure(
        f"server restart: killed after epoch {down_at}, back after epoch {up_at}; per-epoch "
        f"values in the run {sum(map(len, counts.values()))}/{epochs * len(EPOCH_KEYS)}, "
        "none twice"
    )


def _saved_epoch(out: Path) -> int:
    import json

    return int(json.loads((out / "checkpoints" / "resume" / "state.json").read_text())["epoch"])
