"""Sweeps on the harness's SLURM into the PostgreSQL-backed MLflow server: nested FINISHED
children with every epoch and artifact; a failing and a cancelled job; resuming the cancelled."""

from __future__ import annotations

import os
import subprocess
import time

import pytest
from mlflow import MlflowClient

from tests._runs import ROOT, steps_of
from tests.cluster._cluster import artifact_paths, default_runs, runs_in, sweep_args, train_args

pytestmark = pytest.mark.cluster
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
SET_UP_ARTIFACTS = {"config.yaml", "overrides.yaml", "model_summary.txt", "preview.png"}


def _parent_and_children(client: MlflowClient, experiment: str):
    runs = runs_in(client, experiment)
    parents = [r for r in runs if r.data.tags.get("segexp.sweep_role") == "parent"]
    assert len(parents) == 1, [r.info.run_name for r in runs]
    parent = parents[0]
    children = [r for r in runs if r.info.run_id != parent.info.run_id]
    for child in children:
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
    return parent, children


def test_four_seed_sweep_gives_four_finished_nested_children(tmp_path, server_uri):
    experiment = "slurm-seeds"
    cmd = sweep_args(server_uri, experiment, tmp_path / "multirun", "seed=1,2,3,4")
    done = subprocess.run(cmd, cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    client = MlflowClient(server_uri)
    parent, children = _parent_and_children(client, experiment)
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["segexp.sweep.jobs"] == "4"
    assert parent.data.tags["segexp.sweep.finished"] == "4"
    assert sorted(int(c.data.params["seed"]) for c in children) == [1, 2, 3, 4]
    slurm_ids = {c.data.tags.get("segexp.slurm_job_id") for c in children}
    assert len(slurm_ids) == 4 and None not in slurm_ids, slurm_ids  # four SLURM array tasks
    for child in children:
        run_id = child.info.run_id
        assert child.info.status == "FINISHED", child.data.tags.get("error")
        for key in ("loss", "val_loss", "accuracy", "val_accuracy", "lr"):
            assert steps_of(client, run_id, key) == [1, 2], key
        files = artifact_paths(client, run_id)
        assert SET_UP_ARTIFACTS | {"learning_curves.png"} <= files, files
        assert any(f.startswith("images/predictions") for f in files), files
    assert default_runs(client) == []


def _wait_for_child(client, experiment, accept, proc, timeout=400):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read()[-3000:]
        exp = client.get_experiment_by_name(experiment)
        if exp is not None:
            for run in client.search_runs([exp.experiment_id]):
                if accept(run):
                    return run
        time.sleep(1)
    proc.kill()
    raise AssertionError(f"no matching run within {timeout} s")


def test_failed_and_cancelled_jobs_end_their_children_and_the_cancelled_one_resumes(
    tmp_path, server_uri
):
    experiment = "slurm-faults"
    epochs = 30
    # Job 0 trains for long enough to be cancelled; job 1 fails building its model (dropout 1.5).
    cmd = sweep_args(
        server_uri,
        experiment,
        tmp_path / "multirun",
        "model.dropout=0.0,1.5",
        f"trainer.epochs={epochs}",
        "trainer.log_images_every=10",
    )
    proc = subprocess.Popen(
        cmd, cwd=tmp_path, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    client = MlflowClient(server_uri)

    def training(run):
        return (
            run.data.params.get("model.dropout") == "0.0"
            and len(steps_of(client, run.info.run_id, "val_loss")) >= 2
        )

    run = _wait_for_child(client, experiment, training, proc)
    job = run.data.tags["segexp.slurm_job_id"]
    subprocess.run(["scancel", job], check=True)
    out, _ = proc.communicate(timeout=400)
    assert proc.returncode == 0, out[-4000:]

    parent, children = _parent_and_children(client, experiment)
    assert parent.info.status == "FINISHED"
    tags = parent.data.tags
    assert (tags["segexp.sweep.jobs"], tags["segexp.sweep.failed"]) == ("2", "1")
    assert (tags["segexp.sweep.killed"], tags["segexp.sweep.finished"]) == ("1", "0")
    by_job = {c.data.tags["segexp.sweep_job"]: c for c in children}
    killed, failed = by_job["0"], by_job["1"]
    assert killed.info.run_id == run.info.run_id
    assert killed.info.status == "KILLED"
    assert "SIGTERM" in killed.data.tags["segexp.status_reason"]
    assert failed.info.status == "FAILED"
    assert "dropout" in failed.data.tags["error"].lower() or "rate" in failed.data.tags["error"]
    logged = steps_of(client, killed.info.run_id, "val_loss")
    assert 2 <= len(logged) < epochs and logged == list(range(1, len(logged) + 1)), logged

    resume = train_args(server_uri, experiment, f"resume={killed.data.tags['output_dir']}")
    done = subprocess.run(
        resume[:3] + [resume[-1]],
        cwd=tmp_path,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    after = client.get_run(killed.info.run_id)
    assert after.info.status == "FINISHED", after.data.tags.get("error")
    assert steps_of(client, killed.info.run_id, "val_loss") == list(range(1, epochs + 1))
    assert len(runs_in(client, experiment)) == 3  # parent + two children: resumed in place
