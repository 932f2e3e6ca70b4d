"""Schema of the ``trainer`` and ``tracking`` groups, the top-level keys and the preview section."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Counts typed Any are integers checked by segexp.config.check_integers, whose one-line error
# ("trainer.epochs='abc': expected an integer >= 1") replaces Hydra's conversion message.


@dataclass
class EarlyStoppingConf:
    """keras.callbacks.EarlyStopping (segexp/callbacks.py)."""

    # Stop when monitor has not improved by min_delta for patience epochs.
    enabled: bool = False
    monitor: str = "val_loss"
    # auto = min for losses, max for other metrics.
    mode: str = "auto"
    patience: int = 5
    min_delta: float = 0.0
    # auto: follows evaluate_weights; true needs evaluate_weights=best.
    restore_best_weights: Any = "auto"
    start_from_epoch: int = 0


@dataclass
class CheckpointConf:
    """Checkpoints in <output dir>/checkpoints/: best.keras (whenever the monitor improves) and
    last.keras (the final model) with format keras, or *.weights.h5 with format weights."""

    # Keep best.keras / last.keras; monitor: what best means.
    best: bool = True
    last: bool = True
    monitor: str = "val_loss"
    # auto = min for losses, max for other metrics.
    mode: str = "auto"
    # keras | weights.
    format: str = "keras"


@dataclass
class TrainerConf:
    """Training loop (keras Model.fit) settings."""

    # Epochs and per-replica batch size (integers >= 1).
    epochs: Any = 20
    batch_size: Any = 8
    # Batches per epoch; null = one pass over the training split.
    steps_per_epoch: Any = None
    # Keras progress bar: 1 bar, 2 one line per epoch, 0 silent.
    verbose: int = 1
    # Seed Python, NumPy and TensorFlow and enable TensorFlow op determinism (slower).
    deterministic: bool = False
    # XLA: true, false or auto (Keras decides).
    jit_compile: Any = "auto"
    # GPU options (train/devices.py). Mixed precision: float32 | mixed_float16 | mixed_bfloat16
    # (float32 head, loss and variables).
    precision: str = "float32"
    # none | mirrored (all visible GPUs) | one_device | multi_worker (TF_CONFIG or SLURM; see
    # README "On a cluster").
    distribute: str = "none"
    # batch_size is per replica: the global batch is batch_size * replicas (mirrored).
    scale_batch_size: bool = True
    # Sample-prediction panels are logged every N epochs (and at the last epoch).
    log_images_every: Any = 2
    num_sample_images: Any = 4
    # Final evaluation on the test split after training.
    evaluate_test: bool = True
    # Weights behind test_* metrics, the logged model and its registered version: best (the epoch
    # where checkpoint.monitor was best, read back from the best checkpoint) or last.
    evaluate_weights: str = "best"
    # Callbacks (segexp/callbacks.py). mode auto = min for losses, max for other metrics.
    early_stopping: EarlyStoppingConf = field(default_factory=EarlyStoppingConf)
    checkpoint: CheckpointConf = field(default_factory=CheckpointConf)
    # Stop at a NaN loss (keras.callbacks.TerminateOnNaN).
    terminate_on_nan: bool = True


@dataclass
class TrackingConf:
    """MLflow tracking. The default store is a SQLite file in the working directory."""

    # Tracking store (sqlite:///file.db, http://host:port) and experiment name.
    uri: str = "sqlite:///mlflow.db"
    experiment: str = "segexp"
    # Run name; null = the job's overrides (e.g. "model.batchnorm=true,seed=2"), or
    # "<model>-<dataset>" when there are none.
    run_name: str | None = None
    # Log the trained model (Keras flavor) at the end of the run.
    log_model: bool = True
    # Register the logged model under this name in the Model Registry (null = do not register).
    registered_model_name: str | None = None
    # Extra tags, e.g. {owner: me}.
    tags: dict[str, Any] = field(default_factory=dict)


@dataclass
class AnalysisConf:
    """Overfitting analysis of the learning curves (segexp/analysis.py).

    The onset is the first epoch after the best one that starts ``patience`` epochs of val loss
    above min + max(tolerance, relative_tolerance * min) while the training loss keeps falling.
    ``segexp-compare`` calls best-epoch and overfitting checks inconclusive on a run that trained
    fewer than ``patience`` epochs after its best.
    """

    # Absolute and relative val-loss tolerance above the minimum, epochs of patience.
    tolerance: float = 0.0
    relative_tolerance: float = 0.02
    patience: int = 3
    # How much val mean IoU / Dice must improve after the best epoch to flag
    # stopped_while_improving.
    quality_tolerance: float = 0.0


@dataclass
class TopConf:
    """The top-level keys of a run (conf/train.yaml); the groups sit beside them."""

    # Seed of the data split, the synthetic data, the weights and augmentation.
    seed: Any = 42
    # Show TensorFlow's start-up and C++ log lines (oneDNN, CUDA, CPU features); hidden by default.
    verbose: bool = False
    # Resume an interrupted run: an MLflow run id or a previous output directory.
    resume: str | None = None
    # Summary metric a sweep optimises (returned to Hydra's sweeper, e.g. Optuna).
    objective: str = "best_val_loss"
    analysis: AnalysisConf = field(default_factory=AnalysisConf)


@dataclass
class PreviewConf:
    """segexp-preview's section: a grid of training samples."""

    # Number of samples in the grid.
    n: int = 8
    # Split to show: train | val | test (augmentation is applied to train only).
    split: str = "train"
    # Output PNG; null = preview.png in the output folder.
    out: str | None = None
    # Apply the configured augmentation (augmentation=<name>).
    augment: bool = True
    # Seed for the augmentation; null = the run seed.
    seed: int | None = None
    # Show the Python traceback on data/config errors.
    traceback: bool = False
