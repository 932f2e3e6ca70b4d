"""Schema of the ``augmentation`` group: one dataclass per option and per unet_paper block."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from omegaconf import MISSING


@dataclass
class FlipBlock:
    """Random flips (image and mask together), each direction with probability p."""

    horizontal: bool = True
    vertical: bool = False
    p: float = 0.5


@dataclass
class AffineBlock:
    """One projective transform per sample like Keras' ImageDataGenerator (image bilinear,
    mask nearest neighbour)."""

    # Degrees, uniform in [-r, r].
    rotation_range: float = 0.0
    # Fraction of the width (< 1) or pixels (>= 1).
    width_shift_range: float = 0.0
    height_shift_range: float = 0.0
    # z -> [1 - z, 1 + z] or [low, high]; < 1 zooms in.
    zoom_range: Any = 0.0
    # false: x and y zoom drawn independently (ImageDataGenerator).
    keep_aspect: bool = False
    # Degrees, uniform in [-s, s].
    shear_range: float = 0.0
    horizontal_flip: bool = False
    vertical_flip: bool = False
    # reflect | constant | nearest | wrap.
    fill_mode: str = "reflect"
    # Image fill for fill_mode=constant.
    fill_value: float = 0.0
    # Mask fill for fill_mode=constant (use the ignore value to mask it out).
    mask_fill_value: int = 0
    # Probability of transforming a sample.
    p: float = 1.0


@dataclass
class ElasticBlock:
    """U-Net paper elastic deformation: N(0, sigma) displacements on a coarse grid, upsampled."""

    # Int or [rows, cols].
    grid_size: Any = 3
    # Displacement standard deviation in pixels.
    sigma: float = 10.0
    # bicubic | bilinear (displacement-field upsampling).
    interpolation: str = "bicubic"
    p: float = 1.0


@dataclass
class ColorBlock:
    """Intensity augmentation on the image only (the mask is untouched)."""

    # Additive delta, uniform in [-b, b].
    brightness: float = 0.1
    # Factor uniform in [1 - c, 1 + c] around the per-channel mean.
    contrast: float = 0.1
    # Exponent range [low, high] (log-uniform), or g -> [1 - g, 1 + g]; [1, 1] = off.
    gamma: Any = (0.9, 1.1)
    # Additive gaussian noise standard deviation.
    noise_std: float = 0.01
    # Clip the result to [0, 1].
    clip: bool = True
    p: float = 1.0


@dataclass
class _Named:
    # The option (conf/augmentation/<name>.yaml).
    name: str = MISSING


@dataclass
class NoAugment:
    """No augmentation."""

    name: str = "none"


@dataclass
class FlipConf(FlipBlock, _Named):
    name: str = "flip"


@dataclass
class AffineConf(AffineBlock, _Named):
    name: str = "affine"


@dataclass
class ElasticConf(ElasticBlock, _Named):
    name: str = "elastic"


@dataclass
class ColorConf(ColorBlock, _Named):
    name: str = "color"


@dataclass
class UNetPaperConf:
    """flip, affine, elastic and color in a row; a null (or missing) block is skipped."""

    name: str = "unet_paper"
    flip: FlipBlock | None = None
    affine: AffineBlock | None = None
    elastic: ElasticBlock | None = None
    color: ColorBlock | None = None


AUGMENTATIONS: dict[str, type] = {
    c.name: c for c in (NoAugment, FlipConf, AffineConf, ElasticConf, ColorConf, UNetPaperConf)
}
# unet_paper's blocks, in the order they are applied.
BLOCKS: dict[str, type] = {
    "flip": FlipConf,
    "affine": AffineConf,
    "elastic": ElasticConf,
    "color": ColorConf,
}
