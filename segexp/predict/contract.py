"""The input contract of a trained model: what is stored with it and how it is met.

What is stored with it (input size, channels, range, classes, head, output crop, training
geometry), how it is measured, completed for models stored without it, and the prediction mode
(``resize`` or ``tile``) it calls for."""

from __future__ import annotations

import math
import sys
from typing import Any

from segexp.errors import ConfigError
from segexp.models.heads import model_head

PROG = "segexp-predict"
DEFAULT_TILE = 256  # tile size for a flexible-size model that carries no metadata
NORMALIZATIONS = ("unit", "none")
PREDICT_MODES = ("auto", "resize", "tile")


def warn(msg: str) -> None:
    """A one-line warning on stderr."""
    print(f"{PROG}: warning: {msg}", file=sys.stderr)


def model_io(model: Any) -> tuple[tuple, tuple]:
    inp = model.inputs[0].shape if getattr(model, "inputs", None) else model.input_shape
    out = model.outputs[0].shape if getattr(model, "outputs", None) else model.output_shape
    return tuple(inp), tuple(out)


def _probe(model: Any, size: tuple[int, int], channels: int) -> tuple[int, int, int]:
    import numpy as np

    from segexp.predict.inference import call_model

    out = call_model(model, np.zeros((1, *size, channels), np.float32))
    return tuple(int(d) for d in np.shape(out)[1:])  # type: ignore[return-value]


def _downsampling_factor(model: Any) -> int:
    """Product of the strides of pooling and strided-conv layers (2**depth for a U-Net)."""
    try:
        layers = list(model._flatten_layers(include_self=False, recursive=True))
    except Exception:  # noqa: BLE001 - private API; fall back to the top-level layers
        layers = list(getattr(model, "layers", []))
    factor = 1
    for layer in layers:
        cls = type(layer).__name__
        if "Transpose" in cls or "UpSampling" in cls or "Global" in cls:
            continue
        if "Pooling" in cls or "Conv" in cls:
            strides = getattr(layer, "strides", None) or getattr(layer, "pool_size", None) or 1
            strides = strides if isinstance(strides, (tuple, list)) else (strides,)
            factor *= max(int(s) for s in strides)
    return factor


def inference_meta(
    model: Any,
    *,
    input_size: tuple[int, int] | list[int],
    channels: int,
    num_classes: int,
    class_names: list[str],
    head: str,
    normalization: str = "unit",
    required_multiple: int | None = None,
    task: str = "segmentation",
    input_range: float = 1.0,
    geometry: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The input contract stored with a trained model and read back by segexp-predict.

    ``output_crop``/``valid_padding`` are measured with one forward pass at ``input_size``;
    ``required_multiple`` is derived from the model's pooling/stride layers unless given.
    ``input_range`` multiplies the normalised image (255 for models that rescale inside).
    ``geometry`` is how training brought images to ``input_size``
    (:func:`segexp.data.geometry.training_geometry`); without it predict slides tiles.
    """
    h, w = (int(v) for v in input_size)
    oh, ow, k = _probe(model, (h, w), int(channels))
    crop = [(h - oh) // 2, (w - ow) // 2]
    if head == "auto":
        head = model_head(model)
    meta = {
        "format": 2,
        "task": str(task),
        "input_size": [h, w],
        "channels": int(channels),
        "normalization": str(normalization),
        "input_range": float(input_range),
        "num_classes": int(num_classes),
        "class_names": [str(c) for c in class_names],
        "head": str(head),
        "output_channels": int(k),
        "required_multiple": int(required_multiple or _downsampling_factor(model)),
        "valid_padding": bool(crop[0] or crop[1]),
        "output_crop": crop,
    }
    if geometry is not None:
        meta["geometry"] = dict(geometry)
    return meta


def infer_meta_from_model(model: Any, tile: int = DEFAULT_TILE) -> dict[str, Any]:
    """Best-effort metadata for a model stored without it (size, channels and head guessed)."""
    (_, ih, iw, c), _ = model_io(model)
    m = _downsampling_factor(model)
    default = math.ceil(tile / m) * m
    size = [int(ih) if ih else default, int(iw) if iw else default]
    _, _, k = _probe(model, (size[0], size[1]), int(c))
    num_classes = 2 if k == 1 else k
    return inference_meta(
        model,
        input_size=size,
        channels=int(c),
        num_classes=num_classes,
        class_names=[f"class_{i}" for i in range(num_classes)],
        head=model_head(model),
        required_multiple=m,
    )


def complete_meta(meta: dict[str, Any], model: Any) -> dict[str, Any]:
    """Fill keys an older/partial META lacks, and check the ones the predictor relies on."""
    meta = dict(meta)
    (_, ih, iw, c), _ = model_io(model)
    size = meta.get("input_size")
    if not size or len(size) != 2 or any(v is None for v in size):
        meta["input_size"] = infer_meta_from_model(model)["input_size"]
        warn(f"metadata gives no usable input_size ({size}); using {meta['input_size']}")
    meta.setdefault("channels", int(c) if c else 3)
    meta.setdefault("normalization", "unit")
    if meta["normalization"] not in NORMALIZATIONS:
        raise ConfigError(
            f"model metadata normalization={meta['normalization']!r}: expected one of "
            f"{list(NORMALIZATIONS)}"
        )
    meta.setdefault("required_multiple", _downsampling_factor(model))
    if "num_classes" not in meta or "head" not in meta:
        k = _probe(model, tuple(meta["input_size"]), int(meta["channels"]))[2]
        meta.setdefault("num_classes", 2 if k == 1 else k)
        meta.setdefault("head", model_head(model))
    n = int(meta["num_classes"])
    if not meta.get("class_names"):
        meta["class_names"] = [f"class_{i}" for i in range(n)]
    if meta.get("task", "segmentation") != "segmentation":
        raise ConfigError(f"model task={meta['task']!r}: segexp-predict only segments images")
    if ih and iw and [int(ih), int(iw)] != [int(v) for v in meta["input_size"]]:
        warn(f"model input is {[ih, iw]}, metadata says {meta['input_size']}; using the model's")
        meta["input_size"] = [int(ih), int(iw)]
    if c and int(c) != int(meta["channels"]):
        raise ConfigError(f"metadata channels={meta['channels']} but the model takes {c}")
    return meta


def describe_geometry(geo: dict[str, Any]) -> str:
    """What training did, in words (for segexp-predict's mode message)."""
    h, w = geo["size"]
    kind = geo.get("kind")
    if kind == "resize":
        return f"whole images resized to {h}x{w}"
    if kind == "pad":
        return f"whole images scaled to fit {h}x{w} and padded (letterbox)"
    if kind == "crop":
        return f"native-resolution centre crops of {h}x{w}"
    if kind == "tile":
        t = int(geo["tile"])
        extra = "" if [t, t] == [h, w] else f", resized to {h}x{w}"
        return f"native-resolution {t}x{t} tiles (dataset.tile={t}){extra}"
    return f"{h}x{w} images at their native resolution"


def predict_mode(geo: dict[str, Any] | None, requested: str = "auto") -> tuple[str, str]:
    """``(mode, reason)``: ``resize`` (whole image at the model size) or ``tile`` (sliding
    window), chosen from the training geometry unless ``requested`` says which."""
    if requested not in PREDICT_MODES:
        raise ConfigError(f"mode={requested!r}: expected one of {', '.join(PREDICT_MODES)}")
    if not geo or "kind" not in geo:
        if requested != "auto":
            return requested, "as requested (the model records no training geometry)"
        return "tile", (
            "the model's metadata records no training geometry (saved by an older segexp): "
            "sliding the input size over native-resolution images; pass mode=resize if it was "
            "trained on resized whole images"
        )
    trained = f"the model was trained on {describe_geometry(geo)}"
    if requested != "auto":
        return requested, f"as requested ({trained})"
    return ("resize" if geo["kind"] in ("resize", "pad") else "tile"), f"because {trained}"
