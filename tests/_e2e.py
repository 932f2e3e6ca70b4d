"""Helpers for the in-process end-to-end tests: one tiny `segexp.train.lifecycle.train` run."""

from __future__ import annotations

import contextlib
import json
import math
from pathlib import Path

from mlflow import MlflowClient

from tests._runs import history, only_run
from tests.conftest import TINY

# TINY without the synthetic-only dataset keys, one epoch, no model logging.
ONE_EPOCH = [
    *(o for o in TINY if not o.startswith(("dataset.", "trainer.epochs="))),
    "trainer.epochs=1",
    "tracking.log_model=false",
]


def train_run(compose, workdir: Path, uri: str, experiment: str, overrides: list[str]):
    """Compose ``overrides`` (plus the store and experiment), train in-process with
    ``workdir`` as the output directory and return ``(client, run)`` of the single run."""
    from segexp.train.lifecycle import train

    cfg = compose([*overrides, f"tracking.uri={uri}", f"tracking.experiment={experiment}"])
    workdir.mkdir(parents=True, exist_ok=True)
    with contextlib.chdir(workdir):  # the job writes checkpoints/preview into the cwd
        train(cfg)
    return only_run(uri, experiment)


def assert_finite_epoch(
    client: MlflowClient, run, keys=("loss", "val_loss", "lr"), epochs: int = 1
) -> None:
    """The run FINISHED and logged each key once per epoch with finite values."""
    assert run.info.status == "FINISHED", run.data.tags.get("error")
    for key in keys:
        values = history(client, run.info.run_id, key)
        assert len(values) == epochs and all(math.isfinite(v) for v in values), (key, values)


def dataset_input(run) -> tuple[str, str, dict]:
    """(name, digest, source dict) of the run's single MLflow dataset input."""
    inputs = run.inputs.dataset_inputs
    assert len(inputs) == 1, inputs
    ds = inputs[0].dataset
    assert {t.key: t.value for t in inputs[0].tags}.get("mlflow.data.context") == "training"
    return ds.name, ds.digest, json.loads(ds.source)
