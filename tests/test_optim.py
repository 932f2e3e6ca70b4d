"""Optimizers and learning-rate schedules: expected classes, options and values per step."""

from __future__ import annotations

import math
from pathlib import Path

import keras
import pytest

from segexp.config import load_preset
from segexp.errors import ConfigError
from segexp.optim import build_optimizer, build_schedule, current_learning_rate

CONF = Path(__file__).resolve().parents[1] / "conf" / "optimizer"


def lr_at(schedule, step: int) -> float:
    if isinstance(schedule, float):
        return schedule
    return float(schedule(step))


@pytest.mark.parametrize("path", sorted(CONF.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_yaml_option_builds(path):
    cfg = load_preset("optimizer", path.stem)
    opt = build_optimizer(cfg, steps_per_epoch=5, epochs=3)
    expected = {
        "adam": keras.optimizers.Adam,
        "adamw": keras.optimizers.AdamW,
        "sgd": keras.optimizers.SGD,
        "rmsprop": keras.optimizers.RMSprop,
    }[cfg.name]
    assert type(opt) is expected
    assert current_learning_rate(opt) >= 0.0


def test_sgd_unet_paper_momentum_and_options():
    opt = build_optimizer(
        {
            "name": "sgd",
            "learning_rate": 0.01,
            "momentum": 0.99,
            "nesterov": True,
            "weight_decay": 1e-4,
            "global_clipnorm": 1.0,
        },
        steps_per_epoch=10,
        epochs=2,
    )
    assert opt.momentum == pytest.approx(0.99) and opt.nesterov is True
    assert opt.weight_decay == pytest.approx(1e-4) and opt.global_clipnorm == pytest.approx(1.0)
    assert current_learning_rate(opt) == pytest.approx(0.01)
    assert load_preset("optimizer", "sgd_unet").momentum == pytest.approx(0.99)
    opt = build_optimizer({"name": "adamw", "clipnorm": 2.0}, steps_per_epoch=1, epochs=1)
    assert opt.clipnorm == pytest.approx(2.0) and opt.weight_decay == pytest.approx(0.004)


def test_cosine_with_warmup_values():
    sched = build_schedule(
        {"learning_rate": 0.1, "schedule": {"name": "cosine", "warmup_epochs": 1, "min_lr": 0.01}},
        steps_per_epoch=10,
        epochs=5,
    )
    assert lr_at(sched, 0) == pytest.approx(0.0)
    assert lr_at(sched, 5) == pytest.approx(0.05)
    assert lr_at(sched, 10) == pytest.approx(0.1)
    # halfway through the 40 decay steps: min + (max - min) / 2
    assert lr_at(sched, 30) == pytest.approx(0.01 + 0.09 * 0.5, rel=1e-5)
    assert lr_at(sched, 50) == pytest.approx(0.01, rel=1e-5)
    step = 17
    cos = 0.5 * (1 + math.cos(math.pi * (step - 10) / 40))
    assert lr_at(sched, step) == pytest.approx(0.01 + 0.09 * cos, rel=1e-5)


def test_step_polynomial_constant_and_plateau_values():
    step = build_schedule(
        {"learning_rate": 1.0, "schedule": {"name": "step", "step_epochs": 2, "gamma": 0.5}},
        steps_per_epoch=4,
        epochs=7,
    )
    assert [lr_at(step, s) for s in (0, 7, 8, 15, 16, 24, 27)] == pytest.approx(
        [1.0, 1.0, 0.5, 0.5, 0.25, 0.125, 0.125]
    )
    miles = build_schedule(
        {"learning_rate": 1.0, "schedule": {"name": "step", "milestones": [3], "gamma": 0.1}},
        steps_per_epoch=4,
        epochs=7,
    )
    assert [lr_at(miles, s) for s in (11, 12)] == pytest.approx([1.0, 0.1])
    poly = build_schedule(
        {"learning_rate": 0.1, "schedule": {"name": "polynomial", "power": 0.9, "end_lr": 0.0}},
        steps_per_epoch=10,
        epochs=10,
    )
    assert lr_at(poly, 50) == pytest.approx(0.1 * 0.5**0.9, rel=1e-5)
    assert lr_at(poly, 100) == pytest.approx(0.0, abs=1e-9)
    assert build_schedule({"learning_rate": 0.3}, steps_per_epoch=1, epochs=1) == 0.3
    plateau = build_schedule(
        {"learning_rate": 0.3, "schedule": {"name": "plateau"}}, steps_per_epoch=1, epochs=1
    )
    assert plateau == 0.3  # the callback changes it


def test_optimizer_uses_schedule_at_its_iteration():
    opt = build_optimizer(
        {
            "name": "adam",
            "learning_rate": 1.0,
            "schedule": {"name": "step", "milestones": [1], "gamma": 0.1},
        },
        steps_per_epoch=3,
        epochs=2,
    )
    var = keras.Variable([1.0])
    lrs = []
    for _ in range(4):
        lrs.append(current_learning_rate(opt))
        opt.apply_gradients([(keras.ops.ones_like(var), var)])
    assert lrs == pytest.approx([1.0, 1.0, 1.0, 0.1])


@pytest.mark.parametrize(
    "cfg",
    [
        {"name": "adagrad"},
        {"name": "adam", "momentum": 0.9},
        {"name": "sgd", "momentum": 1.5},
        {"name": "adam", "clipnorm": 1.0, "global_clipnorm": 1.0},
        {"name": "adam", "schedule": {"name": "cosine", "warmup_epochs": 5}},
        {"name": "adam", "schedule": {"name": "exponential"}},
        {"name": "adam", "schedule": {"name": "step"}},
        {"name": "adam", "learning_rate": -1},
    ],
)
def test_bad_config_raises_config_error(cfg):
    with pytest.raises(ConfigError):
        build_optimizer(cfg, steps_per_epoch=2, epochs=5)


# --- another Keras optimizer by `_target_` -------------------------------------------------


def test_target_replacement_builds_that_class_with_the_shared_keys_and_schedule(compose):
    from segexp.cli import preflight

    argv = [
        "optimizer=adamw",
        "optimizer._target_=keras.optimizers.Lion",
        "optimizer.beta_2=0.95",
        "+optimizer.use_ema=true",
    ]
    preflight([*argv, "--cfg", "job"])  # `+optimizer.<key>` passes the key checks
    cfg = compose(argv)
    opt = build_optimizer(cfg.optimizer, steps_per_epoch=4, epochs=3)
    assert type(opt) is keras.optimizers.Lion
    assert opt.beta_2 == pytest.approx(0.95)  # Lion's own default is 0.99
    assert opt.use_ema is True and opt.weight_decay == pytest.approx(1e-4)
    # adamw's cosine schedule after a half-epoch (2-step) warm-up from 0 to 1e-3
    assert current_learning_rate(opt) == pytest.approx(0.0)
    opt.iterations.assign(2)
    assert current_learning_rate(opt) == pytest.approx(1e-3)


def test_a_replaced_class_keeps_its_own_defaults_for_the_keys_left_alone(compose):
    import inspect

    cfg = compose(["optimizer=adam", "optimizer._target_=keras.optimizers.Lion"])
    opt = build_optimizer(cfg.optimizer, steps_per_epoch=4, epochs=3)
    own = inspect.signature(keras.optimizers.Lion).parameters["beta_2"].default
    assert own != cfg.optimizer.beta_2  # Adam's 0.999 would be a silent change of Lion
    assert opt.beta_2 == pytest.approx(own)


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        (["optimizer.amsgrad=true"], r"optimizer.amsgrad=True: keras.optimizers.Lion takes no"),
        (["+optimizer.use_emma=true"], r"unknown key\(s\) \['use_emma'\] \(did you mean 'use_ema'"),
        (["optimizer._target_=keras.optimizers.NoSuch"], r"optimizer._target_='keras.optimizers"),
    ],
)
def test_target_replacement_refuses_keys_the_class_does_not_take(compose, overrides, match):
    cfg = compose(["optimizer=adam", "optimizer._target_=keras.optimizers.Lion", *overrides])
    with pytest.raises(ConfigError, match=match):
        build_optimizer(cfg.optimizer, steps_per_epoch=2, epochs=2)
