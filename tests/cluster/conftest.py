"""Cluster tests: they need the engines tests/cluster/harness.sh starts, and skip without them."""

from __future__ import annotations

import os

import pytest

HARNESS_VARS = ("SEGEXP_CLUSTER_MLFLOW_URI", "SEGEXP_CLUSTER_DB_URI", "SLURM_CONF")


def pytest_collection_modifyitems(config, items):
    missing = [v for v in HARNESS_VARS if not os.environ.get(v)]
    if not missing:
        return
    skip = pytest.mark.skip(
        reason=f"cluster harness not running ({', '.join(missing)} unset); run "
        "tests/cluster/harness.sh as root (.ci/run does)"
    )
    for item in items:
        if "cluster" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def server_uri() -> str:
    """The harness's MLflow server (PostgreSQL backend, served artifacts)."""
    return os.environ["SEGEXP_CLUSTER_MLFLOW_URI"]
