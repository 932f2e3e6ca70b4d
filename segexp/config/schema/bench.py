"""Schema of segexp-bench's ``bench`` section (conf/bench.yaml, segexp/bench/)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class BenchMemoryConf:
    """Peak RSS of an in-memory (arrays, cache on) vs a streamed (PNG files, cache off) data
    set, each in its own subprocess."""

    enabled: bool = True
    num_images: int = 800
    # Image size of the memory test set (null = the dataset's image size).
    image_size: list[int] | None = field(default_factory=lambda: [256, 256])


@dataclass
class BenchPeakConf:
    """Machine peak: best of ``repeats`` float32 matmul (size x size) and 3x3 conv2d
    (conv_batch x image size x conv_channels -> conv_channels)."""

    matmul_size: int = 1024
    conv_batch: int = 16
    conv_channels: int = 32
    repeats: int = 10


@dataclass
class BenchConf:
    """segexp-bench: segexp's training path vs plain Keras fit vs a Python/SciPy augmentation
    loop. The defaults take 4-8 minutes on 2 CPU cores."""

    # Markdown table (also printed); by default in the run's output directory. null = print only.
    output: str | None = "${hydra:runtime.output_dir}/bench.md"
    # Each variant trains warmup_epochs + epochs epochs (segexp's run: trainer.epochs). Epoch
    # time is the median of the last `epochs`; images/s is the training part of every epoch after
    # the first, as segexp-train logs it (train_images_per_sec), for every variant. Two warm-up
    # epochs also cover the first sample-prediction panel (trainer.log_images_every=2), whose
    # predict function is traced once per run. warmup_epochs >= 1.
    epochs: int = 4
    warmup_epochs: int = 2
    # Each pair ((a) with (b), or (a) with (c)) runs this many times, alternating which goes
    # first; targets use the mean ratio, so a machine whose speed drifts favours neither.
    rounds: int = 2
    # Scenarios: "none" (segexp vs plain Keras fit) always runs; each other entry is an
    # augmentation option compared with the Python/SciPy loop (affine, elastic, flip).
    augmentations: list[str] = field(default_factory=lambda: ["none", "affine", "elastic"])
    # Model presets to run one after the other, with the command's other overrides (each
    # gets its own tables, then one augmentation table of all); [] = the run's model only.
    models: list[str] = field(default_factory=list)
    # false: skip the baseline fits (b) and (c); the Python loop's pipeline alone is still
    # measured beside each augmented (a), so the augmentation table stays complete.
    baselines: bool = True
    # The baselines (b), (c) validate every epoch on segexp's validation stream, as (a)
    # (segexp-train) always does; validation time is excluded from images/s.
    validation: bool = True
    # Also time (b)'s training step with the confusion-matrix metrics sharing one matrix per step
    # (segexp's metrics) against one matrix per metric, bench.rounds times, alternating.
    metric_matrices: bool = False
    memory: BenchMemoryConf = field(default_factory=BenchMemoryConf)
    peak: BenchPeakConf = field(default_factory=BenchPeakConf)
