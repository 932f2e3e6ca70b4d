"""Schema of the ``loss`` group: one dataclass per loss option."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class AutoLoss:
    """BCE for a sigmoid head, sparse categorical CE for softmax, mse for linear."""

    name: str = "auto"
    # Optional list of K per-class weights.
    class_weights: Any = None


@dataclass
class BCELoss:
    """Binary cross-entropy (sigmoid head; on a softmax head: one-hot multi-label BCE)."""

    name: str = "bce"
    # Optional [w_background, w_foreground].
    class_weights: Any = None


@dataclass
class CCELoss:
    """Sparse categorical cross-entropy (a sigmoid head is treated as [1 - p, p])."""

    name: str = "cce"
    # Optional list of K per-class weights.
    class_weights: Any = None


@dataclass
class DiceLoss:
    """Soft Dice 1 - mean_c (2|P∩T| + smooth) / (|P| + |T| + smooth), valid pixels only."""

    name: str = "dice"
    # Added to the Dice numerator and denominator.
    smooth: float = 1.0
    # auto: false for binary (foreground Dice), true for K > 2; or true | false.
    include_background: Any = "auto"
    # false: per image, then averaged; true: over the whole batch.
    batch_dice: bool = False


@dataclass
class BCEDiceLoss(DiceLoss):
    """ce_weight * BCE + dice_weight * soft Dice."""

    name: str = "bce_dice"
    # Weights of the cross-entropy and Dice terms.
    ce_weight: float = 1.0
    dice_weight: float = 1.0
    class_weights: Any = None


@dataclass
class CEDiceLoss(BCEDiceLoss):
    """ce_weight * sparse categorical CE + dice_weight * soft Dice."""

    name: str = "ce_dice"


@dataclass
class FocalLoss:
    """Focal loss -alpha_t (1 - p_t)^gamma log p_t."""

    name: str = "focal"
    # Focusing exponent (0 = cross-entropy).
    gamma: float = 2.0
    # null; a number (binary: foreground alpha, background 1 - alpha); or K values.
    alpha: Any = None


@dataclass
class UNetWeightedLoss:
    """U-Net paper: cross-entropy with the weight map w_c(x) + w0 exp(-(d1 + d2)^2 / 2 sigma^2)."""

    name: str = "unet_weighted"
    # The class whose connected components are the objects: auto (every class but 0), a class
    # id or name, or a list (the preset takes the dataset's object_class where it names one).
    object_class: Any = "auto"
    # Weight of the border term.
    w0: float = 10.0
    # Pixels.
    sigma: float = 5.0
    # balanced (per-mask inverse frequency, mean 1) | none | list of K.
    class_weights: Any = "balanced"
    # Border term on background pixels only (the separating gaps).
    background_only: bool = True
    # Objects: 1 = 4-neighbour, 2 = 8-neighbour components.
    connectivity: int = 1


@dataclass
class MSELoss:
    """Mean squared error (reconstruction; what auto picks for a linear head)."""

    name: str = "mse"


LOSSES: dict[str, type] = {
    c.name: c
    for c in (
        AutoLoss,
        BCELoss,
        CCELoss,
        DiceLoss,
        BCEDiceLoss,
        CEDiceLoss,
        FocalLoss,
        UNetWeightedLoss,
        MSELoss,
    )
}
