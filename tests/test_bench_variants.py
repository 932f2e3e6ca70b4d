"""segexp-bench: (a) is measured from segexp-train's own MLflow run, (b) gets the tensors
segexp's pipeline feeds the model, and a pair with different final losses is flagged."""

from __future__ import annotations

import math

import numpy as np
from omegaconf import OmegaConf

from segexp.bench import checks, cli, report
from segexp.bench.timing import Result
from segexp.bench.variants import Bench
from tests.test_bench import TINY_BENCH as TINY


def _result(variant: str, loss: float, rate: float = 100.0) -> Result:
    return Result(
        scenario="none",
        variant=variant,
        images_per_epoch=16,
        steps=2,
        epoch_seconds=0.5,
        val_seconds=0.1,
        images_per_sec=rate,
        peak_rss_mb=900.0,
        logging_share=0.01 if variant.startswith("a") else None,
        final_loss=loss,
    )


class _FakeBench:
    """What ``cli._round`` calls, with the final losses chosen by the test."""

    def __init__(self, loss_a: float, loss_b: float) -> None:
        self.cfg = OmegaConf.create({"model": {"name": "fake"}})
        self.loss_a, self.loss_b = loss_a, loss_b

    def run_segexp(self, scenario, aug, number):
        return _result("a: segexp", self.loss_a, rate=240.0)

    def run_keras(self, scenario):
        return _result("b: keras", self.loss_b, rate=100.0)


def _report(rows: list[dict]) -> dict:
    return {
        "machine": {
            "cpu": "x",
            "cores": "2",
            "memory": "",
            "gpus": "none",
            "load": "0",
            "versions": "",
        },
        "load_end": "0",
        "command": "segexp-bench (test)",
        "model": {"name": "fake", "input": "8x8x1", "params": 10, "flops": 1000},
        "peaks": {"matmul_flops_per_sec": 1e9, "conv_flops_per_sec": 1e9},
        "batch_size": 8,
        "steps": 2,
        "images": 16,
        "warmup": 1,
        "epochs": 1,
        "rounds": 1,
        "precision": "float32",
        "jit": "auto",
        "distribute": "none",
        "validation": True,
        "rows": rows,
        "targets": report.targets(rows),
        "memory": [],
        "total_s": 1.0,
    }


def test_loss_mismatch_flags_the_row_and_the_target(capsys):
    """The figures of the issue (0.23 against 0.38): the row, the table and the target say the
    pair is not comparable, and why; a pair within 10 % passes."""
    rows = cli._round(_FakeBench(0.23, 0.38), "none", None, 1)
    assert (
        "final training loss 0.2300 (a: segexp) against 0.3800 (b: keras)"
        in capsys.readouterr().out
    )
    check = rows[0]["loss_check"]
    assert not check["ok"] and math.isclose(check["difference"], 0.23 / 0.38 - 1)
    assert rows[0]["a_b"] == 2.4  # the ratio stays in the table, flagged
    text = report.render(_report(rows))
    line = next(r for r in text.splitlines() if "| a: segexp |" in r)
    assert line.rstrip(" |").endswith("NOT COMPARABLE (-39.5%)")
    assert "NOT COMPARABLE: none round 1: final training loss 0.2300" in text
    target = next(r for r in text.splitlines() if r.startswith("| (a) and (b) final training loss"))
    assert target.endswith("| -39.5% | no |")

    same = cli._round(_FakeBench(0.36, 0.38), "none", None, 1)
    assert same[0]["loss_check"]["ok"] and same[0]["loss_check"]["why"] is None
    assert "NOT COMPARABLE" not in report.render(_report(same))
    assert checks.loss_check(_result("a", 0.42), _result("b", 0.38))["ok"] is False  # +10.5 %
    assert checks.loss_check(_result("a", 0.35), _result("b", 0.38))["ok"] is True  # -7.9 %


def test_keras_baseline_gets_the_tensors_segexp_feeds(compose, tmp_path):
    """A model that rescales raw pixels itself (input_range 255) gets 0..255 images in (b), the
    same as segexp's pipeline gives it, and the targets its output shape."""
    cfg = compose(
        [
            *TINY,
            "model=unet_nuclei",
            "model.input_shape=[32,32,3]",
            "model.dropout=0.0",
            "model.padding=valid",
            "model.depth=1",
        ],
        config_name="bench",
    )
    bench = Bench(cfg, tmp_path)
    model, _, fit = bench.keras_tensors()
    x, y = fit["x"], fit["y"]
    assert x.shape == bench.x_train.shape
    np.testing.assert_allclose(np.sort(x.ravel()), np.sort(bench.x_train.ravel()) * 255, rtol=1e-6)
    assert x.max() > 1.5
    assert y.shape[1:3] == tuple(model.output_shape[1:3]) != tuple(x.shape[1:3])
    ch, cw = bench.crop
    masks = bench.y_train[:, ch : bench.y_train.shape[1] - ch, cw : bench.y_train.shape[2] - cw]
    assert sorted(m.tobytes() for m in y) == sorted(m.tobytes() for m in masks)


def test_python_baseline_gets_the_weight_maps_segexp_feeds(compose, tmp_path):
    """With a weight-map loss, (c) yields (images, masks, weights): segexp's own weight maps
    of the training masks (those (b) gets), moved with the mask by (c)'s augmentation."""
    from segexp.augment import option_defaults
    from segexp.bench.python_baseline import python_dataset

    cfg = compose([*TINY, "loss=unet_weighted"], config_name="bench")
    bench = Bench(cfg, tmp_path)
    weights = bench.w_train
    assert weights.shape == bench.y_train.shape[:3] and weights.dtype == np.float32
    assert len(np.unique(weights)) > 2  # a real weight map, not ones
    _, _, fit = bench.keras_tensors()  # (b): segexp's pipeline, no augmentation
    assert sorted(w.tobytes() for w in fit["sample_weight"]) == sorted(w.tobytes() for w in weights)
    flip = {**option_defaults("flip"), "p": 1.0}  # horizontal flips, every sample
    data = python_dataset(
        bench.x_train,
        bench.y_train,
        8,
        "flip",
        flip,
        0,
        crop=bench.crop,
        target="mask",
        weights=weights,
    )
    batch = data[0]
    assert len(batch) == 3
    idx = data.order[:8]
    np.testing.assert_array_equal(batch[1], bench.y_train[idx][:, :, ::-1])
    np.testing.assert_array_equal(batch[2], weights[idx][:, :, ::-1])
    # Without a weight map (c) keeps yielding (images, masks).
    plain = python_dataset(
        bench.x_train, bench.y_train, 8, "flip", flip, 0, crop=(0, 0), target="mask"
    )
    assert len(plain[0]) == 2
    assert Bench(compose(TINY, config_name="bench"), tmp_path / "b").w_train is None


def test_segexp_variant_reports_what_its_run_logged(compose, tmp_path):
    """(a) runs segexp-train's function; its images/s, final loss and logging share are the
    values its MLflow run holds, and the run trained warm-up + timed epochs."""
    from mlflow import MlflowClient

    from segexp.bench.variants import aug_config

    cfg = compose(TINY, config_name="bench")
    bench = Bench(cfg, tmp_path)
    result = bench.run_segexp("none", aug_config(cfg, "none"), 1)
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    run = client.get_run(result.extra["run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.params["trainer.epochs"] == "2"
    assert result.images_per_sec == run.data.metrics["train_images_per_sec"]
    assert result.logging_share == run.data.metrics["mlflow_logging_share"]
    losses = client.get_metric_history(run.info.run_id, "loss")
    assert sorted(m.step for m in losses) == [1, 2]
    assert result.final_loss == max(losses, key=lambda m: m.step).value
    assert result.pipeline_images_per_sec > 0


def test_augmentation_table_pairs_each_round_and_averages_the_ratios():
    """Hand-made rates of two rounds: the pipeline ratio pairs segexp's pipeline with the Python
    loop's of the same round, the training ratio the augmented run with the plain one of the
    same round; each cell is the mean of the rounds' ratios, each listed, against its goal."""

    def seg(scenario: str, n: int, rate: float, pipeline: float | None = None) -> Result:
        return Result(
            scenario=scenario,
            variant="a: segexp",
            images_per_epoch=16,
            steps=2,
            epoch_seconds=0.5,
            val_seconds=None,
            images_per_sec=rate,
            peak_rss_mb=900.0,
            pipeline_images_per_sec=pipeline,
            round=n,
        )

    rows = [
        {"result": seg("none", 1, 100.0)},
        {"result": seg("none", 2, 80.0)},
        {"result": seg("affine", 1, 90.0, pipeline=3000.0), "python_pipeline": 1000.0},
        {"result": seg("affine", 2, 88.0, pipeline=1500.0), "python_pipeline": 1000.0},
    ]
    model = {"name": "unet_small", "input": "32x32x1"}
    summary = report.augmentation_summary([{"rows": rows, "model": model}])
    assert summary == [
        {
            "model": "unet_small",
            "input": "32x32x1",
            "augmentation": "affine",
            "pipeline": [(3000.0, 1000.0), (1500.0, 1000.0)],
            "training": [(90.0, 100.0), (88.0, 80.0)],
        }
    ]
    text = report.render_augmentation({"augmentation": summary})
    row = next(line for line in text.splitlines() if line.startswith("| unet_small |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    # pipeline: 3.0 and 1.5, mean 2.25 >= 2; training: 0.9 and 1.1, mean 1.0 >= 0.9
    assert cells[3:] == [
        "2250",
        "1000",
        "2.25 (3.00, 1.50)",
        "yes",
        "89.0 / 90.0",
        "1.00 (0.90, 1.10)",
        "yes",
    ]
