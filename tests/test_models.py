"""Model builders and presets: exact article parameter counts, heads, BatchNorm, dropout, I/O."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import keras
import numpy as np
import pytest
from omegaconf import DictConfig, OmegaConf

from segexp.config.schema.model import UNetConf
from segexp.errors import ConfigError
from segexp.models import (
    build_model,
    encoder_model,
    input_range,
    load_preset,
    output_crop,
    param_counts,
    preset_dir,
    preset_input_shape,
    preset_names,
    resolve_model_head,
)
from segexp.models.cli import main as models_main

# preset -> (trainable, total) at the preset's own input size and class count.
EXPECTED = {
    "unet_original": (34_512_193, 34_512_193),
    "unet_valid_transpose": (5_460_163, 5_460_163),
    "unet_blocks32": (8_630_563, 8_630_563),
    "unet_nuclei": (1_941_105, 1_941_105),
    "fcn8_vgg16": (121_799_428, 136_514_116),
    "cae_mnist": (51_459, 51_459),
}
UNET_PRESETS = [
    "unet_small",
    "unet_original",
    "unet_valid_transpose",
    "unet_blocks32",
    "unet_nuclei",
]
# Reduced sizes at which each U-Net preset still builds (the valid-conv one needs 64).
SMALL = {name: 32 for name in UNET_PRESETS} | {"unet_valid_transpose": 64}
SPEC_UNET_KEYS = {
    "name", "source", "input_shape", "depth", "filters", "kernel_size", "kernel_initializer",
    "activation", "padding", "batchnorm", "dropout", "upsampling", "head", "task",
}  # fmt: skip


def preset(name: str, *dotlist: str) -> DictConfig:
    """A preset with Hydra-style ``key=value`` overrides applied."""
    return OmegaConf.merge(load_preset(name), OmegaConf.from_dotlist(list(dotlist)))


def small_unet(name: str, *dotlist: str, classes: int = 3) -> keras.Model:
    size = SMALL[name]
    channels = 3 if name != "unet_original" else 1
    return build_model(preset(name, "input_shape=null", *dotlist), (size, size, channels), classes)


def consumers(model: keras.Model) -> dict[str, list[tuple[str, str]]]:
    """layer name -> [(class name, name) of the layers that take its output]."""

    def sources(obj: Any) -> list[str]:
        if isinstance(obj, dict):
            if "keras_history" in obj:
                return [obj["keras_history"][0]]
            return [s for v in obj.values() for s in sources(v)]
        if isinstance(obj, list | tuple):
            return [s for v in obj for s in sources(v)]
        return []

    out: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for layer in model.get_config()["layers"]:
        for src in sources(layer["inbound_nodes"]):
            out[src].append((layer["class_name"], layer["name"]))
    return out


# --- presets and exact counts --------------------------------------------------------------


def test_all_article_presets_exist() -> None:
    assert set(EXPECTED) | {"unet_small"} <= set(preset_names())


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_preset_param_counts_are_exact(name: str) -> None:
    cfg = load_preset(name)
    model = build_model(cfg, preset_input_shape(cfg), cfg.get("num_classes"))
    assert param_counts(model) == EXPECTED[name]
    assert tuple(model.input_shape[1:]) == tuple(cfg.input_shape)
    # Every article network keeps the input size at its own input size.
    assert tuple(model.output_shape[1:3]) == tuple(cfg.input_shape[:2])
    assert output_crop(model) == (0, 0)


def test_unet_small_counts_and_default_shape() -> None:
    model = build_model(load_preset("unet_small"), (32, 32, 1), 3)
    assert param_counts(model) == (481_779, 481_779)  # counts do not depend on the image size
    assert model.output_shape == (None, 32, 32, 3)
    binary = build_model(load_preset("unet_small"), (64, 64, 1), 2)  # the default run, the CLI
    assert param_counts(binary) == (481_745, 481_745)
    assert binary.output_shape == (None, 64, 64, 1)


@pytest.mark.parametrize("name", UNET_PRESETS)
def test_unet_presets_are_the_schema_defaults_plus_their_own_values(name: str) -> None:
    cfg = load_preset(name)
    assert cfg.builder == "unet" and OmegaConf.get_type(cfg) is UNetConf
    assert set(cfg.keys()) >= SPEC_UNET_KEYS
    written = OmegaConf.load(preset_dir() / f"{name}.yaml")
    for key in cfg:
        expected = written[key] if key in written else getattr(UNetConf(), key)
        assert cfg[key] == expected, key


def test_unet_schema_defaults_build_the_four_level_unet() -> None:
    model = build_model({"name": "plain", "input_shape": [64, 64, 1]}, num_classes=2)
    # depth 4, 64..1024 filters, 2 same-padded 3x3 convs per block, 2x2 transposed up-convs
    assert len([layer for layer in model.layers if "_pool" in layer.name]) == 4
    assert model.get_layer("bottleneck_conv2").filters == 1024
    assert model.get_layer("dec0_up").kernel_size == (2, 2)
    assert model.output_shape == (None, 64, 64, 1)


def test_valid_transpose_matches_article_shapes() -> None:
    model = build_model(load_preset("unet_valid_transpose"))
    shapes = {layer.name: tuple(layer.output.shape[1:3]) for layer in model.layers}
    assert shapes["enc0_conv2"] == (124, 124)
    assert shapes["enc1_conv2"] == (60, 60)  # the article's one padded encoder conv
    assert shapes["enc2_conv2"] == (26, 26)
    assert shapes["bottleneck_conv1"] == (11, 11)
    assert shapes["dec2_up"] == (13, 13)
    assert shapes["dec0_conv2"] == (128, 128)
    assert isinstance(model.get_layer("dec0_conv1"), keras.layers.Conv2DTranspose)
    assert not [layer for layer in model.layers if isinstance(layer, keras.layers.Cropping2D)]


# --- heads ---------------------------------------------------------------------------------


def test_binary_head_is_one_channel_sigmoid_float32() -> None:
    model = small_unet("unet_small", classes=2)
    assert model.output_shape == (None, 32, 32, 1)
    head = model.get_layer("head")
    assert head.activation.__name__ == "sigmoid"
    pred = model.predict(np.random.rand(2, 32, 32, 3).astype("float32"), verbose=0)
    assert pred.dtype == np.float32
    assert pred.min() >= 0.0 and pred.max() <= 1.0
    assert resolve_model_head(load_preset("unet_small"), 2) == "sigmoid"


def test_multiclass_head_is_softmax() -> None:
    model = small_unet("unet_blocks32", classes=4)
    assert model.output_shape == (None, 32, 32, 4)
    pred = model.predict(np.random.rand(2, 32, 32, 3).astype("float32"), verbose=0)
    np.testing.assert_allclose(pred.sum(axis=-1), 1.0, rtol=1e-5)
    assert resolve_model_head(load_preset("fcn8_vgg16"), 2) == "softmax"


def test_head_stays_float32_under_mixed_precision() -> None:
    keras.mixed_precision.set_dtype_policy("mixed_float16")
    try:
        model = small_unet("unet_small", classes=3)
        assert model.get_layer("enc0_conv1").compute_dtype == "float16"
        assert model.output.dtype == "float32"
    finally:
        keras.mixed_precision.set_dtype_policy("float32")


# --- BatchNorm and dropout overrides -------------------------------------------------------


@pytest.mark.parametrize("name", UNET_PRESETS)
def test_batchnorm_follows_every_conv(name: str) -> None:
    model = small_unet(name, "batchnorm=true")
    used_by = consumers(model)
    convs = [
        layer.name
        for layer in model.layers
        if isinstance(layer, keras.layers.Conv2D | keras.layers.Conv2DTranspose)
        and layer.name != "head"
    ]
    assert len(convs) > 5
    for conv in convs:
        assert used_by[conv] == [("BatchNormalization", f"{conv}_bn")], conv
        assert model.get_layer(conv).activation.__name__ == "linear"
    n_bn = sum(isinstance(layer, keras.layers.BatchNormalization) for layer in model.layers)
    assert n_bn == len(convs)
    plain = small_unet(name)
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in plain.layers)


def test_dropout_override_scalar_reaches_every_level() -> None:
    model = small_unet("unet_original", "dropout=0.3")
    rates = {layer.name: layer.rate for layer in model.layers if "dropout" in layer.name}
    assert rates == {f"enc{i}_dropout": 0.3 for i in range(4)} | {"bottleneck_dropout": 0.3}


def test_dropout_placements_follow_the_articles() -> None:
    original = small_unet("unet_original")
    assert {layer.name: layer.rate for layer in original.layers if "dropout" in layer.name} == {
        "enc3_dropout": 0.5,
        "bottleneck_dropout": 0.5,
    }
    # Article 000: the skip keeps the features before dropout; article 002: after.
    assert ("Concatenate", "dec3_concat") in consumers(original)["enc3_conv2"]
    blocks = small_unet("unet_blocks32")
    assert ("Concatenate", "dec3_concat") in consumers(blocks)["enc3_dropout"]
    nuclei = small_unet("unet_nuclei", classes=2)
    used_by = consumers(nuclei)
    assert used_by["enc0_conv1"] == [("Dropout", "enc0_dropout")]
    assert used_by["dec0_conv1"] == [("Dropout", "dec0_dropout")]
    assert nuclei.get_layer("bottleneck_dropout").rate == 0.3
    assert nuclei.get_layer("dec2_dropout").rate == 0.2


def test_dropout_override_list_and_zero() -> None:
    model = small_unet("unet_nuclei", "dropout=[0.0,0.0,0.0,0.0,0.4]", classes=2)
    names = [layer.name for layer in model.layers if isinstance(layer, keras.layers.Dropout)]
    assert names == ["bottleneck_dropout"]
    none = small_unet("unet_blocks32", "dropout=0.0")
    assert not any(isinstance(layer, keras.layers.Dropout) for layer in none.layers)


@pytest.mark.parametrize("name", UNET_PRESETS)
def test_hydra_overrides_reach_every_unet_preset(name: str) -> None:
    from hydra import compose, initialize_config_dir

    from segexp.models import preset_dir

    overrides = [f"model={name}", "model.batchnorm=true", "model.dropout=0.25"]
    with initialize_config_dir(str(preset_dir().parent), version_base=None):
        cfg = compose("train", overrides=overrides)
    assert cfg.model.batchnorm is True and cfg.model.dropout == 0.25
    assert cfg.model.name == name


# --- rescaling, saving ---------------------------------------------------------------------


def test_nuclei_rescaling_layer_and_safe_mode_reload(tmp_path) -> None:
    cfg = load_preset("unet_nuclei")
    assert input_range(cfg) == 255.0
    assert input_range(load_preset("unet_small")) == 1.0
    model = small_unet("unet_nuclei", classes=2)
    rescale = model.get_layer("rescale")
    assert isinstance(rescale, keras.layers.Rescaling)
    assert rescale.scale == pytest.approx(1 / 255)
    assert not any(isinstance(layer, keras.layers.Lambda) for layer in model.layers)
    path = tmp_path / "nuclei.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    x = np.random.rand(2, 32, 32, 3).astype("float32") * 255
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)


# --- valid padding -------------------------------------------------------------------------


def test_valid_padding_output_crop_and_training() -> None:
    import tensorflow as tf

    from segexp.data.pipeline import make_dataset

    model = build_model(preset("unet_small", "padding=valid", "depth=2"), (64, 64, 1), 3)
    assert model.output_shape == (None, 24, 24, 3)
    crop = output_crop(model)
    assert crop == (20, 20)
    rng = np.random.default_rng(0)
    images = rng.random((4, 64, 64, 1), dtype=np.float32)
    masks = rng.integers(0, 3, (4, 64, 64, 1)).astype("int32")
    ds = make_dataset(
        tf.data.Dataset.from_tensor_slices((images, masks)),
        batch_size=2,
        training=True,
        seed=0,
        mask_crop=crop,
    )
    assert tuple(next(iter(ds))[1].shape) == (2, 24, 24, 1)
    model.compile(
        optimizer="adam",
        loss="sparse_categorical_crossentropy",
        jit_compile=False,
        run_eagerly=True,
    )
    history = model.fit(ds, epochs=1, verbose=0, shuffle=False)
    assert np.isfinite(history.history["loss"][0])


def test_output_crop_rejects_odd_difference() -> None:
    inputs = keras.Input((33, 33, 1))
    model = keras.Model(inputs, keras.layers.Conv2D(2, 2, padding="valid")(inputs))  # 33 -> 32
    with pytest.raises(ConfigError, match="center-cropped"):
        output_crop(model)


def _classic_unet_output(n: int, depth: int) -> int | None:
    """Ronneberger et al.'s size rule, written out independently of the builder: two unpadded
    3x3 convs (-4) per level, 2x2 pooling that must not floor, 2x2 up-convolutions (x2), and
    skips cropped evenly; None where the input size does not fit."""
    skips = []
    for _ in range(depth):
        n -= 4
        if n < 2 or n % 2:
            return None
        skips.append(n)
        n //= 2
    n -= 4
    for skip in reversed(skips):
        n *= 2
        if n < 1 or n > skip or (skip - n) % 2:
            return None
        n -= 4
    return n if n >= 1 else None


VALID_4 = ("padding=valid", "depth=4", "filters=2", "upsampling=transpose", "up_kernel_size=2")


def test_valid_padding_original_unet_sizes() -> None:
    assert _classic_unet_output(572, 4) == 388  # the paper's figure 1
    model = build_model(preset("unet_small", *VALID_4), (572, 572, 1), 2)
    assert model.output_shape[1:3] == (388, 388)
    assert output_crop(model) == (92, 92)
    fits = [n for n in range(100, 700) if _classic_unet_output(n, 4) is not None]
    assert 572 in fits and fits[1] - fits[0] == 16  # valid sizes come every 2**depth pixels
    below = max(n for n in fits if n < 570)
    above = min(n for n in fits if n > 570)
    with pytest.raises(ConfigError) as err:
        build_model(preset("unet_small", *VALID_4), (570, 572, 1), 2)
    message = str(err.value)
    assert "\n" not in message and "input height 570" in message
    assert f"nearest valid heights: {below} or {above}" in message
    assert "model.input_shape" in message


def test_valid_padding_refuses_128_with_the_nearest_sizes() -> None:
    """unet_small (depth 3) at 128x128 would pool an odd map: refused, nearest sizes named."""
    depth = int(load_preset("unet_small").depth)
    fits = [n for n in range(1, 400) if _classic_unet_output(n, depth) is not None]
    assert _classic_unet_output(128, depth) is None
    below, above = max(n for n in fits if n < 128), min(n for n in fits if n > 128)
    vt = ("padding=valid", "upsampling=transpose", "up_kernel_size=2")
    with pytest.raises(ConfigError, match=f"nearest valid widths: {below} or {above}"):
        build_model(preset("unet_small", *vt), (above, 128, 1), 2)
    model = build_model(preset("unet_small", *vt), (above, below, 1), 2)
    expected = (_classic_unet_output(above, depth), _classic_unet_output(below, depth))
    assert model.output_shape[1:3] == expected


# --- every preset trains one epoch at reduced size -----------------------------------------


@pytest.mark.parametrize("name", UNET_PRESETS)
def test_unet_preset_fits_one_epoch(name: str) -> None:
    classes = int(load_preset(name).get("num_classes") or 3)
    model = small_unet(name, classes=classes)
    size, channels = SMALL[name], model.input_shape[-1]
    rng = np.random.default_rng(1)
    x = rng.random((4, size, size, channels), dtype=np.float32)
    y = rng.integers(0, classes, (4, size, size, 1)).astype("int32")
    loss = "binary_crossentropy" if classes == 2 else "sparse_categorical_crossentropy"
    model.compile(optimizer="adam", loss=loss, jit_compile=False, run_eagerly=True)
    before = [w.copy() for w in model.get_weights()]
    history = model.fit(x, y.astype("float32") if classes == 2 else y, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert any(not np.allclose(a, b) for a, b in zip(before, model.get_weights(), strict=True))


# --- FCN on VGG16 --------------------------------------------------------------------------


def test_fcn_small_frozen_and_trains() -> None:
    cfg = preset("fcn8_vgg16", "input_shape=[32,32,3]", "fc_filters=16")
    model = build_model(cfg, num_classes=2)
    assert model.output_shape == (None, 32, 32, 2)
    assert not model.get_layer("block1_conv1").trainable
    assert model.get_layer("score").activation.__name__ == "linear"
    trainable, total = param_counts(model)
    assert total - trainable == 14_714_688
    model.compile(
        optimizer="adam",
        loss="sparse_categorical_crossentropy",
        jit_compile=False,
        run_eagerly=True,
    )
    frozen = model.get_layer("block5_conv3").get_weights()[0].copy()
    x = np.random.rand(2, 32, 32, 3).astype("float32")
    y = np.random.randint(0, 2, (2, 32, 32, 1)).astype("int32")
    history = model.fit(x, y, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    np.testing.assert_array_equal(model.get_layer("block5_conv3").get_weights()[0], frozen)
    unfrozen = build_model(preset("fcn8_vgg16", "input_shape=[32,32,3]", "fc_filters=16",
                                  "freeze_encoder=false"))  # fmt: skip
    assert param_counts(unfrozen)[0] == param_counts(unfrozen)[1]


def test_fcn_weights_from_local_file(tmp_path) -> None:
    vgg = keras.applications.VGG16(include_top=False, weights=None, input_shape=(32, 32, 3))
    path = tmp_path / "vgg16_notop.weights.h5"
    vgg.save_weights(path)
    model = build_model(
        preset("fcn8_vgg16", "input_shape=[32,32,3]", "fc_filters=8", f"weights={path}")
    )
    np.testing.assert_array_equal(
        model.get_layer("block1_conv1").get_weights()[0],
        vgg.get_layer("block1_conv1").get_weights()[0],
    )


def test_fcn_missing_weights_file_is_one_line_config_error(tmp_path) -> None:
    missing = tmp_path / "nope.h5"
    with pytest.raises(ConfigError) as info:
        build_model(preset("fcn8_vgg16", "input_shape=[32,32,3]", f"weights={missing}"))
    assert "model.weights" in str(info.value) and "\n" not in str(info.value)


# --- autoencoder ---------------------------------------------------------------------------


def test_autoencoder_latent_and_reconstruction_training() -> None:
    model = build_model(load_preset("cae_mnist"))
    assert model.output_shape == (None, 28, 28, 1)
    assert model.get_layer("head").activation.__name__ == "linear"
    encoder = encoder_model(model)
    assert encoder.output_shape == (None, 1, 1, 2)
    x = np.random.rand(8, 28, 28, 1).astype("float32")
    model.compile(optimizer="adam", loss="mse", jit_compile=False, run_eagerly=True)
    history = model.fit(x, x, epochs=1, batch_size=4, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert encoder.predict(x, verbose=0).reshape(-1, 2).shape == (8, 2)


# --- a user's own builder by `_target_` ---------------------------------------------------


def tiny_net(cfg: UNetConf, input_shape: tuple[int, int, int], num_classes: int) -> keras.Model:
    """A user's builder with the shared signature: one conv of ``cfg.filters`` channels."""
    inputs = keras.Input(input_shape)
    x = keras.layers.Conv2D(cfg.filters, 3, padding="same", activation=cfg.activation)(inputs)
    outputs = keras.layers.Conv2D(num_classes, 1, activation="softmax", name="head")(x)
    return keras.Model(inputs, outputs, name=f"tiny_{cfg.name}")


def test_presets_name_their_builder_function_as_target() -> None:
    from segexp.models.autoencoder import build_autoencoder
    from segexp.models.fcn import build_fcn8_vgg16
    from segexp.models.unet import build_unet

    functions = {
        "unet": build_unet,
        "fcn8_vgg16": build_fcn8_vgg16,
        "autoencoder": build_autoencoder,
    }
    for name in preset_names():
        cfg = load_preset(name)
        module, _, function = cfg._target_.rpartition(".")
        assert getattr(__import__(module, fromlist=[function]), function) is functions[cfg.builder]


def test_target_override_builds_a_users_model_from_the_builders_keys(compose) -> None:
    cfg = compose(["model=unet_small", f"model._target_={__name__}.tiny_net", "model.filters=5"])
    model = build_model(cfg.model, (16, 16, 1), 3)
    assert model.name == "tiny_unet_small"
    # 3x3 conv to 5 channels plus a 1x1 conv to 3 classes: (9 * 1 + 1) * 5 + (5 + 1) * 3
    assert param_counts(model) == (68, 68)
    assert model.layers[1].activation.__name__ == "relu"  # the unet schema's default, passed on
    assert model.output_shape == (None, 16, 16, 3)


@pytest.mark.parametrize(
    ("target", "match"),
    [("mypkg.no_such_net", "Error locating target 'mypkg.no_such_net'"), ("os", "callable")],
)
def test_bad_target_is_a_one_line_config_error(target: str, match: str) -> None:
    with pytest.raises(ConfigError, match=f"model._target_='{target}'.*{match}") as err:
        build_model(preset("unet_small", f"_target_={target}"), (16, 16, 1), 2)
    assert "\n" not in str(err.value)


# --- errors --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dotlist", "match"),
    [
        (["padding_overrides={enc9_conv1: same}"], "padding_overrides"),
        (["dropout=[0.1,0.2]"], "model.dropout"),
        (["head=relu"], "model.head"),
        (["upsampling=bilinear"], "model.upsampling"),
        (["depth=6"], "too small"),
        (["builder=resnet"], "model.builder"),
    ],
)
def test_bad_unet_config_is_config_error(dotlist: list[str], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        build_model(preset("unet_small", *dotlist), (32, 32, 1), 3)


# --- CLI -----------------------------------------------------------------------------------


def _table_rows(out: str, names: list[str]) -> None:
    for name in names:
        trainable, total = EXPECTED[name]
        row = next(line for line in out.splitlines() if line.startswith(name + " "))
        assert f"{trainable:,}" in row and f"{total:,}" in row, row


def test_cli_table_lists_every_preset_with_exact_counts(capsys) -> None:
    # Builds every preset once, the 136 M-parameter FCN included (a few seconds on CPU).
    assert models_main([]) == 0
    out = capsys.readouterr().out
    header = out.splitlines()[0].split()
    assert header == ["name", "source", "input", "classes", "trainable", "total"]
    _table_rows(out, sorted(EXPECTED))
    assert "224x224x3" in out and "128x128x3" in out and "28x28x1" in out
    assert "64x64x1*" in out  # unet_small takes the dataset's size; the footnote says so


def test_cli_summary_and_unknown_preset(capsys) -> None:
    assert models_main(["unet_nuclei"]) == 0
    out = capsys.readouterr().out
    assert "Total params: 1,941,105" in out and "rescale (Rescaling)" in out
    assert models_main(["no_such_model"]) == 2
    err = capsys.readouterr().err
    assert "no_such_model" in err and err.count("\n") == 1
