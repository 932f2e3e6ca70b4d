"""Shared fixtures: compose configs with Hydra's compose API; tiny training settings."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")

# Settings that make a real training run take seconds on a 2-core CPU.
TINY = [
    "dataset.image_size=[32,32]",
    "dataset.num_images=24",
    "model.depth=2",
    "model.filters=4",
    "trainer.epochs=2",
    "trainer.batch_size=8",
    "trainer.verbose=0",
    "trainer.num_sample_images=2",
]


@pytest.fixture(scope="session", autouse=True)
def _work_in_a_temporary_directory(tmp_path_factory):
    """Runs started in-process write their outputs (checkpoints, previews) to the working
    directory; keep them out of the repository."""
    previous = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("cwd"))
    yield
    os.chdir(previous)


@pytest.fixture(autouse=True)
def _op_determinism_stays_in_its_test():
    """A deterministic run in-process enables TensorFlow's op determinism for the whole
    process (and Keras then silently turns XLA off); later tests get it back off."""
    yield
    import sys

    if "tensorflow" in sys.modules:
        from tensorflow.python.framework import config as tf_config

        if tf_config.is_op_determinism_enabled():
            tf_config.disable_op_determinism()


@pytest.fixture
def compose():
    """``compose(overrides) -> DictConfig`` for conf/train.yaml."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from segexp.config import CONF_DIR

    def _compose(overrides: list[str] | None = None, config_name: str = "train"):
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            return hydra_compose(config_name=config_name, overrides=overrides or [])

    return _compose


@pytest.fixture
def store(tmp_path):
    """A fresh SQLite tracking URI under the test's temporary directory."""
    return f"sqlite:///{tmp_path}/mlflow.db"
