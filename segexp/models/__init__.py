"""Model builders and presets.

``build_model(model_cfg, input_shape, num_classes)`` checks the section against the schema of
``model_cfg.builder`` and calls ``model_cfg._target_`` (by default that builder's function) with
the typed config, the input shape and the class count:

- ``unet`` (default): :func:`segexp.models.unet.build_unet`, one configurable U-Net;
- ``fcn8_vgg16``: :func:`segexp.models.fcn.build_fcn8_vgg16`, FCN-8s-style head on VGG16;
- ``autoencoder``: :func:`segexp.models.autoencoder.build_autoencoder`, convolutional autoencoder.

``builder`` names the keys (the schema) and ``_target_`` the function that reads them, so
``model._target_=mypkg.my_net`` builds a user's network from a builder's keys.

Presets are the YAML files in ``conf/model/`` (:func:`preset_names`, :func:`load_preset`).
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping
from contextlib import redirect_stdout
from pathlib import Path
from typing import TYPE_CHECKING, Any

import segexp
from segexp.config.schema.model import MODELS, ModelConf
from segexp.config.targets import target_callable
from segexp.errors import ConfigError
from segexp.models.common import head_channels, param_counts, resolve_task, to_plain
from segexp.models.heads import model_head, resolve_head

if TYPE_CHECKING:
    import keras
    from omegaconf import DictConfig

__all__ = [
    "BUILDERS",
    "LATENT_LAYER",
    "build_model",
    "encoder_model",
    "head_channels",
    "input_range",
    "load_preset",
    "model_head",
    "model_summary",
    "output_crop",
    "param_counts",
    "preset_dir",
    "preset_input_shape",
    "preset_names",
    "resolve_head",
    "resolve_model_head",
]

LATENT_LAYER = "latent"
BUILDERS = tuple(MODELS)


def _shape(value: Any, key: str) -> tuple[int, int, int]:
    values = list(value) if isinstance(value, list | tuple) else None
    if (
        values is None
        or len(values) != 3
        or any(not isinstance(v, int) or isinstance(v, bool) or v < 1 for v in values)
    ):
        raise ConfigError(f"{key}={value!r}: expected [height, width, channels] of positive ints")
    return (values[0], values[1], values[2])


def build_model(
    model_cfg: DictConfig | Mapping[str, Any],
    input_shape: tuple[int, int, int] | None = None,
    num_classes: int | None = None,
) -> keras.Model:
    """Build the model a config describes.

    ``model_cfg.input_shape`` (if set) fixes the input, otherwise ``input_shape`` is used;
    ``num_classes`` comes from the data, falling back to ``model_cfg.num_classes``.
    The head always outputs float32.
    """
    cfg = typed_model(model_cfg)
    if cfg.input_shape is not None:
        shape = _shape(cfg.input_shape, "model.input_shape")
    elif input_shape is not None:
        shape = _shape(list(input_shape), "input_shape")
    else:
        raise ConfigError("model.input_shape is null and no input shape was given")
    if num_classes is None:
        num_classes = cfg.num_classes
    task = resolve_task(cfg.task)
    if num_classes is None:
        if task != "reconstruction":
            raise ConfigError("model.num_classes is null and the data gave no class count")
        num_classes = 0
    builder = target_callable(
        cfg._target_, "model._target_", "a builder (cfg, input_shape, num_classes) -> keras.Model"
    )
    return builder(cfg, shape, int(num_classes))


def typed_model(model_cfg: DictConfig | Mapping[str, Any]) -> ModelConf:
    """The model config checked against its builder's schema, defaults filled in."""
    from segexp.config import typed

    cfg = to_plain(model_cfg)
    builder = str(cfg.get("builder") or ModelConf.builder)
    if builder not in MODELS:
        raise ConfigError(f"model.builder={builder!r}: expected one of {', '.join(BUILDERS)}")
    return typed(cfg, MODELS[builder], f"model({builder})")


def resolve_model_head(model_cfg: DictConfig | Mapping[str, Any], num_classes: int) -> str:
    """The concrete head (sigmoid|softmax|linear) a config gives for ``num_classes``."""
    cfg = typed_model(model_cfg)
    return resolve_head(getattr(cfg, "head", None), num_classes, resolve_task(cfg.task))


def input_range(model_cfg: DictConfig | Mapping[str, Any]) -> float:
    """Pixel range the model expects: images in ``[0, 1]`` are multiplied by this value.

    1.0 for every preset except those that keep an article's in-model ``Rescaling(1/255)``
    (``input_range: 255``), which expect raw 0..255 pixels.
    """
    value = typed_model(model_cfg).input_range
    if value <= 0:
        raise ConfigError(f"model.input_range={value!r}: expected a positive number")
    return float(value)


def output_crop(model: keras.Model, input_shape: tuple[int, ...] | None = None) -> tuple[int, int]:
    """Pixels to remove from EACH side of a mask so it matches the model's output.

    ``(0, 0)`` for same-size outputs. Valid-padding U-Nets output a centered, smaller map;
    the result fits ``segexp.data.pipeline.make_dataset(..., mask_crop=...)``.
    """
    shape = tuple(input_shape) if input_shape is not None else tuple(model.input_shape[1:])
    in_h, in_w = int(shape[0]), int(shape[1])
    out_h, out_w = int(model.output_shape[1]), int(model.output_shape[2])
    dh, dw = in_h - out_h, in_w - out_w
    if dh < 0 or dw < 0 or dh % 2 or dw % 2:
        raise ConfigError(
            f"model {model.name}: output {out_h}x{out_w} cannot be center-cropped from input "
            f"{in_h}x{in_w}; choose an input size for which the difference is even"
        )
    return dh // 2, dw // 2


def encoder_model(model: keras.Model, layer: str = LATENT_LAYER) -> keras.Model:
    """The sub-model from the input to ``layer`` (the autoencoder's ``latent`` code)."""
    import keras

    try:
        out = model.get_layer(layer).output
    except ValueError:
        raise ConfigError(f"model {model.name}: has no layer named {layer!r}") from None
    return keras.Model(model.input, out, name=f"{model.name}_encoder")


def model_summary(model: keras.Model, line_length: int = 120) -> str:
    """The Keras summary of ``model`` as text."""
    lines: list[str] = []

    def _collect(text: str, **_: Any) -> None:
        lines.append(text)

    # rich sizes its console from $COLUMNS (80 when not a terminal) and cuts wider tables.
    saved = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = str(line_length + 4)
    buffer = io.StringIO()
    try:
        with redirect_stdout(buffer):
            model.summary(print_fn=_collect, line_length=line_length, expand_nested=True)
    finally:
        if saved is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = saved
    return "\n".join(lines) + buffer.getvalue()


def preset_dir() -> Path:
    """``conf/model`` next to the ``segexp`` package."""
    return Path(segexp.__file__).resolve().parents[1] / "conf" / "model"


def preset_names() -> list[str]:
    """Names of all model presets (``conf/model/*.yaml`` stems), sorted."""
    return sorted(p.stem for p in preset_dir().glob("*.yaml"))


def load_preset(name: str) -> DictConfig:
    """``conf/model/<name>.yaml`` merged into its schema (every key, typed)."""
    from segexp.config import load_preset as load

    return load("model", name)


def preset_input_shape(
    model_cfg: DictConfig | Mapping[str, Any], default: tuple[int, int, int] = (64, 64, 1)
) -> tuple[int, int, int]:
    """A preset's fixed input shape, or ``default`` when it takes the dataset's size."""
    value = to_plain(model_cfg).get("input_shape")
    return default if value is None else _shape(value, "model.input_shape")
