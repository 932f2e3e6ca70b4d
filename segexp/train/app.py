"""`segexp-train`: the Hydra application. Heavy imports happen only once a job starts."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from segexp.config import CONF_DIR
from segexp.errors import SegexpError


def _is_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def _output_dir() -> Path | None:
    from hydra.core.hydra_config import HydraConfig

    return Path(HydraConfig.get().runtime.output_dir) if HydraConfig.initialized() else None


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="train")
def _app(cfg: DictConfig) -> float | None:
    """Train one configuration; returns the sweep objective (see ``objective``)."""
    from segexp.cli import check_paths, import_tensorflow, remove_unused_output

    try:
        if not cfg.get("resume"):
            check_paths(cfg.dataset)  # the job checks counts and the store first thing
        import_tensorflow(bool(cfg.verbose))
        from segexp.train.lifecycle import train

        return train(cfg)
    except SegexpError as err:
        if _is_multirun() or os.environ.get("SEGEXP_TRACEBACK"):
            raise
        if (folder := _output_dir()) is not None:
            remove_unused_output(folder)
        print(f"segexp-train: error: {err}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        if _is_multirun():
            raise
        # The run is already marked KILLED with its checkpoint; the resume command was printed.
        print("segexp-train: interrupted", file=sys.stderr)
        sys.exit(130)


def main() -> float | None:
    """Console entry point: key, value and store checks without TensorFlow, then the app."""
    from segexp.cli import preflight

    try:
        sys.argv[1:] = preflight(sys.argv[1:])
    except SegexpError as err:
        if os.environ.get("SEGEXP_TRACEBACK"):
            raise
        print(f"segexp-train: error: {err}", file=sys.stderr)
        sys.exit(2)
    return _app()
