"""Multirun tracking: one parent run per sweep, nested children, failures, joblib, Optuna.

Each test runs `python -m segexp.train -m ...` as a subprocess into a temporary SQLite store.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import TINY

FAST = [
    *TINY,
    "tracking.log_model=false",
    "trainer.checkpoint={best:false,last:false}",
    "trainer.evaluate_test=false",
]
NO_SUMMARY = "hydra.callbacks.mlflow_sweep.summary=false"


def multirun(tmp_path: Path, *overrides: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    cmd = [
        sys.executable,
        "-m",
        "segexp.train",
        "-m",
        f"hydra.sweep.dir={tmp_path}/sweep",
        f"tracking.uri=sqlite:///{tmp_path}/mlflow.db",
        "tracking.experiment=sweeptest",
        *FAST,
        *overrides,
    ]
    proc = subprocess.run(
        cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def sweep_runs(tmp_path: Path):
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    exp = client.get_experiment_by_name("sweeptest")
    runs = client.search_runs([exp.experiment_id], max_results=100)
    parents = [r for r in runs if r.data.tags.get("segexp.sweep_role") == "parent"]
    children = [r for r in runs if r.data.tags.get("segexp.sweep_role") != "parent"]
    assert len(parents) == 1, [r.info.run_name for r in runs]
    return client, parents[0], sorted(children, key=lambda r: r.info.run_name)


def test_basic_sweep_nests_children_and_survives_a_failing_job(tmp_path):
    # job 0 trains; job 1 fails in the data loader (before its run exists)
    proc = multirun(tmp_path, "dataset.mode=trimap,bogus", "+tracking.tags.api_token=s3cr3tv4l")
    client, parent, children = sweep_runs(tmp_path)
    pid = parent.info.run_id
    sweep_id = parent.data.tags["segexp.sweep_id"]
    assert [c.info.run_name for c in children] == ["mode=bogus", "mode=trimap"]
    for child in children:
        assert child.data.tags["mlflow.parentRunId"] == pid
        assert child.data.tags["segexp.sweep_id"] == sweep_id
    bogus, ok = children
    assert ok.info.status == "FINISHED"
    assert ok.data.tags["segexp.sweep_job"] == "0"
    assert "best_val_loss" in ok.data.metrics
    assert len(client.get_metric_history(ok.info.run_id, "val_loss")) == 2
    assert bogus.info.status == "FAILED"
    assert "dataset.mode" in bogus.data.tags["error"]
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["segexp.sweep.jobs"] == "2"
    assert parent.data.tags["segexp.sweep.failed"] == "1"
    assert "dataset.mode=trimap,bogus" in parent.data.tags["sweep_overrides"]
    logged = {a.path for a in client.list_artifacts(pid, "comparison")}
    assert {"comparison/comparison.md", "comparison/groups.json", "comparison/runs.json"} <= logged
    # the aggregates are tables; the parent's metrics are two headline values, not one per group
    assert parent.data.metrics == {
        "sweep_jobs_finished": 1.0,
        "sweep_best_val_loss": ok.data.metrics["best_val_loss"],
    }
    table = json.loads(
        Path(client.download_artifacts(pid, "comparison/runs.json", str(tmp_path))).read_text()
    )
    assert sorted(row[table["columns"].index("run_name")] for row in table["data"]) == [
        "mode=bogus",
        "mode=trimap",
    ]
    assert {"path": "comparison/runs.json", "type": "table"} in json.loads(
        parent.data.tags["mlflow.loggedArtifacts"]
    )
    state = yaml.safe_load((tmp_path / "sweep" / "segexp_sweep.json").read_text())
    assert state["parent_run_id"] == pid
    assert "sweep job 1" in proc.stderr
    # a secret given as an override is masked everywhere the sweep records it
    for run in (parent, *children):
        recorded = [run.info.run_name, *run.data.tags.values(), *run.data.params.values()]
        assert not any("s3cr3tv4l" in str(v) for v in recorded), run.info.run_name
    base = client.download_artifacts(pid, "sweep_base.yaml", str(tmp_path))
    assert "s3cr3tv4l" not in Path(base).read_text()


def test_joblib_parallel_jobs_on_one_sqlite_store_lose_nothing(tmp_path):
    multirun(tmp_path, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "seed=1,2", NO_SUMMARY)
    client, parent, children = sweep_runs(tmp_path)
    assert [c.info.run_name for c in children] == ["seed=1", "seed=2"]
    for child in children:
        assert child.info.status == "FINISHED", child.data.tags.get("error")
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        history = client.get_metric_history(child.info.run_id, "val_loss")
        assert [m.step for m in history] == [1, 2]
        assert child.data.params["seed"] in ("1", "2")
    assert parent.data.tags["segexp.launcher"] == "joblib"
    assert parent.data.tags["segexp.sweep.failed"] == "0"


def test_optuna_sweep_returns_the_objective(tmp_path):
    multirun(
        tmp_path,
        "hydra/sweeper=optuna",
        NO_SUMMARY,
        "hydra.sweeper.n_trials=2",
        "hydra.sweeper.n_jobs=1",
        "hydra.sweeper.direction=minimize",
        "hydra.sweeper.sampler.seed=0",
        "objective=best_val_loss",
        "optimizer.learning_rate=interval(0.0005,0.005)",
    )
    client, parent, children = sweep_runs(tmp_path)
    assert len(children) == 2
    assert all(c.data.tags["mlflow.parentRunId"] == parent.info.run_id for c in children)
    assert all(c.info.run_name.startswith("learning_rate=") for c in children)
    results = yaml.safe_load((tmp_path / "sweep" / "optimization_results.yaml").read_text())
    best = min(c.data.metrics["best_val_loss"] for c in children)
    assert math.isclose(results["best_value"], best, rel_tol=1e-6)
    assert parent.data.tags["segexp.sweeper"] == "optuna"
    logged = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert "optimization_results.yaml" in logged


@pytest.mark.slow
def test_submitit_local_launcher(tmp_path):
    multirun(
        tmp_path,
        "hydra/launcher=submitit_local",
        "hydra.launcher.timeout_min=10",
        "seed=1,2",
        timeout=600,
    )
    _, parent, children = sweep_runs(tmp_path)
    assert [c.info.run_name for c in children] == ["seed=1", "seed=2"]
    assert all(c.info.status == "FINISHED" for c in children)
    assert all(c.data.tags["mlflow.parentRunId"] == parent.info.run_id for c in children)


def test_jobs_find_their_sweep_from_the_state_file_without_the_environment(tmp_path, monkeypatch):
    """As on SLURM nodes that do not inherit the environment of the submitting process."""

    from hydra.types import RunMode
    from omegaconf import OmegaConf

    from segexp.track import context, sweep

    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    state = {
        "parent_run_id": "P",
        "sweep_id": "S",
        "fixed_keys": ["seed"],
        "tracking_uri": "sqlite:///x.db",
        "experiment_id": "1",
    }
    (tmp_path / context.STATE_FILE).write_text(json.dumps(state))
    try:
        cfg = OmegaConf.create(
            {
                "hydra": {
                    "mode": RunMode.MULTIRUN,
                    "sweep": {"dir": str(tmp_path)},
                    "job": {"num": 3},
                }
            }
        )
        sweep.MlflowSweepCallback().on_job_start(cfg)
        assert context.current().parent_run_id == "P"
        assert context.current().sweep_id == "S"
        assert context.parent_tags() == {
            "mlflow.parentRunId": "P",
            "segexp.sweep_id": "S",
            "segexp.sweep_job": "3",
        }
        assert context.current().varied(["seed=1", "model.batchnorm=true"]) == [
            "model.batchnorm=true"
        ]
        # a single run clears it again
        sweep.MlflowSweepCallback().on_job_start(OmegaConf.create({"hydra": {"mode": RunMode.RUN}}))
        assert context.current() is None
        assert context.parent_tags() == {}  # outside a Hydra multirun job nothing is nested
        # a sweep's own parent run nests under the sweep running in its process, if any
        context.enter(context.SweepContext("OUTER", "S0", "sqlite:///x.db", "1"))
        assert context.parent_tags() == {"mlflow.parentRunId": "OUTER", "segexp.sweep_id": "S0"}
    finally:
        context.leave()


def test_the_sweep_context_reaches_a_job_whole_through_its_file(tmp_path):
    from segexp.track.context import SweepContext

    sweep = SweepContext("P", "S", "http://127.0.0.1:5000", "7", ("seed", "model"), False)
    sweep.save(tmp_path / "sweep")
    job = SweepContext.load(tmp_path / "sweep", job_num=2)
    assert (job.parent_run_id, job.sweep_id, job.tracking_uri) == (
        "P",
        "S",
        "http://127.0.0.1:5000",
    )
    assert (job.experiment_id, job.fixed_keys, job.continue_on_failure) == (
        "7",
        ("seed", "model"),
        False,
    )
    assert job.job_num == 2
    assert SweepContext.load(tmp_path / "elsewhere") is None


def test_a_cancelled_job_goes_on_only_on_slurm_with_continue_on_failure(monkeypatch):
    from segexp.track.context import SweepContext

    job = SweepContext("P", "S", "sqlite:///x.db", "1", job_num=0)
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    assert not job.cancelled_job_goes_on()  # a local launcher reports the interrupt
    monkeypatch.setenv("SLURM_JOB_ID", "41")
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "40")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "1")
    assert job.cancelled_job_goes_on()
    assert job.job_tags()["segexp.slurm_job_id"] == "40_1"
    stop = SweepContext("P", "S", "sqlite:///x.db", "1", continue_on_failure=False)
    assert not stop.cancelled_job_goes_on()


def test_ui_url_opens_the_model_training_view():
    from segexp.track.sweep_summary import ui_url

    assert ui_url("http://127.0.0.1:5005/", "7") == (
        "http://127.0.0.1:5005/#/experiments/7?workflowType=machine_learning"
    )
    assert ui_url("sqlite:///mlflow.db", "1") == (
        "http://127.0.0.1:5000/#/experiments/1?workflowType=machine_learning"
    )
