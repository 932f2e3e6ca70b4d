"""GPU options of the ``trainer`` group: mixed precision, XLA and ``tf.distribute`` strategies.

Trainer keys:

```yaml
precision: float32       # float32 | mixed_float16 | mixed_bfloat16
jit_compile: auto        # true | false | auto (XLA; passed to model.compile)
distribute: none         # none | mirrored | one_device
scale_batch_size: true   # batch_size is per replica: global batch = batch_size * replicas
```

Mixed precision: the global Keras dtype policy is set *before* the model is built, so layers
compute in float16/bfloat16 with float32 variables; segexp heads always output float32 and
Keras losses compute in float32 (``Loss.dtype`` is ``floatx``), so the loss and metrics stay
float32. With ``mixed_float16`` Keras wraps the optimizer in a ``LossScaleOptimizer``.

Distribution: build and compile the model inside :func:`GpuOptions.scope`; ``mirrored``
replicates over the visible GPUs (one CPU replica when there is none), ``one_device`` places
everything on the first GPU (or the CPU).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from segexp.errors import ConfigError

PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
STRATEGIES = ("none", "mirrored", "one_device")


def _get(cfg: Any, key: str, default: Any) -> Any:
    if cfg is None:
        return default
    value = cfg.get(key, default) if isinstance(cfg, Mapping) or hasattr(cfg, "get") else default
    return default if value is None else value


def check_precision(name: Any) -> str:
    """Validate ``trainer.precision``; returns the policy name."""
    policy = str(name).lower()
    if policy not in PRECISIONS:
        raise ConfigError(f"trainer.precision={name!r}: expected one of {list(PRECISIONS)}")
    return policy


def check_distribute(name: Any) -> str:
    """Validate ``trainer.distribute``; returns the strategy name."""
    strategy = "none" if name is None or name is False else str(name).lower()
    if strategy not in STRATEGIES:
        raise ConfigError(f"trainer.distribute={name!r}: expected one of {list(STRATEGIES)}")
    return strategy


def set_precision(name: Any) -> str:
    """Set the global Keras dtype policy (call before building the model); returns its name."""
    import keras

    policy = check_precision(name)
    keras.mixed_precision.set_global_policy(policy)
    return policy


def make_strategy(name: Any) -> Any:
    """A ``tf.distribute.Strategy`` for ``trainer.distribute`` (``none``: the default one)."""
    import tensorflow as tf

    kind = check_distribute(name)
    if kind == "none":
        return tf.distribute.get_strategy()
    gpus = tf.config.list_logical_devices("GPU")
    if kind == "mirrored":
        devices = [d.name for d in gpus] or ["/cpu:0"]
        return tf.distribute.MirroredStrategy(devices=devices)
    return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")


@dataclass
class GpuOptions:
    """The resolved GPU options of one run."""

    precision: str
    distribute: str
    strategy: Any
    replicas: int
    batch_size: int  # global batch size (per-replica size * replicas when scaled)
    jit_compile: bool | str

    def scope(self) -> contextlib.AbstractContextManager:
        """Context for building and compiling the model (the strategy's scope)."""
        if self.distribute == "none":
            return contextlib.nullcontext()
        return self.strategy.scope()


def _jit(value: Any) -> bool | str:
    if isinstance(value, bool):
        return value
    text = str(value).lower()
    if text in ("true", "false"):
        return text == "true"
    if text == "auto":
        return "auto"
    raise ConfigError(f"trainer.jit_compile={value!r}: expected true, false or auto")


def setup(trainer_cfg: Any) -> GpuOptions:
    """Apply ``trainer.precision`` and create the strategy; call before building the model.

    ``trainer.batch_size`` is per replica when ``trainer.scale_batch_size`` is true (default),
    so the global batch is ``batch_size * replicas``.
    """
    precision = set_precision(_get(trainer_cfg, "precision", "float32"))
    distribute = check_distribute(_get(trainer_cfg, "distribute", "none"))
    strategy = make_strategy(distribute)
    replicas = int(strategy.num_replicas_in_sync)
    batch = int(_get(trainer_cfg, "batch_size", 1))
    if batch < 1:
        raise ConfigError(f"trainer.batch_size={batch}: expected a positive integer")
    if bool(_get(trainer_cfg, "scale_batch_size", True)):
        batch *= replicas
    return GpuOptions(
        precision=precision,
        distribute=distribute,
        strategy=strategy,
        replicas=replicas,
        batch_size=batch,
        jit_compile=_jit(_get(trainer_cfg, "jit_compile", "auto")),
    )


@contextlib.contextmanager
def precision_policy(name: str) -> Iterator[str]:
    """Temporarily set the global dtype policy (restores the previous one)."""
    import keras

    previous = keras.mixed_precision.global_policy().name
    try:
        yield set_precision(name)
    finally:
        keras.mixed_precision.set_global_policy(previous)


def global_batch_size(trainer_cfg: Any, replicas: int) -> int:
    """``trainer.batch_size`` times ``replicas`` when ``trainer.scale_batch_size`` (default)."""
    batch = int(_get(trainer_cfg, "batch_size", 1))
    return batch * int(replicas) if bool(_get(trainer_cfg, "scale_batch_size", True)) else batch
