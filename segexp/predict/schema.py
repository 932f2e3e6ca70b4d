"""The keys of ``segexp-predict``, their types and defaults (a structured config).

The structured config that ``conf/predict.yaml`` composes (stored in Hydra's ConfigStore as
``predict_schema``)."""

from __future__ import annotations

from dataclasses import dataclass

from hydra.core.config_store import ConfigStore

SCHEMA_NAME = "predict_schema"
REQUIRED = ("model", "input", "output")


@dataclass
class PredictConfig:
    """Keys of ``segexp-predict`` (``key=value`` overrides on the command line)."""

    model: str = "???"  # runs:/ID/model | models:/name/version | local dir | .keras file
    input: str = "???"  # image file, directory or glob
    output: str = "???"  # directory for the masks
    overlay: bool = False  # also write <name>_overlay.png (image with coloured classes)
    palette: bool = False  # masks as palette PNGs (a colour per class) instead of raw ids
    save_probs: bool = False  # also write <name>_probs.npy, float32 [H, W, num_classes]
    tta: bool = False  # average over flips (identity, horizontal, vertical, both)
    tile_overlap: float = 0.25  # < 1: fraction of the tile; >= 1: pixels
    blend: str = "gaussian"  # gaussian | mean
    threshold: float = 0.5  # one-channel sigmoid head: foreground where p > threshold
    batch_size: int = 8  # tiles per forward pass
    tracking_uri: str | None = None  # for runs:/ and models:/ (null: MLflow's default)
    mode: str = "auto"  # auto (as trained) | resize (whole image) | tile (sliding window)
    masks: str | None = None  # true masks (dir, file or glob, matched by stem): scores them
    metrics: list[str] | None = None  # with masks=: challenge metrics (null: the run's)
    verbose: bool = False  # show TensorFlow's start-up lines


ConfigStore.instance().store(name=SCHEMA_NAME, node=PredictConfig)
