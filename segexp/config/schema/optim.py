"""Schema of the ``optimizer`` group and of ``optimizer.schedule``: one dataclass per option."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING


@dataclass
class OptimizerConf:
    """Keys every optimizer takes."""

    # adam | adamw | sgd | rmsprop (segexp.optim.build_optimizer).
    name: str = MISSING
    # The Keras optimizer class, built with the option's keys and the learning-rate schedule;
    # another class (keras.optimizers.Lion) takes the keys it shares with the option, and
    # `+optimizer.<key>` adds one of its own.
    _target_: str = MISSING
    # Initial (peak, with a warm-up) learning rate.
    learning_rate: float = 1.0e-3
    # Decoupled weight decay (Keras 3), e.g. 1.0e-4; null = none (AdamW: Keras' 0.004).
    weight_decay: float | None = None
    # Variable-name substrings excluded from weight decay, e.g. [bias, gamma, beta].
    exclude_from_weight_decay: list[str] | None = None
    # Per-variable gradient norm clipping.
    clipnorm: float | None = None
    # Global gradient norm clipping (at most one clip option).
    global_clipnorm: float | None = None
    clipvalue: float | None = None
    # Learning-rate schedule: {name: constant | cosine | step | polynomial | plateau, ...}; its
    # keys depend on the name (the schedule dataclasses below) and are checked when built.
    schedule: dict[str, Any] = field(default_factory=lambda: {"name": "constant"})


@dataclass
class AdamConf(OptimizerConf):
    """keras.optimizers.Adam (Keras defaults)."""

    name: str = "adam"
    _target_: str = "keras.optimizers.Adam"
    # Keras' Adam moments and epsilon.
    beta_1: float = 0.9
    beta_2: float = 0.999
    epsilon: float = 1.0e-7
    amsgrad: bool = False


@dataclass
class AdamWConf(AdamConf):
    """keras.optimizers.AdamW: Adam with decoupled weight decay."""

    name: str = "adamw"
    _target_: str = "keras.optimizers.AdamW"


@dataclass
class SGDConf(OptimizerConf):
    """keras.optimizers.SGD with momentum."""

    name: str = "sgd"
    _target_: str = "keras.optimizers.SGD"
    # 0 <= momentum < 1; the U-Net paper uses 0.99.
    momentum: float = 0.9
    # Nesterov momentum.
    nesterov: bool = False


@dataclass
class RMSpropConf(OptimizerConf):
    """keras.optimizers.RMSprop."""

    name: str = "rmsprop"
    _target_: str = "keras.optimizers.RMSprop"
    # Keras' RMSprop discount factor, momentum, epsilon and centering.
    rho: float = 0.9
    momentum: float = 0.0
    epsilon: float = 1.0e-7
    centered: bool = False


# Option name -> schema.
OPTIMIZERS: dict[str, type[OptimizerConf]] = {
    "adam": AdamConf,
    "adamw": AdamWConf,
    "sgd": SGDConf,
    "rmsprop": RMSpropConf,
}


@dataclass
class ConstantSchedule:
    """The optimizer's learning_rate throughout."""

    name: str = "constant"


@dataclass
class CosineSchedule:
    """Linear warm-up, then cosine decay over the remaining epochs."""

    name: str = "cosine"
    # Linear warm-up from warmup_start_lr to learning_rate (fractional epochs count steps).
    warmup_epochs: float = 0.0
    warmup_start_lr: float = 0.0
    # Final learning rate of the cosine decay.
    min_lr: float = 0.0


@dataclass
class StepSchedule:
    """learning_rate * gamma ** k after the k-th milestone."""

    name: str = "step"
    # Every N epochs, or at the listed epochs (one of the two).
    step_epochs: int | None = None
    milestones: list[int] | None = None
    gamma: float = 0.1


@dataclass
class PolynomialSchedule:
    """Polynomial decay to end_lr (the U-Net "poly" schedule: power 0.9)."""

    name: str = "polynomial"
    # Final learning rate, decay exponent, and whether to restart.
    end_lr: float = 0.0
    power: float = 0.9
    cycle: bool = False


@dataclass
class PlateauSchedule:
    """Constant here; keras.callbacks.ReduceLROnPlateau from segexp.callbacks."""

    name: str = "plateau"
    # Metric ReduceLROnPlateau watches.
    monitor: str = "val_loss"
    # auto = min for losses, max for other metrics.
    mode: str = "auto"
    # ReduceLROnPlateau's reduction factor, patience (epochs), min_delta, cooldown, min_lr.
    factor: float = 0.1
    patience: int = 5
    min_delta: float = 1.0e-4
    cooldown: int = 0
    min_lr: float = 0.0


SCHEDULES: dict[str, type] = {
    s.name: s
    for s in (ConstantSchedule, CosineSchedule, StepSchedule, PolynomialSchedule, PlateauSchedule)
}
