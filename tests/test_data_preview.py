"""segexp-preview: the PNG grid, the Hydra app and its one-line errors."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from PIL import Image

from segexp import preview


def test_render_preview_applies_augment_and_writes_png(tmp_path):
    import tensorflow as tf

    images = np.random.default_rng(0).random((5, 16, 16, 1)).astype(np.float32)
    masks = np.zeros((5, 16, 16, 1), np.int32)
    masks[:, 4:8] = 1
    masks[:, 0] = 255
    ds = tf.data.Dataset.from_tensor_slices((images, masks))
    seen = []

    def augment(image, mask, seed):
        seen.append(seed.numpy().tolist())
        return tf.image.flip_left_right(image), tf.image.flip_left_right(mask)

    out = preview.render_preview(
        ds,
        ["bg", "fg"],
        3,
        tmp_path / "sub" / "p.png",
        augment=augment,
        seed=5,
        ignore_value=255,
        title="t",
    )
    assert out.exists() and Image.open(out).size[0] > 100
    assert seen == [[5, 0], [5, 1], [5, 2]]
    rgba = preview.overlay(masks[0, ..., 0], 2, 255)
    assert rgba[0, 0, 3] == pytest.approx(0.85) and rgba[5, 5, 3] > 0 and rgba[10, 10, 3] == 0


def _folder(tmp_path):
    for d in ("img", "gt"):
        (tmp_path / d).mkdir()
    for i in range(4):
        Image.fromarray(np.full((12, 12, 3), 30 * i, np.uint8)).save(tmp_path / "img" / f"{i}.png")
        m = np.zeros((12, 12), np.uint8)
        m[3:6] = 255
        Image.fromarray(m).save(tmp_path / "gt" / f"{i}.png")


def test_preview_uses_training_overrides(tmp_path):
    _folder(tmp_path)
    out = tmp_path / "look.png"
    with initialize_config_dir(config_dir=preview.CONF_DIR, version_base=None):
        cfg = compose(
            "preview",
            overrides=[
                "dataset=folder",
                f"dataset.images={tmp_path / 'img'}",
                f"dataset.masks={tmp_path / 'gt'}",
                "dataset.image_size=[12,12]",
                "preview.n=2",
                "preview.split=val",
                f"preview.out={out}",
            ],
        )
    assert preview.input_geometry(cfg) == ((12, 12), 3)
    assert preview.preview(cfg) == out and out.exists()


def test_cli_error_is_one_line(tmp_path):
    import subprocess

    code = "from segexp.preview import main; main()"
    args = [sys.executable, "-c", code, "dataset=isbi2012", f"dataset.root={tmp_path / 'absent'}"]
    proc = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    err = [line for line in proc.stderr.strip().splitlines() if line.startswith("error:")]
    assert len(err) == 1 and "absent does not exist" in err[0] and "ISBI 2012" in err[0]
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "outputs").exists() and not list(tmp_path.glob("*.log"))


def test_preview_takes_its_defaults_and_the_run_seed_from_the_schema(monkeypatch, tmp_path):
    """No preview.* given: n, split and augment are PreviewConf's, the seed the run's (TopConf)."""
    from types import SimpleNamespace

    import segexp.data
    from segexp.config.schema.run import PreviewConf, TopConf

    seen = {}
    source = SimpleNamespace(
        name="fake",
        splits={"train": "train split"},
        labels=None,
        sizes={"train": 3},
        class_names=["bg", "fg"],
        ignore_value=None,
    )

    def fake_load(dataset_cfg, image_size, channels, seed):
        seen["load_seed"] = seed
        return source

    def fake_render(ds, class_names, n, out, **kw):
        seen.update(split=ds, n=n, seed=kw["seed"], augment=kw["augment"])
        return out

    monkeypatch.setattr(segexp.data, "load_source", fake_load)
    monkeypatch.setattr(preview, "render_preview", fake_render)
    monkeypatch.setattr(preview, "build_preview_augment", lambda cfg: "flip")
    with initialize_config_dir(config_dir=preview.CONF_DIR, version_base=None):
        cfg = compose("preview", overrides=["augmentation=flip", f"preview.out={tmp_path}/p.png"])
    preview.preview(cfg)
    assert seen == {
        "load_seed": TopConf.seed,
        "split": "train split",
        "n": PreviewConf.n,
        "seed": TopConf.seed,
        "augment": "flip",
    }
    assert (TopConf.seed, PreviewConf.n, PreviewConf.split, PreviewConf.augment) == (
        42,
        8,
        "train",
        True,
    )
