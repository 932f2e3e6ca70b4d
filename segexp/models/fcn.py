"""FCN-8s-style segmentation head on a VGG16 encoder (lecture notes, article 004).

Layout: VGG16 without its dense top (``block1_conv1`` .. ``block5_pool``), then ``fc6`` (a
``fc_kernel_size`` conv with ``fc_filters`` filters, ReLU), ``fc7`` (1x1, ReLU), ``score`` (1x1,
``num_classes`` channels), ``up_pool4`` (4x4 stride-2 transposed conv to the channels of
``block4_pool``) added to ``block4_pool``, ``up_pool3`` (likewise) added to ``block3_pool``, and the
``head``: a 16x16 stride-8 transposed conv back to the input size. VGG16 weights are never
downloaded: ``weights`` is null (random init) or a local ``.h5``/``.keras`` weights file.
"""

from __future__ import annotations

from pathlib import Path

import keras
from keras import layers

from segexp.config.schema.model import FCNConf
from segexp.errors import ConfigError
from segexp.models.common import as_int, head_channels, keras_activation, resolve_task
from segexp.models.heads import resolve_head


def load_vgg16(weights: str | None, input_shape: tuple[int, int, int]) -> keras.Model:
    """VGG16 without its top, randomly initialised or loaded from a local weights file."""
    vgg = keras.applications.VGG16(include_top=False, weights=None, input_shape=input_shape)
    if weights:
        path = Path(str(weights)).expanduser()
        if not path.is_file():
            raise ConfigError(
                f"model.weights={str(weights)!r}: file not found; expected a local VGG16 "
                ".h5/.keras weights file (weights are never downloaded)"
            )
        try:
            vgg.load_weights(str(path))
        except Exception as err:  # noqa: BLE001 - any reader error becomes one config line
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ConfigError(
                f"model.weights={str(path)!r}: cannot load VGG16 (no top) weights: {first}"
            ) from None
    return vgg


def build_fcn8_vgg16(
    cfg: FCNConf, input_shape: tuple[int, int, int], num_classes: int
) -> keras.Model:
    """Build the FCN-8s-style network of article 004 on VGG16."""
    if resolve_task(cfg.task) != "segmentation":
        raise ConfigError("model.task: the fcn8_vgg16 builder supports only segmentation")
    height, width, channels = (int(v) for v in input_shape)
    if height % 32 or width % 32 or channels != 3:
        raise ConfigError(
            f"model.input_shape={list(input_shape)}: fcn8_vgg16 needs H and W divisible by 32 "
            "and 3 channels"
        )
    head = resolve_head(cfg.head, num_classes)
    fc_filters = as_int(cfg.fc_filters, "fc_filters", minimum=1)
    fc_kernel = as_int(cfg.fc_kernel_size, "fc_kernel_size", minimum=1)
    vgg = load_vgg16(cfg.weights, (height, width, channels))
    vgg.trainable = not cfg.freeze_encoder

    pool3 = vgg.get_layer("block3_pool").output
    pool4 = vgg.get_layer("block4_pool").output
    x = vgg.get_layer("block5_pool").output
    x = layers.Conv2D(fc_filters, fc_kernel, padding="same", activation="relu", name="fc6")(x)
    x = layers.Conv2D(fc_filters, 1, padding="same", activation="relu", name="fc7")(x)
    score_act = keras_activation(cfg.score_activation)
    x = layers.Conv2D(num_classes, 1, padding="same", activation=score_act, name="score")(x)
    x = layers.Conv2DTranspose(int(pool4.shape[-1]), 4, strides=2, padding="same", name="up_pool4")(
        x
    )
    x = layers.Add(name="fuse_pool4")([x, pool4])
    x = layers.Conv2DTranspose(int(pool3.shape[-1]), 4, strides=2, padding="same", name="up_pool3")(
        x
    )
    x = layers.Add(name="fuse_pool3")([x, pool3])
    outputs = layers.Conv2DTranspose(
        head_channels(head, num_classes),
        16,
        strides=8,
        padding="same",
        activation=keras_activation(head),
        dtype="float32",
        name="head",
    )(x)
    return keras.Model(vgg.inputs, outputs, name=cfg.name or "fcn8_vgg16")
