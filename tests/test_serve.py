"""The model a run logs has a tensor signature and answers HTTP requests from
`mlflow models serve` like the model itself."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np

from segexp.predict.inference import call_model
from tests._e2e import ONE_EPOCH, train_run
from tests._runs import free_port


def post_json(url: str, payload: dict, timeout: float = 60) -> dict:
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


def wait_until_up(url: str, proc: subprocess.Popen, log: Path, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(
                f"mlflow models serve exited {proc.returncode}:\n{log.read_text()}"
            )
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.5)
    raise AssertionError(f"mlflow models serve not up after {timeout}s:\n{log.read_text()}")


def test_logged_model_has_a_signature_and_serves_over_http(compose, tmp_path, store, caplog):
    import mlflow

    overrides = [o for o in ONE_EPOCH if o != "tracking.log_model=false"]
    with caplog.at_level(logging.WARNING):
        client, run = train_run(compose, tmp_path / "work", store, "serve", overrides)
    assert run.info.status == "FINISHED", run.data.tags.get("error")
    assert "signature" not in caplog.text.lower()

    mlflow.set_tracking_uri(store)
    uri = f"runs:/{run.info.run_id}/model"
    info = mlflow.models.get_model_info(uri)
    assert info.signature is not None
    (inp,) = info.signature.inputs.inputs
    (out,) = info.signature.outputs.inputs
    assert inp.shape == (-1, 64, 64, 1) and str(inp.type) == "float32"
    assert out.shape == (-1, 64, 64, 1) and str(out.type) == "float32"  # binary: sigmoid head

    port = free_port()
    log = tmp_path / "serve.log"
    # The server runs uvicorn from the virtual environment's bin folder.
    bin_dir = str(Path(sys.executable).parent)
    env = {
        **os.environ,
        "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
        "MLFLOW_TRACKING_URI": store,
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }
    mlflow_cli = [sys.executable, "-m", "mlflow"]
    with log.open("w") as sink:
        proc = subprocess.Popen(
            [*mlflow_cli, "models", "serve", "-m", uri, "--env-manager", "local"]
            + ["-h", "127.0.0.1", "-p", str(port), "-w", "1"],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=tmp_path,
            start_new_session=True,
        )
    try:
        wait_until_up(f"http://127.0.0.1:{port}/ping", proc, log)
        batch = np.random.default_rng(0).random((2, 64, 64, 1)).astype(np.float32)
        answer = post_json(f"http://127.0.0.1:{port}/invocations", {"inputs": batch.tolist()})
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)

    served = np.asarray(answer["predictions"], np.float32)
    assert served.shape == (2, 64, 64, 1)
    local = mlflow.keras.load_model(uri)
    np.testing.assert_allclose(served, call_model(local, batch), atol=1e-5)
    assert served.min() >= 0.0 and served.max() <= 1.0
