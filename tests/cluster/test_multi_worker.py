"""``trainer.distribute=multi_worker``: two CPU workers on localhost (TF_CONFIG) train like one
worker with the same global batch and seed, and only the chief tracks and checkpoints."""

from __future__ import annotations

import json
import os
import socket
import subprocess

import pytest
from mlflow import MlflowClient

from tests._runs import ROOT, history, steps_of, wait_for_epoch
from tests.cluster._cluster import runs_in, train_args

pytestmark = pytest.mark.cluster
# Same global batch (8), the same seed and data order: the loss may differ only by the order of
# floating-point sums (all-reduce vs one batch), measured about 1e-7, far below this tolerance.
TOLERANCE = 1e-4
# Confusion-matrix metrics, pooled over the workers: equal unless a pixel's prediction sits so
# close to the threshold that the 1e-7 weight difference flips it (1e-3 = 5 of 5120 val pixels).
PIXEL_TOLERANCE = 1e-3
COMMON = ["seed=7", "trainer.epochs=2", "trainer.log_images_every=1"]


def _ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _run(cmd, cwd, env, timeout=600):
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def _worker(index: int) -> dict:
    return {"type": "worker", "index": index}


def _start_workers(cmd, cwd, env, cluster) -> list[subprocess.Popen]:
    """One process per worker of ``cluster``, each told its index through TF_CONFIG."""
    return [
        subprocess.Popen(
            cmd,
            cwd=cwd,
            env={**env, "TF_CONFIG": json.dumps({"cluster": cluster, "task": _worker(i)})},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(len(cluster["worker"]))
    ]


def test_two_workers_match_one_worker_and_only_the_chief_tracks(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("TF_CONFIG", None)
    single = train_args(
        uri, "single", *COMMON, "trainer.batch_size=8", f"hydra.run.dir={tmp_path}/one"
    )
    _run(single, tmp_path, env)

    cluster = {"worker": [f"localhost:{p}" for p in _ports(2)]}
    out = tmp_path / "two"
    cmd = train_args(
        uri,
        "two-workers",
        *COMMON,
        "trainer.distribute=multi_worker",
        "trainer.batch_size=4",  # per replica: 2 workers x 4 = global batch 8
        f"hydra.run.dir={out}",
    )
    workers = _start_workers(cmd, tmp_path, env, cluster)
    logs = [w.communicate(timeout=600)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], "\n----\n".join(x[-3000:] for x in logs)

    client = MlflowClient(uri)
    (one,) = runs_in(client, "single")
    runs = runs_in(client, "two-workers")
    assert len(runs) == 1, [r.info.run_id for r in runs]  # the non-chief logged nowhere shared
    two = runs[0]
    assert two.info.status == "FINISHED"
    assert two.data.params["trainer.distribute"] == "multi_worker"
    for key in ("loss", "val_loss"):
        a, b = history(client, one.info.run_id, key), history(client, two.info.run_id, key)
        assert len(a) == len(b) == 2
        assert abs(a[0] - b[0]) <= TOLERANCE * max(1.0, abs(a[0])), (key, a, b)
    for key in ("accuracy", "val_accuracy", "val_mean_iou", "val_dice"):
        a, b = history(client, one.info.run_id, key), history(client, two.info.run_id, key)
        assert abs(a[0] - b[0]) <= PIXEL_TOLERANCE, (key, a, b)
    # One checkpoint folder (the chief's), holding both epochs.
    state = json.loads((out / "checkpoints" / "resume" / "state.json").read_text())
    assert state["epoch"] == 2
    assert len(list(tmp_path.rglob("state.json"))) == 2  # ./one and ./two; none from worker 1


def test_two_workers_killed_mid_run_resume_into_the_same_run(tmp_path):
    uri, epochs, out = f"sqlite:///{tmp_path}/mlflow.db", 6, tmp_path / "two"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    cluster = {"worker": [f"localhost:{p}" for p in _ports(2)]}

    def start(*extra, resume=False):
        cmd = train_args(uri, "two-workers", *extra)
        if resume:  # the saved config only: nothing that would change it
            cmd = [*cmd[:3], *extra]
        return _start_workers(cmd, tmp_path, env, cluster)

    first = start(
        "seed=7",
        f"trainer.epochs={epochs}",
        "trainer.distribute=multi_worker",
        "trainer.batch_size=4",
        f"hydra.run.dir={out}",
    )
    wait_for_epoch(first[0], out, 2, timeout=400)
    for worker in first:  # a crash of both (the nodes lost): no time to log anything more
        worker.kill()
        worker.communicate(timeout=60)
    client = MlflowClient(uri)
    (run,) = runs_in(client, "two-workers")
    assert run.info.status == "RUNNING"
    second = start(f"resume={out}", f"hydra.run.dir={out}", resume=True)
    logs = [w.communicate(timeout=600)[0] for w in second]
    assert [w.returncode for w in second] == [0, 0], "\n----\n".join(x[-3000:] for x in logs)
    (after,) = runs_in(client, "two-workers")
    assert after.info.run_id == run.info.run_id and after.info.status == "FINISHED"
    assert int(after.data.tags["segexp.resumed_from_epoch"]) >= 2
    for key in ("loss", "val_loss"):
        assert steps_of(client, run.info.run_id, key) == list(range(1, epochs + 1)), key
