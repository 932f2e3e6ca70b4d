"""Inference core: overlap-tile (sliding-window) and whole-image prediction, flip TTA.

Images of any size are segmented with the training input size as the tile: the image is
mirror-padded (reflect) at its borders as in the U-Net paper, cut into overlapping tiles
whose predictions are blended with Gaussian (or uniform) weights, and cropped back to the
image size. Valid-padding networks (output tile smaller than the input tile) get the
missing context from the mirror padding, so their output tiles cover the whole image.
Resampling is :mod:`segexp.data.geometry`'s, the loaders' own rule; :class:`Segmenter` applies
the training geometry recorded with the model (:func:`make_predictor` builds one).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from segexp.data.geometry import from_model_grid, to_model_grid
from segexp.errors import ConfigError, DataError
from segexp.models.heads import predictions_to_labels
from segexp.predict.contract import predict_mode

if TYPE_CHECKING:
    from segexp.predict.schema import PredictConfig

BLENDS = ("gaussian", "mean")

# Flip variants for test-time augmentation, as NHWC axes to flip: identity, vertical, horizontal,
# both. Every flip is its own inverse, so the prediction is flipped back with the same axes.
TTA_FLIPS: tuple[tuple[int, ...], ...] = ((), (1,), (2,), (1, 2))


# --------------------------------------------------------------------------------------------
# Tiling
# --------------------------------------------------------------------------------------------


def gaussian_weights(shape: tuple[int, int], sigma_scale: float = 1 / 8) -> np.ndarray:
    """Separable Gaussian blending weights ``[h, w]`` (max 1, centre-peaked, strictly > 0)."""
    axes = []
    for n in shape:
        x = np.arange(n, dtype=np.float64) - (n - 1) / 2.0
        sigma = max(n * sigma_scale, 1e-6)
        axes.append(np.exp(-0.5 * (x / sigma) ** 2))
    w = np.outer(axes[0], axes[1])
    w /= w.max()
    return np.maximum(w, 1e-4).astype(np.float32)


def tile_positions(length: int, tile: int, stride: int) -> tuple[list[int], int]:
    """Tile starts along one axis and the covered length (>= ``length``; the excess is padding).

    Starts are multiples of ``stride`` so the down-sampling grid of every tile lines up with the
    one of a whole-image prediction.
    """
    if length <= tile:
        return [0], tile
    n = math.ceil((length - tile) / stride) + 1
    return [i * stride for i in range(n)], tile + (n - 1) * stride


def overlap_pixels(tile_overlap: float, tile: int) -> int:
    """``tile_overlap`` < 1 is a fraction of the (output) tile, otherwise a number of pixels."""
    if tile_overlap < 0:
        raise ConfigError(f"tile_overlap={tile_overlap}: expected a fraction in [0, 1) or pixels")
    px = round(tile_overlap * tile) if tile_overlap < 1 else int(tile_overlap)
    if px >= tile:
        raise ConfigError(
            f"tile_overlap={tile_overlap}: {px} px overlap must be smaller than the {tile} px tile"
        )
    return px


def mirror_pad(arr: np.ndarray, pad_h: tuple[int, int], pad_w: tuple[int, int]) -> np.ndarray:
    """Reflect-pad an ``[H, W, C]`` image (repeating the reflection when the pad is larger)."""
    pads = [pad_h, pad_w, (0, 0)]
    for axis in (0, 1):
        if arr.shape[axis] < 2 and any(pads[axis]):
            arr = np.pad(arr, [pads[i] if i == axis else (0, 0) for i in range(3)], mode="edge")
            pads[axis] = (0, 0)
    return np.pad(arr, pads, mode="reflect") if any(map(any, pads)) else arr


def call_model(model: Any, batch: np.ndarray, *, compiled: bool = False) -> np.ndarray:
    """First output of ``model`` on ``batch`` as float32 numpy (``compiled``: the traced
    predict function, else an eager call); silences Keras' input-structure warning for models
    whose single input was given as a list."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The structure of `inputs`")
        out = model.predict_on_batch(batch) if compiled else model(batch, training=False)
    if isinstance(out, (list, tuple)):
        out = out[0]
    return np.asarray(out, dtype=np.float32)


@dataclass
class TiledPredictor:
    """Segment images of any size with a Keras model by overlap-tile inference.

    ``tile`` is the network input size ``(h, w)``; the output tile (smaller for valid-padding
    networks) and the class-channel count are measured with one forward pass of zeros.
    """

    model: Any
    tile: tuple[int, int]
    channels: int
    head: str = "softmax"
    num_classes: int = 2
    required_multiple: int = 1
    tile_overlap: float = 0.25
    blend: str = "gaussian"
    tta: bool = False
    batch_size: int = 8
    threshold: float = 0.5
    out_tile: tuple[int, int] = field(init=False)
    crop: tuple[int, int] = field(init=False)
    out_channels: int = field(init=False)
    stride: tuple[int, int] = field(init=False)

    def __post_init__(self) -> None:
        if self.blend not in BLENDS:
            raise ConfigError(f"blend={self.blend!r}: expected one of {list(BLENDS)}")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size={self.batch_size}: expected a positive integer")
        self.tile = (int(self.tile[0]), int(self.tile[1]))
        probe = call_model(self.model, np.zeros((1, *self.tile, self.channels), np.float32))
        if probe.ndim != 4:
            raise ConfigError(f"model output has shape {probe.shape}: expected [batch, H, W, K]")
        oh, ow, self.out_channels = probe.shape[1:]
        dh, dw = self.tile[0] - oh, self.tile[1] - ow
        if dh < 0 or dw < 0 or dh % 2 or dw % 2:
            raise ConfigError(
                f"model maps a {self.tile} tile to {(oh, ow)}: expected the same size or a "
                "symmetric crop (valid padding)"
            )
        self.out_tile, self.crop = (oh, ow), (dh // 2, dw // 2)
        m = max(int(self.required_multiple), 1)
        strides = []
        for o in self.out_tile:
            s = o - overlap_pixels(float(self.tile_overlap), o)
            strides.append(s // m * m if s >= m else s)
        self.stride = (strides[0], strides[1])
        if self.blend == "gaussian":
            self._weights = gaussian_weights(self.out_tile)
        else:
            self._weights = np.ones(self.out_tile, np.float32)

    # -- network calls -----------------------------------------------------------------------

    def _run(self, batch: np.ndarray) -> np.ndarray:
        out = call_model(self.model, batch, compiled=True)
        if out.ndim != 4:
            raise ConfigError(
                f"model output has shape {out.shape}: expected [batch, H, W, classes]"
            )
        return out

    def predict_batch(self, tiles: np.ndarray) -> np.ndarray:
        """Predict ``[n, th, tw, C]`` tiles, averaging over flips when ``tta`` is on.

        Batches are zero-filled to ``batch_size`` or a smaller power of two, so the traced
        predict function sees few distinct shapes."""
        n = tiles.shape[0]
        size = min(self.batch_size, 1 << max(n - 1, 0).bit_length())
        if n < size:
            fill = np.zeros((size - n, *tiles.shape[1:]), tiles.dtype)
            tiles = np.concatenate([tiles, fill])
        flips = TTA_FLIPS if self.tta else ((),)
        total = None
        for axes in flips:
            x = np.ascontiguousarray(np.flip(tiles, axes)) if axes else tiles
            y = self._run(x)
            y = np.flip(y, axes) if axes else y
            total = y if total is None else total + y
        return (total / len(flips))[:n]

    # -- whole images ------------------------------------------------------------------------

    def plan(self, height: int, width: int) -> tuple[list[tuple[int, int]], tuple[int, int]]:
        """Output-tile origins and the covered canvas size for an image of ``height x width``."""
        ys, ch = tile_positions(height, self.out_tile[0], self.stride[0])
        xs, cw = tile_positions(width, self.out_tile[1], self.stride[1])
        return [(y, x) for y in ys for x in xs], (ch, cw)

    def _tiles(self, padded: np.ndarray, origins: list[tuple[int, int]]) -> Iterator[tuple]:
        th, tw = self.tile
        for i in range(0, len(origins), self.batch_size):
            chunk = origins[i : i + self.batch_size]
            yield chunk, np.stack([padded[y : y + th, x : x + tw] for y, x in chunk])

    def predict_probs(self, image: np.ndarray) -> np.ndarray:
        """Network outputs ``[H, W, K]`` for a normalised ``[H, W, C]`` image of any size."""
        if image.ndim != 3 or image.shape[-1] != self.channels:
            raise DataError(
                f"image of shape {image.shape}: expected [H, W, {self.channels}] for this model"
            )
        h, w = image.shape[:2]
        origins, (ch, cw) = self.plan(h, w)
        (ph, pw), (oh, ow) = self.crop, self.out_tile
        padded = mirror_pad(image.astype(np.float32), (ph, ch - h + ph), (pw, cw - w + pw))
        acc = np.zeros((ch, cw, self.out_channels), np.float32)
        wsum = np.zeros((ch, cw, 1), np.float32)
        weights = self._weights[..., None]
        for chunk, tiles in self._tiles(padded, origins):
            preds = self.predict_batch(tiles)
            for (y, x), p in zip(chunk, preds, strict=True):
                acc[y : y + oh, x : x + ow] += p * weights
                wsum[y : y + oh, x : x + ow] += weights
        return acc[:h, :w] / wsum[:h, :w]

    def to_mask(self, probs: np.ndarray) -> np.ndarray:
        """Class ids ``[H, W]``: ``p > threshold`` for a one-channel sigmoid head, else arg-max
        (:func:`segexp.models.heads.predictions_to_labels`, the metrics' rule)."""
        dtype = np.uint8 if probs.shape[-1] <= 256 else np.uint16
        return predictions_to_labels(probs, self.head, self.threshold).astype(dtype)

    def class_probabilities(self, probs: np.ndarray) -> np.ndarray:
        """``[H, W, num_classes]`` probabilities (a one-channel sigmoid becomes [1 - p, p])."""
        if probs.shape[-1] == 1 and self.head == "sigmoid":
            return np.concatenate([1.0 - probs, probs], axis=-1)
        return probs


@dataclass
class Segmenter:
    """A :class:`TiledPredictor` on the training geometry: ``resize`` predicts the whole image
    resampled to the model size and resamples the result back (nearest for class ids, bilinear
    for probabilities); ``tile`` slides over the image at native resolution (rescaled first
    when training resized its tiles)."""

    tiled: TiledPredictor
    mode: str = "tile"
    geometry: dict | None = None
    last_tiles: int = 0

    def segment(
        self, image: np.ndarray, *, probabilities: bool = False
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """``(mask [H, W], probabilities [H, W, num_classes] or None)`` for a model input."""
        shape = image.shape[:2]
        grid = to_model_grid(image, self.geometry, self.mode)
        self.last_tiles = len(self.tiled.plan(*grid.shape[:2])[0])
        raw = self.tiled.predict_probs(grid)
        mask = from_model_grid(
            self.tiled.to_mask(raw), shape, self.geometry, self.mode, labels=True
        )
        probs = None
        if probabilities:
            probs = from_model_grid(
                self.tiled.class_probabilities(raw), shape, self.geometry, self.mode, labels=False
            )
        return mask, probs


def make_predictor(model: Any, meta: dict[str, Any], cfg: PredictConfig) -> Segmenter:
    """A :class:`Segmenter` for ``model`` configured from ``meta`` and segexp-predict's keys,
    in the mode ``cfg.mode`` selects (see :func:`segexp.predict.contract.predict_mode`)."""
    mode, _ = predict_mode(meta.get("geometry"), cfg.mode)
    geometry = meta.get("geometry") or {"kind": "resize", "size": list(meta["input_size"])}
    tiled = TiledPredictor(
        model=model,
        tile=tuple(int(v) for v in meta["input_size"]),
        channels=int(meta["channels"]),
        head=str(meta["head"]),
        num_classes=int(meta["num_classes"]),
        required_multiple=int(meta.get("required_multiple") or 1),
        tile_overlap=float(cfg.tile_overlap),
        blend=str(cfg.blend),
        tta=bool(cfg.tta),
        batch_size=int(cfg.batch_size),
        threshold=float(cfg.threshold),
    )
    return Segmenter(tiled, mode=mode, geometry=geometry)
