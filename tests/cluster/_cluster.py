"""Helpers of the cluster tests: segexp-train command lines and MLflow look-ups by experiment."""

from __future__ import annotations

import sys
from pathlib import Path

from mlflow import MlflowClient

from tests.conftest import TINY

# Tiny jobs: no model logging, no test evaluation (the counts are about epochs and artifacts).
JOB = [*TINY, "tracking.log_model=false", "trainer.evaluate_test=false"]


def train_args(uri: str, experiment: str, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "segexp.train",
        *JOB,
        f"tracking.uri={uri}",
        f"tracking.experiment={experiment}",
        *extra,
    ]


def sweep_args(uri: str, experiment: str, sweep_dir: Path, *extra: str) -> list[str]:
    """A multirun on the harness's SLURM (the sacct stand-in answers for job states)."""
    return [
        *train_args(uri, experiment)[:3],
        "-m",
        *train_args(uri, experiment)[3:],
        "hydra/launcher=submitit_slurm",
        "hydra.launcher.timeout_min=15",
        f"hydra.sweep.dir={sweep_dir}",
        *extra,
    ]


def runs_in(client: MlflowClient, experiment: str) -> list:
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None, f"experiment {experiment!r} missing"
    return client.search_runs([exp.experiment_id], max_results=1000)


def default_runs(client: MlflowClient) -> list:
    """Runs in MLflow's Default experiment (where a lost experiment race puts them)."""
    return client.search_runs(["0"], max_results=1000)


def artifact_paths(client: MlflowClient, run_id: str, folder: str | None = None) -> set[str]:
    """Every artifact file of the run (recursively)."""
    found: set[str] = set()
    for item in client.list_artifacts(run_id, folder):
        if item.is_dir:
            found |= artifact_paths(client, run_id, item.path)
        else:
            found.add(item.path)
    return found


def record_figure(line: str) -> None:
    """Append a measured figure to the harness's figures file (printed when the harness ends)."""
    import os

    folder = os.environ.get("SEGEXP_CLUSTER_DIR")
    if folder:
        with open(Path(folder) / "figures.txt", "a") as fh:
            fh.write(line.rstrip() + "\n")
    print(line)
