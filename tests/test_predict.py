"""segexp-predict: overlap-tile inference, image conversion, model loading and the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

from segexp.errors import ConfigError
from segexp.predict import app, contract, outputs, store
from segexp.predict import inference as inf
from segexp.predict.schema import PredictConfig

TILE = 32
REQS = ["keras", "tensorflow"]  # skips MLflow's slow requirement inference in log_model


# --------------------------------------------------------------------------------------------
# Tiny models
# --------------------------------------------------------------------------------------------


def threshold_model(size: int | None = TILE, channels: int = 1) -> keras.Model:
    """Foreground where the mean intensity exceeds 0.5: sigmoid(40 * (mean(x) - 0.5))."""
    inp = keras.Input((size, size, channels))
    conv = keras.layers.Conv2D(1, 1, activation="sigmoid", name="head")
    out = conv(inp)
    conv.set_weights([np.full((1, 1, channels, 1), 40.0 / channels), np.array([-20.0])])
    return keras.Model(inp, out)


def unet_like(size: int | None = TILE, seed: int = 0) -> keras.Model:
    """A small same-padded encoder/decoder with skips (required multiple 4), 3 classes."""
    keras.utils.set_random_seed(seed)
    L = keras.layers
    inp = keras.Input((size, size, 1))
    c1 = L.Conv2D(4, 3, padding="same", activation="relu")(inp)
    c2 = L.Conv2D(8, 3, padding="same", activation="relu")(L.MaxPooling2D(2)(c1))
    c3 = L.Conv2D(8, 3, padding="same", activation="relu")(L.MaxPooling2D(2)(c2))
    u2 = L.Concatenate()([L.UpSampling2D(2)(c3), c2])
    u2 = L.Conv2D(8, 3, padding="same", activation="relu")(u2)
    u1 = L.Concatenate()([L.UpSampling2D(2)(u2), c1, inp])
    logits = L.Conv2D(3, 1)(u1)
    # Make the output depend strongly on the input, so masks are not constant.
    scaled = L.Conv2D(3, 1, name="intensity")(inp)
    out = L.Activation("softmax", dtype="float32")(L.Add()([logits, scaled]))
    model = keras.Model(inp, out)
    model.get_layer("intensity").set_weights(
        [np.array([[[[-12.0, 0.0, 12.0]]]]), np.array([4.0, 0.0, -8.0])]
    )
    return model


def same_weights(build, size, **kw) -> tuple[keras.Model, keras.Model]:
    """A fixed-size model and a flexible (None) twin with identical weights."""
    fixed, flexible = build(size, **kw), build(None, **kw)
    flexible.set_weights(fixed.get_weights())
    return fixed, flexible


def valid_model(size: int | None) -> keras.Model:
    """Two valid 3x3 convs: output = input - 4 per axis (crop 2 per side)."""
    keras.utils.set_random_seed(1)
    inp = keras.Input((size, size, 1))
    x = keras.layers.Conv2D(4, 3, padding="valid", activation="tanh")(inp)
    out = keras.layers.Conv2D(1, 3, padding="valid", activation="sigmoid")(x)
    return keras.Model(inp, out)


def symmetric_model() -> keras.Model:
    """Convs with flip-symmetric kernels: equivariant to horizontal and vertical flips."""
    inp = keras.Input((None, None, 1))
    conv = keras.layers.Conv2D(2, 3, padding="same", activation="softmax")
    out = conv(inp)
    k = np.array([[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]])
    kernel = np.stack([k, -k], axis=-1)[:, :, None, :]
    conv.set_weights([kernel, np.array([-8.0, 8.0])])
    return keras.Model(inp, out)


def meta_for(model, size=TILE, channels=1, num_classes=2, head="sigmoid", **kw) -> dict:
    names = [f"c{i}" for i in range(num_classes)]
    return contract.inference_meta(
        model,
        input_size=[size, size],
        channels=channels,
        num_classes=num_classes,
        class_names=names,
        head=head,
        **kw,
    )


def segmenter(model, meta, **kw) -> inf.Segmenter:
    return inf.make_predictor(model, meta, PredictConfig(**kw))


def predictor(model, meta, **kw) -> inf.TiledPredictor:
    return segmenter(model, meta, **kw).tiled


def random_gray(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Smooth-ish random uint8 image avoiding the 0.5 decision level exactly."""
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, (h, w), dtype=np.uint8)
    img[img == 127] = 126
    img[img == 128] = 129
    return img


def expected_threshold_mask(gray: np.ndarray) -> np.ndarray:
    return (gray.astype(np.float32) / 255.0 > 0.5).astype(np.uint8)


# --------------------------------------------------------------------------------------------
# Metadata and tiling primitives
# --------------------------------------------------------------------------------------------


def test_inference_meta_measures_model():
    meta = meta_for(unet_like(), num_classes=3, head="softmax")
    assert meta["input_size"] == [TILE, TILE]
    assert meta["required_multiple"] == 4
    assert meta["valid_padding"] is False and meta["output_crop"] == [0, 0]
    assert meta["output_channels"] == 3 and meta["task"] == "segmentation"
    json.dumps(meta)  # JSON-serialisable

    vmeta = meta_for(valid_model(36), size=36)
    assert vmeta["valid_padding"] is True and vmeta["output_crop"] == [2, 2]
    assert vmeta["required_multiple"] == 1


def test_tile_positions_cover_and_align():
    starts, covered = inf.tile_positions(80, 32, 24)
    assert starts == [0, 24, 48] and covered == 80
    starts, covered = inf.tile_positions(81, 32, 24)
    assert starts[-1] + 32 == covered >= 81 and all(s % 24 == 0 for s in starts)
    assert inf.tile_positions(20, 32, 24) == ([0], 32)
    assert inf.overlap_pixels(0.25, 32) == 8 and inf.overlap_pixels(10, 32) == 10
    with pytest.raises(ConfigError, match="tile_overlap"):
        inf.overlap_pixels(32, 32)


def test_gaussian_weights_and_mirror_pad():
    w = inf.gaussian_weights((32, 20))
    assert w.shape == (32, 20) and w.max() == pytest.approx(1.0) and w.min() > 0
    assert w[16, 10] > w[0, 10] and np.allclose(w, w[::-1, ::-1], atol=1e-6)
    a = np.arange(3, dtype=np.float32).reshape(1, 3, 1)
    padded = inf.mirror_pad(a, (0, 2), (2, 7))
    assert padded.shape == (3, 12, 1)
    assert padded[0, :, 0].tolist() == [2, 1, 0, 1, 2, 1, 0, 1, 2, 1, 0, 1]


# --------------------------------------------------------------------------------------------
# Any image size
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("overlap", [0.25, 0.5])
def test_large_image_matches_whole_image_prediction(overlap: float):
    """An 80x80 image (2.5x the 32x32 tile) gives an 80x80 output that agrees with a
    whole-image prediction by the same weights with a flexible input."""
    fixed, flexible = same_weights(unet_like, TILE)
    meta = meta_for(fixed, num_classes=3, head="softmax")
    rng = np.random.default_rng(3)
    image = rng.random((80, 80, 1)).astype(np.float32)

    tiled = predictor(fixed, meta, tile_overlap=overlap).predict_probs(image)
    whole = np.asarray(flexible.predict_on_batch(image[None]))[0]

    assert tiled.shape == (80, 80, 3)
    np.testing.assert_allclose(tiled.sum(-1), 1.0, atol=1e-5)
    inner = (slice(8, -8), slice(8, -8))
    diff = np.abs(tiled[inner] - whole[inner])
    print(diff.mean(), diff.max())
    assert diff.mean() < 0.01, diff.mean()
    agree = (tiled[inner].argmax(-1) == whole[inner].argmax(-1)).mean()
    assert agree > 0.98, agree
    # The mask really varies (the comparison is not trivially constant).
    assert len(np.unique(whole.argmax(-1))) == 3


def test_threshold_model_exact_at_any_size():
    model = threshold_model(TILE)
    pred = predictor(model, meta_for(model))
    for h, w in [(80, 80), (37, 53), (7, 5), (1, 40), (32, 32), (100, 33)]:
        gray = random_gray(h, w, seed=h * w)
        probs = pred.predict_probs(gray[..., None].astype(np.float32) / 255.0)
        mask = pred.to_mask(probs)
        assert mask.shape == (h, w)
        np.testing.assert_array_equal(mask, expected_threshold_mask(gray))


def test_predicted_labels_are_the_metrics_labels_at_exact_ties():
    """A sigmoid probability of exactly 0.5 (a logit of 0) is background for the training
    metrics and for segexp-predict alike; equal softmax maxima take the first class."""
    import tensorflow as tf

    from segexp.metrics import batch_confusion_matrix
    from segexp.models.heads import predictions_to_labels

    sigmoid = np.array([[0.5, 0.49, 0.51], [0.5, 0.0, 1.0]], np.float32)[..., None]
    expected = np.array([[0, 0, 1], [0, 0, 1]], np.uint8)
    softmax = np.array(
        [[[0.5, 0.5, 0.0], [0.2, 0.4, 0.4]], [[0.3, 0.3, 0.4], [1 / 3, 1 / 3, 1 / 3]]], np.float32
    )
    expected_softmax = np.array([[0, 1], [2, 0]], np.uint8)
    cases = [
        (threshold_model(), "sigmoid", 2, sigmoid, expected),
        (unet_like(), "softmax", 3, softmax, expected_softmax),
    ]
    for model, head, k, probs, want in cases:
        mask = predictor(model, meta_for(model, num_classes=k, head=head)).to_mask(probs)
        np.testing.assert_array_equal(mask, want)
        np.testing.assert_array_equal(predictions_to_labels(probs, head), want)
        # The metrics' graph ops: predict's mask as the truth gives a diagonal matrix.
        cm = batch_confusion_matrix(
            tf.constant(mask[None]),
            tf.constant(probs[None]),
            num_classes=k,
            head=head,
            ignore_value=None,
        ).numpy()
        assert cm.sum() == want.size and np.trace(cm) == want.size, cm
    # A user threshold keeps the same tie rule: p == threshold is background.
    model = threshold_model()
    mask = predictor(model, meta_for(model), threshold=0.25).to_mask(
        np.array([[0.25, 0.2500001, 0.1]], np.float32)[..., None]
    )
    np.testing.assert_array_equal(mask, [[0, 1, 0]])


def test_valid_padding_model_tiles_exactly():
    """Valid-padding model: 36x36 input tile -> 32x32 output tile; mirror-padded overlap-tile
    output equals the whole (mirror-padded) image prediction everywhere."""
    fixed, flexible = valid_model(36), valid_model(None)
    flexible.set_weights(fixed.get_weights())
    meta = meta_for(fixed, size=36)
    pred = predictor(fixed, meta, blend="mean", tile_overlap=0.25)
    assert pred.out_tile == (32, 32) and pred.crop == (2, 2)
    rng = np.random.default_rng(5)
    for h, w in [(90, 75), (20, 11)]:
        image = rng.random((h, w, 1)).astype(np.float32)
        tiled = pred.predict_probs(image)
        reference = flexible.predict_on_batch(inf.mirror_pad(image, (2, 2), (2, 2))[None])[0]
        assert tiled.shape == (h, w, 1)
        np.testing.assert_allclose(tiled, reference, atol=1e-5)


def test_tta_averages_flips():
    """TTA equals the mean of flipped-back predictions, and changes nothing for a
    flip-equivariant model."""
    model = unet_like(TILE, seed=2)
    meta = meta_for(model, num_classes=3, head="softmax")
    image = np.random.default_rng(7).random((TILE, TILE, 1)).astype(np.float32)
    got = predictor(model, meta, tta=True).predict_probs(image)
    x = image[None]
    manual = np.mean(
        [
            model.predict_on_batch(x),
            model.predict_on_batch(x[:, ::-1])[:, ::-1],
            model.predict_on_batch(x[:, :, ::-1])[:, :, ::-1],
            model.predict_on_batch(x[:, ::-1, ::-1])[:, ::-1, ::-1],
        ],
        axis=0,
    )[0]
    np.testing.assert_allclose(got, manual, atol=1e-5)
    plain = predictor(model, meta).predict_probs(image)
    assert np.abs(plain - got).max() > 1e-4  # this model is not flip-equivariant

    sym = symmetric_model()
    smeta = meta_for(sym, num_classes=2, head="softmax")
    big = np.random.default_rng(8).random((50, 70, 1)).astype(np.float32)
    np.testing.assert_allclose(
        predictor(sym, smeta, tta=True).predict_probs(big),
        predictor(sym, smeta).predict_probs(big),
        atol=1e-5,
    )


# --------------------------------------------------------------------------------------------
# Image conversion
# --------------------------------------------------------------------------------------------


def test_model_input_uses_the_loaders_decoding(tmp_path: Path):
    """Predict reads files with the loaders' decode.read_image: gray/RGB/RGBA/palette/16-bit
    give the same [0, 1] floats, times input_range; normalization=none keeps stored values."""
    gray = random_gray(9, 13)
    rgb = np.repeat(gray[..., None], 3, -1)
    rgba = np.concatenate([rgb, np.full((9, 13, 1), 7, np.uint8)], -1)
    Image.fromarray(gray).save(tmp_path / "g.png")
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    Image.fromarray(gray).convert("P").save(tmp_path / "p.png")
    Image.fromarray(gray.astype(np.uint16) * 257).save(tmp_path / "16.png")
    import tifffile

    tifffile.imwrite(tmp_path / "f.tif", gray.astype(np.float32))  # 0..255 floats
    expected = gray.astype(np.float32) / 255.0
    for name in ("g.png", "a.png", "p.png", "16.png", "f.tif"):
        one = outputs.model_input(tmp_path / name, 1)
        three = outputs.model_input(tmp_path / name, 3)
        assert one.shape == (9, 13, 1) and three.shape == (9, 13, 3)
        assert one.dtype == np.float32
        np.testing.assert_allclose(one[..., 0], expected, atol=1e-6, err_msg=name)
        np.testing.assert_allclose(three, np.repeat(one, 3, -1), atol=1e-6, err_msg=name)
    np.testing.assert_allclose(
        outputs.model_input(tmp_path / "g.png", 1, input_range=255.0)[..., 0], gray, atol=1e-4
    )
    np.testing.assert_array_equal(outputs.model_input(tmp_path / "g.png", 1, "none")[..., 0], gray)


# --------------------------------------------------------------------------------------------
# Loading and CLI
# --------------------------------------------------------------------------------------------


def write_images(folder: Path) -> dict[str, np.ndarray]:
    """Grayscale, RGB, RGBA and palette images of several sizes; returns name -> gray."""
    folder.mkdir(parents=True, exist_ok=True)
    grays = {}
    specs = {"big.png": (80, 80), "odd.png": (37, 53), "small.png": (12, 20), "rgb.jpg": (40, 24)}
    for name, (h, w) in specs.items():
        g = random_gray(h, w, seed=h + w)
        if name.endswith(".jpg"):
            g = np.where(g > 127, 230, 20).astype(np.uint8)  # robust to JPEG artefacts
            Image.fromarray(np.repeat(g[..., None], 3, -1)).save(folder / name, quality=95)
        else:
            Image.fromarray(g).save(folder / name)
        grays[name] = g
    g = random_gray(33, 31, seed=9)
    alpha = np.full((33, 31, 1), 100, np.uint8)
    Image.fromarray(np.concatenate([np.repeat(g[..., None], 3, -1), alpha], -1), "RGBA").save(
        folder / "rgba.png"
    )
    grays["rgba.png"] = g
    return grays


def test_cli_folder_with_corrupt_file(tmp_path: Path, capsys):
    model = threshold_model(TILE)
    model_dir = store.save_local(model, meta_for(model), tmp_path / "m")
    grays = write_images(tmp_path / "in")
    (tmp_path / "in" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\nthis is not an image")
    (tmp_path / "in" / "notes.txt").write_text("not an image, skipped")
    out = tmp_path / "out"

    code = app.main(
        [f"model={model_dir}", f"input={tmp_path / 'in'}", f"output={out}", "overlay=true"]
    )
    captured = capsys.readouterr()
    assert code == 1
    assert "bad.png" in captured.err
    assert "5 segmented" in captured.out and "1 failed (bad.png)" in captured.out
    assert not (out / "bad.png").exists()
    for name, gray in grays.items():
        stem = Path(name).stem
        mask = np.asarray(Image.open(out / f"{stem}.png"))
        assert mask.shape == gray.shape
        np.testing.assert_array_equal(mask, expected_threshold_mask(gray))
        ov = np.asarray(Image.open(out / f"{stem}_overlay.png").convert("RGB"))
        assert ov.shape == (*gray.shape, 3)
        if name.endswith(".png"):  # background keeps the image, foreground is tinted
            bg = mask == 0
            np.testing.assert_array_equal(ov[bg], np.repeat(gray[bg][:, None], 3, -1))
            assert (ov[~bg] != np.repeat(gray[~bg][:, None], 3, -1)).any(-1).mean() > 0.9


def test_cli_palette_probs_tta_and_keras_file(tmp_path: Path):
    model = threshold_model(TILE, channels=3)
    model_dir = store.save_local(model, meta_for(model, channels=3), tmp_path / "m")
    gray = random_gray(45, 70)
    Image.fromarray(gray).save(tmp_path / "x.png")
    out = tmp_path / "out"
    code = app.main(
        [
            f"model={model_dir / 'model.keras'}",
            f"input={tmp_path}/*.png",
            f"output={out}",
            "palette=true",
            "save_probs=true",
            "tta=true",
            "tile_overlap=8",
            "blend=mean",
            "batch_size=3",
        ]
    )
    assert code == 0
    img = Image.open(out / "x.png")
    assert img.mode == "P" and img.size == (70, 45)
    np.testing.assert_array_equal(np.asarray(img), expected_threshold_mask(gray))
    assert img.getpalette()[3:6] != [0, 0, 0]  # class 1 has a colour
    probs = np.load(out / "x_probs.npy")
    assert probs.shape == (45, 70, 2) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-6)
    np.testing.assert_array_equal(probs.argmax(-1), expected_threshold_mask(gray))


def test_input_range_and_none_normalization(tmp_path: Path):
    """A model that expects raw 0..255 pixels, described by input_range or normalization."""
    model = threshold_model(None)
    head = model.get_layer("head")
    head.set_weights([head.get_weights()[0] / 255.0, head.get_weights()[1]])
    gray = random_gray(21, 34)
    Image.fromarray(gray).save(tmp_path / "x.png")
    for extra in ({"input_range": 255.0}, {"normalization": "none"}):
        meta = meta_for(model, **extra)
        pred = segmenter(model, meta)
        written, failed = outputs.predict_files(
            [tmp_path / "x.png"], tmp_path / "o", pred, meta, progress=False
        )
        assert not failed
        np.testing.assert_array_equal(
            np.asarray(Image.open(written[0])), expected_threshold_mask(gray)
        )


def test_cli_errors(tmp_path: Path, capsys):
    assert app.main(["model=a", "input=b", "output=c", "colour=1"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "unknown key 'colour'" in err and "tile_overlap" in err and "tracking_uri" in err
    assert app.main(["model=a", "input=b", "output=c", "tta=maybe"]) == 2
    assert "tta" in capsys.readouterr().err
    assert app.main(["model=a", "input=b", "output=c", "mode=grid"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "mode='grid': expected one of auto, resize, tile" in err
    assert app.main(["input=b", "output=c"]) == 2
    assert "model=..." in capsys.readouterr().err
    Image.fromarray(random_gray(8, 8)).save(tmp_path / "x.png")
    assert app.main([f"model={tmp_path / 'nope'}", f"input={tmp_path}", "output=o"]) == 2
    assert "nope" in capsys.readouterr().err
    assert app.main(["--help"]) == 0
    assert "batch_size=8" in capsys.readouterr().out


def test_hydra_app_writes_only_its_outputs(tmp_path: Path, monkeypatch, capsys):
    """The Hydra app run in a working directory leaves there only what it was asked to write
    (no .hydra, log or output folder) and Hydra's job config as it found it; `--cfg job` prints
    the composed keys and runs nothing; `--help` lists the schema's defaults without starting
    TensorFlow."""
    from hydra.core.hydra_config import HydraConfig

    before = HydraConfig.instance().cfg
    model = threshold_model(TILE)
    model_dir = store.save_local(model, meta_for(model), tmp_path / "m")
    gray = random_gray(20, 36)
    Image.fromarray(gray).save(tmp_path / "x.png")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    args = [f"model={model_dir}", f"input={tmp_path / 'x.png'}", "output=out"]
    assert app.main(["--cfg", "job", *args, "batch_size=3"]) == 0
    out = capsys.readouterr().out
    assert "batch_size: 3" in out and "tile_overlap: 0.25" in out
    assert sorted(p.name for p in work.iterdir()) == []
    assert app.main(args) == 0, capsys.readouterr().err
    assert sorted(p.name for p in work.rglob("*")) == ["out", "x.png"]
    assert HydraConfig.instance().cfg is before  # a later in-process job sees no stale config
    mask = np.asarray(Image.open(work / "out" / "x.png"))
    np.testing.assert_array_equal(mask, expected_threshold_mask(gray))

    code = (
        "import sys\nfrom segexp.predict.app import main\nassert main(['--help']) == 0\n"
        "assert 'tensorflow' not in sys.modules, 'TensorFlow imported for --help'\n"
    )
    root = str(Path(__file__).resolve().parents[1])
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": root},
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "batch_size=8" in done.stdout and "tile_overlap=0.25" in done.stdout


def test_model_without_metadata_is_inferred(tmp_path: Path, capsys):
    model = unet_like(TILE)
    path = tmp_path / "plain.keras"
    model.save(path)
    loaded, meta = store.load_model_and_meta(str(path))
    assert "no segexp metadata" in capsys.readouterr().err
    assert meta["input_size"] == [TILE, TILE] and meta["channels"] == 1
    assert meta["num_classes"] == 3 and meta["head"] == "softmax"
    assert meta["required_multiple"] == 4 and meta["normalization"] == "unit"


@pytest.fixture
def mlflow_store(tmp_path: Path, monkeypatch):
    import mlflow

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    previous = mlflow.get_tracking_uri()
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    mlflow.set_tracking_uri(uri)
    exp = mlflow.create_experiment("predict-test", artifact_location=(tmp_path / "art").as_uri())
    mlflow.set_experiment(experiment_id=exp)
    yield uri
    mlflow.set_tracking_uri(previous)


def test_mlflow_runs_and_registry_uris(tmp_path: Path, mlflow_store: str, capsys):
    import mlflow

    model = threshold_model(TILE)
    meta = meta_for(model)
    with mlflow.start_run() as run:
        store.log_model(model, meta, name="model", pip_requirements=REQS)  # + meta json
    with mlflow.start_run() as plain_run:  # the contract: metadata in MLmodel only
        mlflow.keras.log_model(
            model, name="model", metadata={"segexp": meta}, pip_requirements=REQS
        )

    for run_id in (run.info.run_id, plain_run.info.run_id):
        loaded, got = store.load_model_and_meta(f"runs:/{run_id}/model")
        assert got["input_size"] == meta["input_size"] and got["head"] == "sigmoid"
        assert loaded.input_shape == (None, TILE, TILE, 1)
    logged = mlflow.search_logged_models(
        filter_string=f"source_run_id = '{run.info.run_id}'", output_format="list"
    )
    files = {Path(a.path).name for a in mlflow.artifacts.list_artifacts(logged[0].model_uri)}
    assert "segexp_meta.json" in files and "MLmodel" in files

    version = store.register_model(plain_run.info.run_id, "tiny-seg")
    assert version == 1
    _, reg_meta = store.load_model_and_meta("models:/tiny-seg/1")
    assert reg_meta["input_size"] == [TILE, TILE]

    gray = random_gray(50, 41)
    Image.fromarray(gray).save(tmp_path / "img.png")
    mlflow.set_tracking_uri("sqlite:///elsewhere.db")  # the CLI key must select the store
    code = app.main(
        [
            "model=models:/tiny-seg/1",
            f"input={tmp_path / 'img.png'}",
            f"output={tmp_path / 'out'}",
            f"tracking_uri={mlflow_store}",
        ]
    )
    assert code == 0, capsys.readouterr().err
    mask = np.asarray(Image.open(tmp_path / "out" / "img.png"))
    np.testing.assert_array_equal(mask, expected_threshold_mask(gray))
    assert (
        app.main(
            [
                "model=models:/missing/3",
                f"input={tmp_path}",
                "output=o",
                f"tracking_uri={mlflow_store}",
            ]
        )
        == 2
    )
    assert "models:/missing/3" in capsys.readouterr().err


def test_runs_uri_from_another_directory_creates_no_store(
    tmp_path: Path, mlflow_store: str, monkeypatch, capsys
):
    """Without tracking_uri, a runs:/ URI in a directory with no store is refused in one line
    naming the URI MLflow would use and the key, and no empty mlflow.db appears there; a run
    the store does not hold is one line naming the store and the key."""
    import mlflow

    model = threshold_model(TILE)
    with mlflow.start_run() as run:
        store.log_model(model, meta_for(model), name="model", pip_requirements=REQS)
    Image.fromarray(random_gray(8, 8)).save(tmp_path / "x.png")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    mlflow.set_tracking_uri(None)  # MLflow's default: sqlite:///mlflow.db in the cwd
    args = [f"model=runs:/{run.info.run_id}/model", f"input={tmp_path / 'x.png'}", "output=o"]
    assert app.main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "no tracking store at" in err and "mlflow.db" in err and "tracking_uri=" in err
    assert sorted(p.name for p in elsewhere.iterdir()) == []

    missing = "0123456789abcdef0123456789abcdef"
    code = app.main([f"model=runs:/{missing}/model", *args[1:], f"tracking_uri={mlflow_store}"])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert mlflow_store in err and "tracking_uri=" in err and missing in err
    assert sorted(p.name for p in elsewhere.iterdir()) == []
