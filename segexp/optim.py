"""Optimizers and learning-rate schedules (the ``optimizer`` config group).

Options (``name``): ``adam``, ``sgd``, ``adamw``, ``rmsprop``; ``_target_`` is the Keras class
(``keras.optimizers.Adam``, ...), replaceable by any other that takes ``learning_rate``.
Common keys: ``learning_rate``, ``weight_decay`` (decoupled, Keras 3 style),
``exclude_from_weight_decay`` (variable-name substrings), ``clipnorm``, ``global_clipnorm``,
``clipvalue``, ``schedule``.

``schedule: {name: constant|cosine|step|polynomial|plateau, ...}`` (per optimizer step; epochs are
converted with ``steps_per_epoch``):

- ``constant``: no keys.
- ``cosine``: ``warmup_epochs`` (linear warm-up from ``warmup_start_lr`` to ``learning_rate``),
  ``min_lr`` (final value); cosine decay over the remaining epochs.
- ``step``: ``step_epochs`` (every N epochs) or ``milestones`` (list of epochs), ``gamma``.
- ``polynomial``: ``end_lr``, ``power`` (U-Net "poly": 0.9), ``cycle``.
- ``plateau``: ``monitor``, ``mode``, ``factor``, ``patience``, ``min_delta``, ``cooldown``,
  ``min_lr``; constant learning rate here, ``keras.callbacks.ReduceLROnPlateau`` from
  ``segexp.callbacks.build_callbacks``.
"""

from __future__ import annotations

from dataclasses import asdict, fields
from typing import Any

import keras

from segexp.config import closest, to_dict, typed
from segexp.config.schema import option_name
from segexp.config.schema.optim import OPTIMIZERS, SCHEDULES, OptimizerConf
from segexp.config.targets import keyword_names, target_callable
from segexp.errors import ConfigError


def _to_dict(cfg: Any) -> dict[str, Any]:
    return to_dict(cfg, "optimizer")


def _positive(value: Any, where: str, *, allow_zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{where}={value!r}: expected a number")
    if value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(f"{where}={value!r}: expected a number {'>=' if allow_zero else '>'} 0")
    return float(value)


def schedule_config(opt_cfg: Any) -> dict[str, Any]:
    """The validated ``optimizer.schedule`` mapping with defaults filled in (``name`` included).
    A partial or missing schedule is merged onto the schema's (``OptimizerConf.schedule``)."""
    sched = _to_dict(opt_cfg).get("schedule")
    if isinstance(sched, str):
        sched = {"name": sched}
    default = next(f for f in fields(OptimizerConf) if f.name == "schedule").default_factory()
    sched = {**default, **_to_dict(sched)}
    name = str(sched["name"]).lower()
    if name not in SCHEDULES:
        raise ConfigError(f"optimizer.schedule.name={name!r}: expected one of {sorted(SCHEDULES)}")
    out = asdict(typed(sched, SCHEDULES[name], f"optimizer.schedule({name})"))
    out["name"] = name
    return out


def build_schedule(
    opt_cfg: Any, *, steps_per_epoch: int, epochs: int
) -> float | keras.optimizers.schedules.LearningRateSchedule:
    """Learning rate (float) or per-step schedule from ``opt_cfg.learning_rate``/``schedule``."""
    lr = _positive(
        _to_dict(opt_cfg).get("learning_rate", OptimizerConf.learning_rate),
        "optimizer.learning_rate",
    )
    sched = schedule_config(opt_cfg)
    name = sched["name"]
    # By name, not `_target_`: each schedule needs the run's steps per epoch and epochs, which
    # the config does not hold, and converts epochs to steps in its own way.
    if name in ("constant", "plateau"):
        return lr
    steps_per_epoch, epochs = max(int(steps_per_epoch), 1), max(int(epochs), 1)
    total = steps_per_epoch * epochs
    schedules = keras.optimizers.schedules
    if name == "cosine":
        warmup = int(
            round(
                _positive(
                    sched["warmup_epochs"], "optimizer.schedule.warmup_epochs", allow_zero=True
                )
                * steps_per_epoch
            )
        )
        if warmup >= total:
            raise ConfigError(
                f"optimizer.schedule.warmup_epochs={sched['warmup_epochs']}: "
                f"expected fewer than trainer.epochs={epochs}"
            )
        min_lr = _positive(sched["min_lr"], "optimizer.schedule.min_lr", allow_zero=True)
        alpha = min_lr / lr
        if warmup == 0:
            return schedules.CosineDecay(lr, decay_steps=total, alpha=alpha)
        start = _positive(
            sched["warmup_start_lr"], "optimizer.schedule.warmup_start_lr", allow_zero=True
        )
        return schedules.CosineDecay(
            start,
            decay_steps=total - warmup,
            alpha=alpha,
            warmup_target=lr,
            warmup_steps=warmup,
        )
    if name == "step":
        gamma = _positive(sched["gamma"], "optimizer.schedule.gamma")
        if sched["milestones"] is not None:
            milestones = sorted(int(m) for m in sched["milestones"])
        elif sched["step_epochs"] is not None:
            every = int(_positive(sched["step_epochs"], "optimizer.schedule.step_epochs"))
            milestones = list(range(every, epochs, every))
        else:
            raise ConfigError("optimizer.schedule(step): set step_epochs or milestones")
        milestones = [m for m in milestones if m > 0]
        if not milestones:
            return lr
        # PiecewiseConstantDecay switches *after* a boundary step: the new value applies from
        # the first step of epoch m (step m * steps_per_epoch, 0-based).
        boundaries = [m * steps_per_epoch - 1 for m in milestones]
        values = [lr * gamma**i for i in range(len(boundaries) + 1)]
        return schedules.PiecewiseConstantDecay(boundaries, values)
    # polynomial
    end_lr = _positive(sched["end_lr"], "optimizer.schedule.end_lr", allow_zero=True)
    power = _positive(sched["power"], "optimizer.schedule.power")
    return schedules.PolynomialDecay(
        lr, decay_steps=total, end_learning_rate=end_lr, power=power, cycle=bool(sched["cycle"])
    )


def _keyword_args(cfg: dict[str, Any], name: str, takes: set[str], target: str) -> dict[str, Any]:
    """The option's own keys the target takes, checked, plus the ``+optimizer.<key>`` extras."""
    schema = OPTIMIZERS[name]
    names = {f.name for f in fields(schema)}
    extra = {k: v for k, v in cfg.items() if k not in names}
    unknown = sorted(k for k in extra if k not in takes)
    if unknown:
        valid = sorted((names | takes) - {"_target_", "name", "kwargs", "self"})
        near = "".join(closest(k, valid) for k in unknown)
        raise ConfigError(
            f"optimizer({name}): unknown key(s) {unknown}{near}; {target} takes some of {valid}"
        )
    prm = asdict(typed({k: v for k, v in cfg.items() if k in names}, schema, f"optimizer({name})"))
    defaults = asdict(schema())
    # Another class keeps its own defaults for the keys left at the option's (Lion's beta_2 is
    # 0.99, not Adam's 0.999); the option's class gets every key.
    replaced = target != schema._target_
    kwargs = {}
    for key in sorted(names - {f.name for f in fields(OptimizerConf)}):
        if key in takes:
            if not replaced or prm[key] != defaults[key]:
                kwargs[key] = prm[key]
        elif prm[key] != defaults[key]:
            raise ConfigError(
                f"optimizer.{key}={prm[key]!r}: {target} takes no {key!r}; expected "
                f"{defaults[key]!r} (optimizer={name}'s default) or a class that takes it"
            )
    for key in ("weight_decay", "clipnorm", "global_clipnorm", "clipvalue"):
        if prm[key] is not None:
            kwargs[key] = _positive(prm[key], f"optimizer.{key}", allow_zero=key == "weight_decay")
    if sum(prm[k] is not None for k in ("clipnorm", "global_clipnorm", "clipvalue")) > 1:
        raise ConfigError("optimizer: set at most one of clipnorm, global_clipnorm, clipvalue")
    if name == "sgd" and not 0 <= float(prm["momentum"]) < 1:
        raise ConfigError(f"optimizer.momentum={prm['momentum']!r}: expected 0 <= momentum < 1")
    return kwargs | extra


def build_optimizer(
    opt_cfg: Any, *, steps_per_epoch: int, epochs: int
) -> keras.optimizers.Optimizer:
    """The Keras optimizer ``opt_cfg._target_`` names (by default the class of option
    ``opt_cfg.name``) with its schedule, weight decay and clipping."""
    cfg = _to_dict(opt_cfg)
    name = option_name(cfg, "optimizer")
    if name not in OPTIMIZERS:
        raise ConfigError(f"optimizer.name={name!r}: expected one of {sorted(OPTIMIZERS)}")
    target = str(cfg.get("_target_") or OPTIMIZERS[name]._target_)
    factory = target_callable(target, "optimizer._target_", "a Keras optimizer class")
    kwargs = _keyword_args(cfg, name, keyword_names(factory), target)
    lr = build_schedule(cfg, steps_per_epoch=steps_per_epoch, epochs=epochs)
    try:
        optimizer = factory(learning_rate=lr, **kwargs)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"optimizer._target_={target!r}: {str(err).splitlines()[0]}") from None
    exclude = cfg.get("exclude_from_weight_decay")
    if exclude:
        optimizer.exclude_from_weight_decay(var_names=[str(v) for v in exclude])
    return optimizer


def current_learning_rate(optimizer: keras.optimizers.Optimizer) -> float:
    """The learning rate the optimizer uses at its current iteration (schedules evaluated)."""
    lr = optimizer.learning_rate
    if isinstance(lr, keras.optimizers.schedules.LearningRateSchedule):
        lr = lr(optimizer.iterations)
    return float(keras.ops.convert_to_numpy(lr))
