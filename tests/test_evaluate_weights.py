"""The test split is evaluated, and the model logged, with the best epoch's weights; the best
checkpoint and the logged model load with plain Keras in safe mode (fresh process)."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import TINY

ROOT = Path(__file__).resolve().parents[1]
# Cosine decay makes the learning rate strictly fall, so with checkpoint.monitor=lr, mode=max the
# best epoch is epoch 1 of 3 by construction: best and last weights differ deterministically.
BEST_IS_FIRST = [
    "trainer.epochs=3",
    "optimizer.schedule.name=cosine",
    "trainer.checkpoint.monitor=lr",
    "trainer.checkpoint.mode=max",
]

LOAD_AND_EVALUATE = """
import json, sys
import numpy as np
import keras, mlflow

ckpt, data, uri, model_uri = sys.argv[1:5]
with np.load(data) as d:
    x, y = d["x"], d["y"]
out = {}
mlflow.set_tracking_uri(uri)
out["logged_pred"] = mlflow.keras.load_model(model_uri).predict(x, verbose=0).tolist()
local = mlflow.artifacts.download_artifacts(model_uri)
logged = keras.saving.load_model(f"{local}/data/model.keras")  # the logged file, safe mode
out["logged_file_pred"] = logged.predict(x, verbose=0).tolist()
assert "segexp" not in sys.modules  # the logged model needs no segexp import

import segexp.saving  # registers the custom loss and metrics

for name in ("best", "last"):
    model = keras.saving.load_model(f"{ckpt}/{name}.keras")  # safe mode, compiled
    out[name] = model.evaluate(x, y, batch_size=8, return_dict=True, verbose=0)
    out[name + "_pred"] = model.predict(x, verbose=0).tolist()
print("RESULT" + json.dumps(out))
"""


@pytest.fixture(scope="module")
def best_run(tmp_path_factory):
    from hydra import compose, initialize_config_dir
    from mlflow import MlflowClient

    from segexp.config import CONF_DIR
    from segexp.train.lifecycle import train

    tmp = tmp_path_factory.mktemp("best")
    uri = f"sqlite:///{tmp}/mlflow.db"
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", [*TINY, *BEST_IS_FIRST, f"tracking.uri={uri}"])
    with contextlib.chdir(tmp):  # checkpoints go to <cwd>/checkpoints outside Hydra
        train(cfg)
    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("segexp").experiment_id])
    return client, run, cfg, tmp, uri


def _test_split(cfg):
    """The run's test split as arrays, read from the same data source."""
    from segexp.config import input_spec
    from segexp.data import load_source

    shape = input_spec(cfg)
    source = load_source(cfg.dataset, shape[:2], shape[2], int(cfg.seed))
    pairs = list(source.splits["test"].as_numpy_iterator())
    return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])


def test_test_metrics_are_those_of_the_best_checkpoint(best_run):
    client, run, cfg, tmp, uri = best_run
    tags, metrics = run.data.tags, run.data.metrics
    lr = {m.step: m.value for m in client.get_metric_history(run.info.run_id, "lr")}
    assert lr[1] > lr[2] > lr[3]  # the premise: epoch 1 is the best by the monitor
    assert tags["segexp.evaluate_weights"] == "best"
    assert tags["segexp.evaluated_epoch"] == "1"

    x, y = _test_split(cfg)
    np.savez(tmp / "test.npz", x=x, y=y)
    model_dir = f"runs:/{run.info.run_id}/model"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            LOAD_AND_EVALUATE,
            str(tmp / "checkpoints"),
            str(tmp / "test.npz"),
            uri,
            model_dir,
        ],
        cwd=tmp,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.split("RESULT", 1)[1])

    best, last = out["best"], out["last"]
    # every compiled metric came back from the checkpoint, and they are the run's test_* values
    assert {f"test_{k}" for k in best} <= set(metrics)
    for key, value in best.items():
        assert metrics[f"test_{key}"] == pytest.approx(value, rel=1e-5, abs=1e-6), key
    # the check has teeth: the last epoch's weights give another test loss
    assert abs(last["loss"] - metrics["test_loss"]) > 1e-4
    # the logged model holds the best weights too
    np.testing.assert_allclose(out["logged_pred"], out["best_pred"], atol=1e-6)
    np.testing.assert_allclose(out["logged_file_pred"], out["best_pred"], atol=1e-6)
    assert not np.allclose(out["logged_pred"], out["last_pred"], atol=1e-6)
