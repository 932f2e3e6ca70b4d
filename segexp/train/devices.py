"""GPU options of the ``trainer`` group: mixed precision, XLA and ``tf.distribute`` strategies.

Trainer keys ``precision``, ``jit_compile``, ``distribute`` and ``scale_batch_size``: their
types and defaults are in segexp/config/schema/run.py (``TrainerConf``).

Mixed precision: the global Keras dtype policy is set *before* the model is built, so layers
compute in float16/bfloat16 with float32 variables; segexp heads always output float32 and
Keras losses compute in float32 (``Loss.dtype`` is ``floatx``), so the loss and metrics stay
float32. With ``mixed_float16`` Keras wraps the optimizer in a ``LossScaleOptimizer``.

Distribution: build and compile the model inside :func:`GpuOptions.scope`; ``mirrored``
replicates over the visible GPUs (one CPU replica when there is none), ``one_device`` places
everything on the first GPU (or the CPU). ``multi_worker`` is data-parallel training over
processes (``tf.distribute.MultiWorkerMirroredStrategy``): the cluster comes from ``TF_CONFIG``
or, in a SLURM step with several tasks (``srun --ntasks=N``), from SLURM
(``SlurmClusterResolver``, ports from ``SEGEXP_WORKER_PORT``, default 8888). Only the chief
(task ``chief``, else worker 0) tracks and checkpoints; :func:`worker_sandbox` gives the other
workers a private store and folder, since every worker must run the same steps.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from segexp.config import typed
from segexp.config.schema.run import TrainerConf
from segexp.errors import ConfigError

PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
STRATEGIES = ("none", "mirrored", "one_device", "multi_worker")


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
    if kind == "multi_worker":
        return _multi_worker_strategy(cluster_resolver())
    gpus = tf.config.list_logical_devices("GPU")
    if kind == "mirrored":
        devices = [d.name for d in gpus] or ["/cpu:0"]
        return tf.distribute.MirroredStrategy(devices=devices)
    return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")


def _multi_worker_strategy(resolver: Any) -> Any:
    """``MultiWorkerMirroredStrategy`` with a ``reduce`` that fits what Keras 3's ``fit`` asks.

    Keras reduces (1) the first distributed batch, an ``(x, y, weights)`` tuple, in one call,
    which the collective all-reduce refuses ("Attempt to convert a value (PerReplica ...) to a
    Tensor"), and (2) each scalar metric with ``axis=0`` ("Invalid reduction dimension 0 for
    input with 0 dimensions"). Here scalars are reduced over the replicas, leaf by leaf. A batch
    (a non-scalar value that is not a variable, with ``axis=None``) is only reduced by Keras to
    learn its shapes for building the model; it gets this worker's part, as an all-reduce fails
    on a partial last batch whose parts differ in size between workers.
    """
    import tensorflow as tf

    class Strategy(tf.distribute.MultiWorkerMirroredStrategy):
        def reduce(self, reduce_op: Any, value: Any, axis: Any = None) -> Any:
            parent = super()

            def one(v: Any) -> Any:
                local = self.experimental_local_results(v)[0]
                if axis is None and local.shape.rank and not isinstance(v, tf.Variable):
                    return local  # a batch; variables (metric states) are still all-reduced
                return parent.reduce(reduce_op, v, axis if local.shape.rank else None)

            return tf.nest.map_structure(one, value)

    return Strategy(cluster_resolver=resolver)


def cluster_resolver() -> Any:
    """The workers of ``trainer.distribute=multi_worker``: from ``TF_CONFIG``, else SLURM."""
    import tensorflow as tf

    resolvers = tf.distribute.cluster_resolver
    if os.environ.get("TF_CONFIG"):
        return resolvers.TFConfigClusterResolver()
    if os.environ.get("SLURM_STEP_ID") and int(os.environ.get("SLURM_STEP_NUM_TASKS", "1")) > 1:
        port = int(os.environ.get("SEGEXP_WORKER_PORT", "8888"))
        return resolvers.SlurmClusterResolver(port_base=port, gpus_per_node=_gpus_per_node())
    raise ConfigError(
        "trainer.distribute=multi_worker: no cluster found; set TF_CONFIG or start the workers "
        "with srun --ntasks=N (or choose trainer.distribute=none|mirrored)"
    )


def _gpus_per_node() -> int:
    """GPUs SLURM gave this task (the resolver would otherwise call nvidia-smi)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "")
    return len([d for d in visible.split(",") if d.strip()]) if visible else 0


def is_chief(strategy: Any) -> bool:
    """Whether this process tracks and checkpoints: always, except a multi-worker non-chief."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return True
    jobs = resolver.cluster_spec().as_dict()
    if resolver.task_type == "chief":
        return True
    return resolver.task_type == "worker" and int(resolver.task_id) == 0 and "chief" not in jobs


def worker_sandbox(cfg: Any, task: str) -> tuple[Any, Path]:
    """A non-chief worker's config and output folder: a private SQLite store and folder in a
    temporary directory (removed at exit), so it trains in lockstep without touching the run."""
    import atexit
    import shutil
    import tempfile

    from omegaconf import OmegaConf

    folder = Path(tempfile.mkdtemp(prefix=f"segexp-{task}-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    cfg = cfg.copy()
    OmegaConf.update(cfg, "tracking.uri", f"sqlite:///{folder}/worker.db", merge=False)
    return cfg, folder


@dataclass
class GpuOptions:
    """The resolved GPU options of one run."""

    precision: str
    distribute: str
    strategy: Any
    replicas: int
    batch_size: int  # global batch size (per-replica size * replicas when scaled)
    jit_compile: bool | str
    chief: bool = True  # False only for a multi-worker non-chief (no tracking, no checkpoints)
    task: str = "chief"  # e.g. worker-1 for a multi-worker non-chief

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
    ``trainer_cfg`` is the trainer section (or part of it: the rest takes the schema's defaults).

    ``trainer.batch_size`` is per replica when ``trainer.scale_batch_size`` is true (default),
    so the global batch is ``batch_size * replicas``.
    """
    trainer = typed(trainer_cfg, TrainerConf, "trainer")
    precision = set_precision(trainer.precision)
    distribute = check_distribute(trainer.distribute)
    strategy = make_strategy(distribute)
    replicas = int(strategy.num_replicas_in_sync)
    batch = int(trainer.batch_size)
    if batch < 1:
        raise ConfigError(f"trainer.batch_size={batch}: expected a positive integer")
    return GpuOptions(
        precision=precision,
        distribute=distribute,
        strategy=strategy,
        replicas=replicas,
        batch_size=global_batch_size(trainer, replicas),
        jit_compile=_jit(trainer.jit_compile),
        chief=is_chief(strategy),
        task=_task_name(strategy),
    )


def _task_name(strategy: Any) -> str:
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return "chief"
    return f"{resolver.task_type}-{resolver.task_id}"


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
    """``trainer.batch_size`` times ``replicas`` when ``trainer.scale_batch_size`` (default);
    ``trainer_cfg`` is a ``TrainerConf`` or a (partial) trainer section."""
    trainer = trainer_cfg
    if not isinstance(trainer, TrainerConf):
        trainer = typed(trainer_cfg, TrainerConf, "trainer")
    batch = int(trainer.batch_size)
    return batch * int(replicas) if trainer.scale_batch_size else batch
