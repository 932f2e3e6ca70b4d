"""Convolutional autoencoder with a small latent code (lecture notes, article 004).

Encoder: one stride-2 conv per entry of ``encoder_filters`` (ReLU, same padding), then the
``latent`` conv (linear, valid padding) whose kernel covers the whole remaining map, so the code
is ``[1, 1, latent_dim]``. Decoder mirrors it: a valid transposed conv back to the map size, one
stride-2 transposed conv per remaining encoder level, and the ``head`` transposed conv to the
image channels. The encoder sub-model is ``keras.Model(model.input,
model.get_layer("latent").output)`` (see :func:`segexp.models.encoder_model`).
"""

from __future__ import annotations

import keras
from keras import layers

from segexp.config.schema.model import AutoencoderConf
from segexp.errors import ConfigError
from segexp.models.common import as_int, keras_activation
from segexp.models.heads import resolve_head

LATENT_LAYER = "latent"


def build_autoencoder(
    cfg: AutoencoderConf, input_shape: tuple[int, int, int], num_classes: int | None = None
) -> keras.Model:
    """Build the convolutional autoencoder; output has the input's shape."""
    height, width, channels = (int(v) for v in input_shape)
    filters = cfg.encoder_filters
    if (
        not isinstance(filters, list | tuple)
        or not filters
        or any(not isinstance(f, int) or isinstance(f, bool) or f < 1 for f in filters)
    ):
        raise ConfigError(f"model.encoder_filters={filters!r}: expected a list of positive ints")
    factor = 2 ** len(filters)
    if height % factor or width % factor:
        raise ConfigError(
            f"model.input_shape={list(input_shape)}: H and W must be divisible by {factor} "
            f"for {len(filters)} stride-2 encoder convs"
        )
    kernel = as_int(cfg.kernel_size, "kernel_size", minimum=1)
    latent_dim = as_int(cfg.latent_dim, "latent_dim", minimum=1)
    out_kernel = as_int(cfg.output_kernel_size, "output_kernel_size", minimum=1)
    act = keras_activation(cfg.activation)
    head = resolve_head(cfg.head, num_classes or 2, "reconstruction")
    if head == "softmax":
        raise ConfigError("model.head='softmax': an autoencoder head is linear or sigmoid")
    code_hw = (height // factor, width // factor)

    inputs = keras.Input(shape=(height, width, channels), name="image")
    x = inputs
    for i, f in enumerate(filters):
        x = layers.Conv2D(
            f, kernel, strides=2, padding="same", activation=act, name=f"enc{i}_conv"
        )(x)
    x = layers.Conv2D(latent_dim, code_hw, padding="valid", name=LATENT_LAYER)(x)
    x = layers.Conv2DTranspose(
        filters[-1], code_hw, padding="valid", activation=act, name="dec_expand"
    )(x)
    for i in reversed(range(len(filters) - 1)):
        x = layers.Conv2DTranspose(
            filters[i], kernel, strides=2, padding="same", activation=act, name=f"dec{i}_up"
        )(x)
    outputs = layers.Conv2DTranspose(
        channels,
        out_kernel,
        strides=2,
        padding="same",
        activation=keras_activation(head),
        dtype="float32",
        name="head",
    )(x)
    return keras.Model(inputs, outputs, name=cfg.name or "autoencoder")
