"""One configurable U-Net builder (Keras 3 functional API).

Every U-Net preset in ``conf/model/`` is a configuration of :func:`build_unet`. Layout::

    image -> [Rescaling] -> enc0 -> pool -> enc1 -> pool ... -> bottleneck
          -> up -> concat(up, skip) -> dec{depth-1} -> ... -> up -> concat -> dec0 -> head

Level ``l`` (0 = full resolution) has ``filters * 2**l`` filters (or ``filters[l]`` when
``filters`` is a list of ``depth + 1`` values); the bottleneck is level ``depth``. Layers are named
``enc{l}_conv{i}``, ``bottleneck_conv{i}``, ``dec{l}_up`` (the up-convolution), ``dec{l}_conv{i}``
(``i`` counts from 1) and ``head``; ``padding_overrides`` refers to convolutions by these names.
With ``batchnorm: true`` every convolution except the head is followed by ``<name>_bn``
(conv -> BatchNormalization -> activation). With valid padding the skip connection (or the
up-sampled map, whichever is larger) is center-cropped before the concatenation.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import layers

from segexp.config.schema.model import UNetConf
from segexp.errors import ConfigError
from segexp.models.common import as_choice, as_int, head_channels, keras_activation, resolve_task
from segexp.models.heads import resolve_head
from segexp.models.valid_sizes import check_valid_size

UPSAMPLING_MODES = ("transpose", "resize", "transpose_resize")
DROPOUT_POSITIONS = ("block_end", "after_first_conv")


def _kernel(value: Any, key: str) -> tuple[int, int]:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return (value, value)
    if (
        isinstance(value, list | tuple)
        and len(value) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)
    ):
        return (int(value[0]), int(value[1]))
    raise ConfigError(f"model.{key}={value!r}: expected a positive integer or [height, width]")


def _per_level(value: Any, n: int, key: str, default: int, minimum: int) -> tuple[int, ...]:
    if value is None:
        value = default
    if isinstance(value, int) and not isinstance(value, bool):
        values = [value] * n
    elif isinstance(value, list | tuple):
        values = list(value)
    else:
        values = []
    if len(values) != n or any(
        not isinstance(v, int) or isinstance(v, bool) or v < minimum for v in values
    ):
        raise ConfigError(
            f"model.{key}={value!r}: expected an integer >= {minimum} or a list of {n} of them"
        )
    return tuple(values)


def _rates(value: Any, n: int) -> tuple[float, ...]:
    if value is None:
        value = 0.0
    values = list(value) if isinstance(value, list | tuple) else [value] * n
    ok = len(values) == n and all(
        isinstance(v, int | float) and not isinstance(v, bool) and 0.0 <= v < 1.0 for v in values
    )
    if not ok:
        raise ConfigError(
            f"model.dropout={value!r}: expected a rate in [0, 1) or a list of {n} rates "
            "(levels 0..depth-1, then the bottleneck)"
        )
    return tuple(float(v) for v in values)


class UNetBuilder:
    """Holds the parsed U-Net settings while the functional graph is assembled."""

    def __init__(self, cfg: UNetConf):
        self.depth = as_int(cfg.depth, "depth", minimum=1)
        if isinstance(cfg.filters, list | tuple):
            self.filters = _per_level(cfg.filters, self.depth + 1, "filters", 64, 1)
        else:
            base = as_int(cfg.filters, "filters", minimum=1)
            self.filters = tuple(base * 2**level for level in range(self.depth + 1))
        per_block = as_int(cfg.convs_per_block, "convs_per_block", minimum=1)
        self.encoder_convs = _per_level(
            cfg.encoder_convs, self.depth, "encoder_convs", per_block, 1
        )
        self.bottleneck_convs = _per_level(
            cfg.bottleneck_convs, 1, "bottleneck_convs", per_block, 1
        )[0]
        self.decoder_convs = _per_level(
            cfg.decoder_convs, self.depth, "decoder_convs", per_block, 0
        )
        self.kernel_size = _kernel(cfg.kernel_size, "kernel_size")
        self.up_kernel_size = _kernel(cfg.up_kernel_size, "up_kernel_size")
        self.pool_size = as_int(cfg.pool_size, "pool_size", minimum=1)
        self.initializer = cfg.kernel_initializer or "he_normal"
        self.activation = keras_activation(cfg.activation)
        self.up_activation = keras_activation(cfg.up_activation)
        self.padding = as_choice(cfg.padding, "padding", ("same", "valid"))
        overrides = cfg.padding_overrides or {}
        if any(v not in ("same", "valid") for v in overrides.values()):
            raise ConfigError(
                f"model.padding_overrides={overrides!r}: expected a mapping "
                "layer name -> same|valid"
            )
        self.padding_overrides = dict(overrides)
        decoder_conv = as_choice(cfg.decoder_conv, "decoder_conv", ("conv", "transpose"))
        self.decoder_transpose = decoder_conv == "transpose"
        self.batchnorm = cfg.batchnorm
        self.dropout = _rates(cfg.dropout, self.depth + 1)
        self.dropout_position = as_choice(
            cfg.dropout_position, "dropout_position", DROPOUT_POSITIONS
        )
        self.dropout_decoder = cfg.dropout_decoder
        self.dropout_skip = cfg.dropout_skip
        self.upsampling = as_choice(cfg.upsampling, "upsampling", UPSAMPLING_MODES)
        self.rescale = cfg.rescale
        self.rescale_offset = cfg.rescale_offset or 0.0
        self.used_names: set[str] = set()

    # -- layers ---------------------------------------------------------------------------
    def conv(
        self,
        x: Any,
        filters: int,
        name: str,
        *,
        kernel: tuple[int, int] | None = None,
        transpose: bool = False,
        strides: int = 1,
        activation: str | None | bool = True,
    ) -> Any:
        """Conv (or transposed conv) -> [BN] -> activation."""
        act = self.activation if activation is True else activation
        padding = self.padding_overrides.get(name, self.padding)
        self.used_names.add(name)
        cls = layers.Conv2DTranspose if transpose else layers.Conv2D
        x = cls(
            filters,
            kernel or self.kernel_size,
            strides=strides,
            padding=padding,
            activation=None if self.batchnorm else act,
            kernel_initializer=self.initializer,
            name=name,
        )(x)
        if self.batchnorm:
            x = layers.BatchNormalization(name=f"{name}_bn")(x)
            if act is not None:
                x = layers.Activation(act, name=f"{name}_act")(x)
        return x

    def block(
        self, x: Any, filters: int, n_convs: int, rate: float, prefix: str, transpose: bool = False
    ) -> tuple[Any, Any]:
        """``n_convs`` convolutions with optional dropout; returns (output, skip features)."""
        skip = None
        for i in range(1, n_convs + 1):
            x = self.conv(x, filters, f"{prefix}_conv{i}", transpose=transpose)
            if rate > 0 and i == 1 and self.dropout_position == "after_first_conv":
                x = layers.Dropout(rate, name=f"{prefix}_dropout")(x)
        if rate > 0 and (self.dropout_position == "block_end" or n_convs == 0):
            skip = x
            x = layers.Dropout(rate, name=f"{prefix}_dropout")(x)
        if skip is None or self.dropout_skip:
            skip = x
        return x, skip

    def up(self, x: Any, filters: int, prefix: str) -> Any:
        """One up-sampling step to the next finer level."""
        name = f"{prefix}_up"
        if self.upsampling == "transpose":
            return self.conv(
                x,
                filters,
                name,
                kernel=self.up_kernel_size,
                transpose=True,
                strides=self.pool_size,
                activation=self.up_activation,
            )
        if self.upsampling == "resize":
            x = layers.UpSampling2D(self.pool_size, name=f"{prefix}_upsample")(x)
            return self.conv(
                x, filters, name, kernel=self.up_kernel_size, activation=self.up_activation
            )
        # transpose_resize: stride-1 transposed conv, then nearest-neighbour up-sampling.
        x = self.conv(
            x,
            filters,
            name,
            kernel=self.up_kernel_size,
            transpose=True,
            activation=self.up_activation,
        )
        return layers.UpSampling2D(self.pool_size, name=f"{prefix}_upsample")(x)


def _center_crop(x: Any, height: int, width: int, name: str) -> Any:
    h, w = int(x.shape[1]), int(x.shape[2])
    dh, dw = h - height, w - width
    if dh == 0 and dw == 0:
        return x
    return layers.Cropping2D(((dh // 2, dh - dh // 2), (dw // 2, dw - dw // 2)), name=name)(x)


def build_unet(cfg: UNetConf, input_shape: tuple[int, int, int], num_classes: int) -> keras.Model:
    """Build a U-Net from its typed config (keys: :class:`segexp.config.schema.model.UNetConf`).

    With valid padding, an input size at which a pooling floors an odd feature map or a skip
    connection would be cropped unevenly is a ConfigError naming the nearest valid sizes.
    """
    b = UNetBuilder(cfg)
    name = cfg.name or "unet"
    check_valid_size(b, tuple(input_shape[:2]), name)
    try:
        return _assemble(b, cfg, input_shape, num_classes)
    except ValueError as err:
        if "zero or negative" not in str(err):
            raise
        raise ConfigError(
            f"model {name}: input {list(input_shape)} is too small for "
            f"depth {b.depth} with {b.padding} padding (a feature map shrinks to nothing)"
        ) from None


def _assemble(
    b: UNetBuilder, cfg: UNetConf, input_shape: tuple[int, int, int], num_classes: int
) -> keras.Model:
    task = resolve_task(cfg.task)
    head = resolve_head(cfg.head, num_classes, task)
    inputs = keras.Input(shape=tuple(input_shape), name="image")
    x = inputs
    if b.rescale is not None:
        x = layers.Rescaling(float(b.rescale), float(b.rescale_offset), name="rescale")(x)

    skips = []
    for level in range(b.depth):
        x, skip = b.block(
            x, b.filters[level], b.encoder_convs[level], b.dropout[level], f"enc{level}"
        )
        skips.append(skip)
        x = layers.MaxPooling2D(b.pool_size, name=f"enc{level}_pool")(x)
        if min(x.shape[1:3]) < 1:
            raise ConfigError(
                f"model.depth={b.depth}: input {tuple(input_shape)} is too small for this depth"
            )
    x, _ = b.block(x, b.filters[b.depth], b.bottleneck_convs, b.dropout[b.depth], "bottleneck")

    for level in reversed(range(b.depth)):
        prefix = f"dec{level}"
        x = b.up(x, b.filters[level], prefix)
        skip = skips[level]
        height = min(int(x.shape[1]), int(skip.shape[1]))
        width = min(int(x.shape[2]), int(skip.shape[2]))
        if height < 1 or width < 1:
            raise ConfigError(
                f"model: input {tuple(input_shape)} is too small for valid padding at depth "
                f"{b.depth}"
            )
        skip = _center_crop(skip, height, width, f"{prefix}_skip_crop")
        x = _center_crop(x, height, width, f"{prefix}_up_crop")
        x = layers.Concatenate(name=f"{prefix}_concat")([x, skip])
        rate = b.dropout[level] if b.dropout_decoder else 0.0
        x, _ = b.block(
            x, b.filters[level], b.decoder_convs[level], rate, prefix, transpose=b.decoder_transpose
        )

    unknown = sorted(set(b.padding_overrides) - b.used_names)
    if unknown:
        raise ConfigError(
            f"model.padding_overrides: no convolution named {unknown[0]!r} "
            "(names look like enc1_conv2, bottleneck_conv1, dec0_up, dec1_conv1)"
        )

    if task == "reconstruction":
        channels = int(input_shape[-1])
    else:
        channels = head_channels(head, num_classes)
    outputs = layers.Conv2D(
        channels, 1, activation=keras_activation(head), dtype="float32", name="head"
    )(x)
    return keras.Model(inputs, outputs, name=cfg.name or "unet")
