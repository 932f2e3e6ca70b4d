"""Helpers shared by the reliability tests: tiny training subprocesses and MLflow look-ups."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from mlflow import MlflowClient

from tests.conftest import TINY

ROOT = Path(__file__).resolve().parents[1]
EPOCH_KEYS = ("loss", "val_loss", "accuracy", "val_accuracy", "lr")


def train_cmd(uri: str, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "segexp.train",
        *TINY,
        f"tracking.uri={uri}",
        "tracking.log_model=false",
        "trainer.evaluate_test=false",
        f"hydra.run.dir={out}",
        *extra,
    ]


def spawn(cmd: list[str], cwd: Path, **env_extra: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2", **env_extra}
    return subprocess.Popen(
        cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def run_cli(cmd: list[str], cwd: Path, timeout: float = 300, **env_extra: str):
    """Run a command to its end; (exit status, stdout and stderr together)."""
    proc = spawn(cmd, cwd, **env_extra)
    out = proc.communicate(timeout=timeout)[0]
    return proc.returncode, out


def wait_for_epoch(proc: subprocess.Popen, out: Path, epoch: int, timeout: float = 120) -> None:
    """Poll the resume checkpoint until ``epoch`` epochs are saved."""
    state = out / "checkpoints" / "resume" / "state.json"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"training ended early ({proc.returncode}):\n{proc.stdout.read()}")
        try:
            if json.loads(state.read_text())["epoch"] >= epoch:
                return
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"no checkpoint of epoch {epoch} within {timeout} s")


def only_run(uri: str, experiment: str = "segexp"):
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1, [r.info.run_id for r in runs]
    return client, runs[0]


def steps_of(client: MlflowClient, run_id: str, key: str) -> list[int]:
    return sorted(m.step for m in client.get_metric_history(run_id, key))


def history(client: MlflowClient, run_id: str, key: str) -> list[float]:
    return [m.value for m in sorted(client.get_metric_history(run_id, key), key=lambda m: m.step)]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_mlflow_server(
    backend_uri: str,
    log_path: Path,
    port: int,
    *,
    artifacts: Path | None = None,
    cwd: Path | None = None,
    own_group: bool = False,
    timeout: float = 120,
) -> subprocess.Popen:
    """``mlflow server`` (one worker) on 127.0.0.1:``port``, returned once ``/health`` answers;
    its output is appended to ``log_path``. ``own_group`` starts it in its own process group, so
    that signalling the group reaches its workers. Fails with the log's tail if it does not
    start."""
    cmd = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["--workers", "1", "--backend-store-uri", backend_uri]
    if artifacts is not None:
        cmd += ["--serve-artifacts", "--artifacts-destination", str(artifacts)]
    with open(log_path, "a") as log:
        proc = subprocess.Popen(
            cmd, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, start_new_session=own_group
        )
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as reply:
                if reply.status == 200:
                    return proc
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_server(proc, own_group=own_group)
            raise AssertionError("mlflow server did not start:\n" + log_path.read_text()[-3000:])
        time.sleep(0.3)


def stop_server(proc: subprocess.Popen, *, own_group: bool = False, timeout: float = 30) -> None:
    """SIGTERM (to its process group when it has one), then SIGKILL after ``timeout``."""
    if proc.poll() is not None:
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig) if own_group else proc.send_signal(sig)
            proc.wait(timeout=timeout)
            return
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue
