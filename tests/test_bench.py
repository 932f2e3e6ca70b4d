"""segexp-bench: FLOP counting, the Python augmentation baseline, and the table at tiny size."""

from __future__ import annotations

import math

import numpy as np
import pytest

from segexp.bench import cli, measure, python_baseline

TINY_BENCH = [
    "dataset.image_size=[32,32]",
    "dataset.num_images=30",
    "model.depth=2",
    "model.filters=4",
    "trainer.batch_size=8",
    "trainer.num_sample_images=2",
    "bench.epochs=1",
    "bench.warmup_epochs=1",
    "bench.peak.matmul_size=64",
    "bench.peak.conv_channels=4",
    "bench.peak.conv_batch=2",
    "bench.peak.repeats=2",
    "bench.memory.num_images=40",
    "bench.memory.image_size=[48,40]",
]


def _numbers(cell: str) -> float:
    return float(cell.strip().rstrip("%"))


def _table(text: str, header_start: str) -> list[list[str]]:
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header_start))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip("|").split("|")])
    return rows


def test_model_flops_is_exact_for_conv_transpose_and_dense():
    import keras

    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same")(inputs)
    x = keras.layers.Conv2DTranspose(2, 2, strides=2)(x)
    outputs = keras.layers.Dense(5)(x)
    model = keras.Model(inputs, outputs)
    conv = 2 * 8 * 8 * 4 * 3 * 3 * 3
    transpose = 2 * 8 * 8 * 4 * 2 * 2 * 2
    dense = 2 * 16 * 16 * 2 * 5
    assert measure.model_flops(model) == conv + transpose + dense


@pytest.mark.parametrize("kind", ["affine", "elastic", "flip"])
def test_python_augment_keeps_shapes_dtypes_and_labels(kind):
    from segexp.augment import option_defaults

    prm = {
        "affine": {**option_defaults("affine"), "rotation_range": 20, "zoom_range": 0.1},
        "elastic": option_defaults("elastic"),
        "flip": {**option_defaults("flip"), "p": 1.0},
    }[kind]
    rng = np.random.default_rng(0)
    image = rng.uniform(0, 1, (24, 20, 3)).astype(np.float32)
    mask = rng.integers(0, 3, (24, 20, 1)).astype(np.int32)
    out_img, out_mask = python_baseline.python_augment(kind, prm, image, mask, rng)
    assert out_img.shape == image.shape and out_mask.shape == mask.shape
    assert out_img.dtype == np.float32 and out_mask.dtype == np.int32
    assert set(np.unique(out_mask)) <= {0, 1, 2}
    assert not np.array_equal(out_img, image)


def test_python_affine_with_zero_ranges_is_identity():
    from segexp.augment import option_defaults

    rng = np.random.default_rng(1)
    image = rng.uniform(0, 1, (16, 16, 1)).astype(np.float32)
    mask = rng.integers(0, 2, (16, 16, 1)).astype(np.int32)
    out_img, out_mask = python_baseline.python_augment(
        "affine", option_defaults("affine"), image, mask, rng
    )
    np.testing.assert_allclose(out_img, image, atol=1e-5)
    np.testing.assert_array_equal(out_mask, mask)


@pytest.mark.parametrize("kind", ["affine", "elastic", "flip"])
def test_python_augment_moves_the_weight_map_like_the_mask(kind):
    """(c)'s weight map follows the mask's transform exactly (order 0), and a constant fill
    invents pixels of weight 0, as segexp's pipeline carries it."""
    from segexp.augment import option_defaults

    prm = {
        "affine": {
            **option_defaults("affine"),
            "rotation_range": 30,
            "width_shift_range": 0.3,
            "fill_mode": "constant",
            "mask_fill_value": 255,
        },
        "elastic": {**option_defaults("elastic"), "sigma": 4.0},
        "flip": {**option_defaults("flip"), "p": 1.0, "vertical": True},
    }[kind]
    rng = np.random.default_rng(3)
    image = rng.uniform(0, 1, (24, 20, 1)).astype(np.float32)
    mask = rng.integers(0, 3, (24, 20, 1)).astype(np.int32)
    weights = (mask[..., 0] * 1.5 + 0.25).astype(np.float32)  # a function of the mask
    plain = python_baseline.python_augment(kind, prm, image, mask, np.random.default_rng(7))
    out_img, out_mask, out_w = python_baseline.python_augment(
        kind, prm, image, mask, np.random.default_rng(7), weights
    )
    np.testing.assert_array_equal(out_img, plain[0])  # the weights draw no random numbers
    np.testing.assert_array_equal(out_mask, plain[1])
    assert out_w.shape == (24, 20) and out_w.dtype == np.float32
    filled = out_mask[..., 0] == 255
    np.testing.assert_array_equal(out_w[~filled], out_mask[..., 0][~filled] * 1.5 + 0.25)
    np.testing.assert_array_equal(out_w[filled], 0.0)
    assert filled.any() == (kind == "affine")
    if kind == "flip":
        np.testing.assert_array_equal(out_w, weights[::-1, ::-1])


def test_peaks_and_memory_readings_are_positive():
    peaks = measure.measure_peaks(64, (2, 16, 16, 4), repeats=2)
    assert all(math.isfinite(v) and v > 0 for v in peaks.values())
    assert measure.peak_rss_mb() > 0 and measure.rss_mb() > 0
    measure.reset_peak_rss()
    assert measure.peak_rss_mb() >= measure.rss_mb() * 0.5


def test_baseline_timer_is_the_training_timer_plus_validation(monkeypatch):
    """The baselines' images/s is segexp-train's ``train_images_per_sec``: the images of the
    epochs after the first over their training time (validation excluded)."""
    import time

    from segexp.bench.timing import make_timer
    from segexp.train.epoch_logger import EpochTimer

    # Per epoch: begin, training ends (validation begins), validation ends, epoch ends.
    clock = iter([0.0, 4.0, 4.0, 5.0, 6.0, 10.0, 12.0, 12.0, 13.0, 13.5])
    monkeypatch.setattr(time, "perf_counter", lambda: next(clock))
    timer = make_timer(images_per_epoch=10, batch_size=4)
    assert isinstance(timer, EpochTimer)
    for epoch, loss in enumerate([0.9, 0.7]):
        timer.on_epoch_begin(epoch)
        for batch in range(3):  # 4 + 4 + a last batch of 2
            timer.on_train_batch_end(batch)
        timer.on_test_begin()
        timer.on_test_end()
        timer.on_epoch_end(epoch, {"loss": loss})
    assert timer.epoch_train_seconds == [4.0, 2.0] and timer.val_seconds == [1.0, 1.0]
    assert timer.epoch_seconds == [6.0, 3.5] and timer.epoch_images == [10, 10]
    assert timer.batches == [3, 3] and timer.losses == [0.9, 0.7]
    assert timer.images_per_second() == pytest.approx(5.0)  # 10 images in 2 s, epoch 2


def _check_report(report: dict, text: str, scenarios: list[str], rounds: int = 2) -> None:
    rows = _table(text, "| augmentation | round | variant |")
    variants = [(r[0], int(r[1]), r[2]) for r in rows]
    expected = []
    for s, base in [("none", "b: keras")] + [(s, "c: python aug") for s in scenarios]:
        for n in range(1, rounds + 1):
            expected += [(s, n, "a: segexp"), (s, n, base)]
    assert variants == expected
    for r in rows:
        r = [r[0], *r[2:]]  # without the round column
        images_per_sec, epoch_s, peak_mb, gflops = (_numbers(r[i]) for i in (2, 5, 7, 9))
        for value in (images_per_sec, epoch_s, peak_mb, gflops):
            assert math.isfinite(value) and value > 0, r
        assert math.isfinite(_numbers(r[11]))  # final loss
        if r[1] == "b: keras":
            assert r[12] == "n/a"
        else:
            assert _numbers(r[12]) > 0  # input pipeline alone, images/s
        if r[1] == "a: segexp":
            assert 0 < _numbers(r[3]) < 100  # (a)/(b)
            assert 0 <= _numbers(r[8]) < 100  # MLflow logging share in %
            if r[0] != "none":
                assert 0 < _numbers(r[4]) < 100  # (a)/(c)
    # The (a)/(b) target is the mean of the rounds' ratios, each listed.
    ratios = [
        row["a_b"]
        for row in report["rows"]
        if row.get("a_b") is not None and row["result"].scenario == "none"
    ]
    assert len(ratios) == rounds
    name, measured, met = report["targets"][0]
    assert name.startswith("(a)/(b)")
    assert measured == f"{sum(ratios) / rounds:.3f} ({', '.join(f'{v:.3f}' for v in ratios)})"
    assert met == (sum(ratios) / rounds >= 0.97)
    result = report["rows"][0]["result"]
    assert result.steps == math.ceil(result.images_per_epoch / report["batch_size"])
    assert report["model"]["flops"] > 0
    targets = _table(text, "| target |")
    assert targets[0][0].startswith("(a)/(b)") and targets[0][2] in ("yes", "no")
    model_rows = _table(text, "| model |")
    assert all(_numbers(c) > 0 for c in model_rows[0][1:])


def test_bench_tiny_run_writes_the_table(compose, tmp_path):
    out = tmp_path / "bench.md"
    cfg = compose(
        [
            *TINY_BENCH,
            "bench.augmentations=[none]",
            "bench.memory.enabled=false",
            f"bench.output={out}",
        ],
        config_name="bench",
    )
    report = cli.run_bench(cfg, command="segexp-bench (test)")
    text = out.read_text()
    assert text.startswith("# segexp-bench")
    assert "segexp-bench (test)" in text
    _check_report(report, text, [])
    assert "| data set |" not in text


@pytest.mark.slow
def test_bench_full_tiny_run_with_augmentations_and_memory(compose, tmp_path):
    out = tmp_path / "bench.md"
    cfg = compose(
        [*TINY_BENCH, "bench.augmentations=[affine,elastic]", f"bench.output={out}"],
        config_name="bench",
    )
    report = cli.run_bench(cfg)
    text = out.read_text()
    _check_report(report, text, ["affine", "elastic"])
    memory = _table(text, "| data set |")
    assert [r[0] for r in memory] == ["in memory", "streamed", "streamed small shuffle"]
    for r in memory:
        assert int(r[1]) > 0
        assert all(_numbers(c) > 0 for c in (r[2], r[3], r[4], r[7]))


@pytest.mark.slow  # four segexp-train runs (~45 s); its cells: test_bench_variants.py
def test_bench_without_baselines_reports_the_augmentation_table(compose, tmp_path):
    """bench.baselines=false trains only segexp's path; the augmentation table still pairs
    each round's pipeline-alone rates (segexp, Python loop) and training rates (with, without
    augmentation), and its ratios are the means of those pairs."""
    out = tmp_path / "bench.md"
    cfg = compose(
        [
            *TINY_BENCH,
            "bench.augmentations=[none,affine]",
            "bench.baselines=false",
            "bench.memory.enabled=false",
            f"bench.output={out}",
        ],
        config_name="bench",
    )
    report = cli.run_bench(cfg, model_cfgs=[cfg])
    variants = [(r["result"].scenario, r["result"].round) for r in report["rows"]]
    assert variants == [("none", 1), ("none", 2), ("affine", 1), ("affine", 2)]
    assert all(r["result"].variant == "a: segexp" for r in report["rows"])
    (row,) = _table(out.read_text(), "| model | input | augmentation |")
    assert row[:3] == ["unet_small", "32x32x1", "affine"]
    by_round = {(r["result"].scenario, r["result"].round): r for r in report["rows"]}
    pipeline = [
        by_round[("affine", n)]["result"].pipeline_images_per_sec
        / by_round[("affine", n)]["python_pipeline"]
        for n in (1, 2)
    ]
    training = [
        by_round[("affine", n)]["result"].images_per_sec
        / by_round[("none", n)]["result"].images_per_sec
        for n in (1, 2)
    ]
    for cell, ratios, goal, met in (
        (row[5], pipeline, 2.0, row[6]),
        (row[8], training, 0.9, row[9]),
    ):
        mean = sum(ratios) / 2
        assert cell == f"{mean:.2f} ({ratios[0]:.2f}, {ratios[1]:.2f})"
        assert met == ("yes" if mean >= goal else "no")
    assert all(v > 0 for v in pipeline + training)
