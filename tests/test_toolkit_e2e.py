"""Every `augmentation=`, `loss=` and `optimizer=` option (the YAML files
in conf/) trains one epoch on the synthetic data through `segexp.train.lifecycle.train`, with a
finite logged loss and the learning rate logged; losses in both binary and trimap mode.

One training run costs ~10-20 s on a loaded 2-core CPU, so options are combined: case i trains
loss i (binary and trimap) with augmentation i mod 6 and optimizer i mod 5, which covers every
option with 16 runs instead of 27. The default selection keeps one run (the U-Net weighted loss
with elastic deformation); the rest are marked slow (`pytest -m slow`).
"""

from __future__ import annotations

import math

import pytest

from segexp.config import CONF_DIR
from tests._e2e import ONE_EPOCH, assert_finite_epoch, history, train_run


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


AUGMENTATIONS, LOSSES, OPTIMIZERS = options("augmentation"), options("loss"), options("optimizer")
MODES = ("binary", "trimap")
CASES = [
    (loss, mode, AUGMENTATIONS[i % len(AUGMENTATIONS)], OPTIMIZERS[i % len(OPTIMIZERS)])
    for i, (loss, mode) in enumerate((lo, mo) for lo in LOSSES for mo in MODES)
]
FAST = {("unet_weighted", "binary")}


def test_cases_cover_every_option():
    assert {"none", "flip", "affine", "elastic", "color", "unet_paper"} <= set(AUGMENTATIONS)
    assert {"bce", "cce", "dice", "bce_dice", "ce_dice", "focal", "unet_weighted"} <= set(LOSSES)
    assert {"adam", "sgd", "adamw", "rmsprop"} <= set(OPTIMIZERS)
    assert {c[2] for c in CASES} == set(AUGMENTATIONS)
    assert {c[3] for c in CASES} == set(OPTIMIZERS)
    assert {(c[0], c[1]) for c in CASES} == {(lo, mo) for lo in LOSSES for mo in MODES}


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('store')}/m.db"


@pytest.mark.parametrize(
    ("loss", "mode", "augmentation", "optimizer"),
    [
        pytest.param(
            *c,
            id=f"loss={c[0]}-{c[1]}-augmentation={c[2]}-optimizer={c[3]}",
            marks=() if c[:2] in FAST else pytest.mark.slow,
        )
        for c in CASES
    ],
)
def test_option_trains_one_epoch(loss, mode, augmentation, optimizer, compose, tmp_path, store):
    epochs = 1
    overrides = [
        *ONE_EPOCH,
        f"trainer.epochs={epochs}",
        f"dataset.mode={mode}",
        f"loss={loss}",
        f"augmentation={augmentation}",
        f"optimizer={optimizer}",
        "trainer.evaluate_test=false",
    ]
    exp = f"{loss}-{mode}-{augmentation}-{optimizer}"
    client, run = train_run(compose, tmp_path, store, exp, overrides)
    keys = ("loss", "val_loss", "lr", "val_accuracy", "val_mean_iou")
    assert_finite_epoch(client, run, keys, epochs=epochs)
    params = run.data.params
    assert params["loss.name"] == loss and params["augmentation.name"] == augmentation
    assert params["optimizer.name"] in (optimizer, "sgd")  # sgd_unet is an sgd preset
    assert run.data.tags["dataset.num_classes"] == ("2" if mode == "binary" else "3")
    lr = history(client, run.info.run_id, "lr")[0]
    want = float(params["optimizer.learning_rate"])
    schedule = params.get("optimizer.schedule.name", "constant")
    if schedule == "constant":
        assert lr == pytest.approx(want, rel=1e-6)
    else:  # adamw: half an epoch of warm-up, then cosine decay towards min_lr (0)
        assert 0.0 <= lr < want
    assert 0.0 <= history(client, run.info.run_id, "val_accuracy")[0] <= 1.0


@pytest.mark.slow
def test_plateau_schedule_reduces_the_logged_lr(compose, tmp_path, store):
    overrides = [
        *ONE_EPOCH,
        "trainer.epochs=3",
        "dataset.mode=binary",
        "optimizer.schedule.name=plateau",
        "+optimizer.schedule.patience=0",
        "+optimizer.schedule.factor=0.5",
        "+optimizer.schedule.min_delta=1e9",  # never an improvement after the first epoch
        "trainer.evaluate_test=false",
    ]
    client, run = train_run(compose, tmp_path, store, "plateau", overrides)
    assert run.info.status == "FINISHED"
    lrs = history(client, run.info.run_id, "lr")
    losses = history(client, run.info.run_id, "loss")
    assert len(lrs) == 3 and all(math.isfinite(v) for v in losses)
    assert lrs[0] == pytest.approx(1e-3)
    assert lrs == sorted(lrs, reverse=True) and lrs[-1] < 1e-3
    assert all(any(v == pytest.approx(1e-3 * 0.5**k) for k in range(4)) for v in lrs), (
        lrs
    )  # each step halves
