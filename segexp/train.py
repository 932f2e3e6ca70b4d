"""`segexp-train`: the Hydra application. Heavy imports happen only once a job starts."""

from __future__ import annotations

import os
import sys

import hydra
from omegaconf import DictConfig

from segexp.config import CONF_DIR
from segexp.errors import SegexpError


def _is_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Train one configuration; returns the sweep objective (see ``objective``)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from segexp.runner import train

    try:
        return train(cfg)
    except SegexpError as err:
        if _is_multirun() or os.environ.get("SEGEXP_TRACEBACK"):
            raise
        print(f"segexp-train: error: {err}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        if _is_multirun():
            raise
        # The run is already marked KILLED with its checkpoint; the resume command was printed.
        print("segexp-train: interrupted", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
