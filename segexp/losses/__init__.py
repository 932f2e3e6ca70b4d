"""Segmentation losses (the ``loss`` config group) and the U-Net paper's weight map.

Every loss takes ``y_true`` int class ids ``[B, H, W, 1]`` and ``y_pred`` probabilities (sigmoid
``[B, H, W, 1]`` or softmax ``[B, H, W, K]``) and returns a per-pixel loss ``[B, H, W]``; Keras
does the reduction (default ``sum_over_batch_size``) and applies a per-pixel ``sample_weight``
``[B, H, W]`` if the dataset yields one (``unet_weighted``).

Ignore pixels (``ignore_value``, and any label outside ``[0, K)``) contribute nothing: their
per-pixel loss is 0 and the per-pixel terms of the remaining pixels are scaled by
``#pixels / #valid pixels`` of the batch, so Keras' mean over all pixels equals the mean over the
valid pixels. Region terms (Dice) are computed per image (or per batch) on valid pixels only and
spread evenly over the image's pixels, so the Keras mean returns their average over the batch.

Options (``name``): ``auto`` (bce for a sigmoid head, cce for softmax, mse for linear), ``bce``,
``cce``, ``dice``, ``bce_dice``, ``ce_dice``, ``focal``, ``unet_weighted``, ``mse``.
"""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from segexp.errors import ConfigError
from segexp.losses.config import KINDS, loss_params
from segexp.losses.weight_map import sample_weight_fn, unet_weight_map, weight_map_params
from segexp.models.heads import resolve_head

__all__ = [
    "KINDS",
    "SegmentationLoss",
    "build_loss",
    "sample_weight_fn",
    "unet_weight_map",
]

EPSILON = 1e-7


@keras.saving.register_keras_serializable(package="segexp")
class SegmentationLoss(keras.losses.Loss):
    """Per-pixel segmentation loss ``[B, H, W]`` honouring an ignore value (see module doc).

    ``kind`` is one of ``KINDS``; ``unet_weighted`` is cross-entropy whose per-pixel weight map
    arrives as Keras ``sample_weight`` (see ``sample_weight_fn``).
    """

    def __init__(
        self,
        kind: str = "cce",
        *,
        head: str = "softmax",
        num_classes: int = 2,
        ignore_value: int | None = None,
        class_weights: list[float] | None = None,
        smooth: float = 1.0,
        include_background: bool | None = None,
        batch_dice: bool = False,
        ce_weight: float = 1.0,
        dice_weight: float = 1.0,
        gamma: float = 2.0,
        alpha: float | list[float] | None = None,
        name: str | None = None,
        reduction: str | None = "sum_over_batch_size",
        dtype: Any = None,
    ) -> None:
        super().__init__(name=name or kind, reduction=reduction, dtype=dtype)
        if kind not in KINDS:
            raise ConfigError(f"loss.name={kind!r}: expected one of {['auto', *KINDS]}")
        self.kind = kind
        self.head = resolve_head(head, num_classes)
        self.num_classes = int(num_classes)
        self.ignore_value = None if ignore_value is None else int(ignore_value)
        self.class_weights = None if class_weights is None else [float(w) for w in class_weights]
        self.smooth = float(smooth)
        if include_background is None:
            include_background = self.num_classes > 2
        self.include_background = bool(include_background)
        self.batch_dice = bool(batch_dice)
        self.ce_weight = float(ce_weight)
        self.dice_weight = float(dice_weight)
        self.gamma = float(gamma)
        self.alpha = alpha
        if self.class_weights is not None and len(self.class_weights) != self.num_classes:
            raise ConfigError(
                f"loss.class_weights={self.class_weights}: expected {self.num_classes} values"
            )
        if self.head == "sigmoid" and self.num_classes != 2:
            raise ConfigError(
                f"model.head=sigmoid with num_classes={num_classes}: a sigmoid head needs 2"
            )
        if self.head == "linear" and kind != "mse":
            raise ConfigError(f"loss.name={kind!r}: a linear head needs loss=mse (or auto)")

    # ---------------------------------------------------------------- pieces
    def _labels(self, y_true: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        """(safe labels int32 [B,H,W], valid float [B,H,W], scale = #pixels / #valid)."""
        labels = tf.cast(tf.round(tf.cast(y_true, tf.float32)), tf.int32)
        if labels.shape.rank == 4:
            labels = labels[..., 0]
        valid = (labels >= 0) & (labels < self.num_classes)
        if self.ignore_value is not None:
            valid &= labels != self.ignore_value
        safe = tf.where(valid, labels, tf.zeros_like(labels))
        valid_f = tf.cast(valid, tf.float32)
        total = tf.cast(tf.size(valid_f), tf.float32)
        scale = tf.math.divide_no_nan(total, tf.reduce_sum(valid_f))
        return safe, valid_f, scale

    def _probs(self, y_pred: tf.Tensor) -> tf.Tensor:
        """Class probabilities [B, H, W, K] (sigmoid: [1 - p, p]), clipped away from 0 and 1."""
        y_pred = tf.cast(y_pred, tf.float32)
        if self.head == "sigmoid":
            p = y_pred[..., :1]
            y_pred = tf.concat([1.0 - p, p], axis=-1)
        return tf.clip_by_value(y_pred, EPSILON, 1.0 - EPSILON)

    def _pixel_weights(self, safe: tf.Tensor) -> tf.Tensor | float:
        if self.class_weights is None:
            return 1.0
        return tf.gather(tf.constant(self.class_weights, tf.float32), safe)

    def _cross_entropy(self, probs: tf.Tensor, onehot: tf.Tensor, safe: tf.Tensor) -> tf.Tensor:
        if self.kind == "bce" and self.head == "softmax":
            # multi-label binary cross-entropy on the one-hot target, averaged over classes
            ce = -tf.reduce_mean(
                onehot * tf.math.log(probs) + (1.0 - onehot) * tf.math.log(1.0 - probs), -1
            )
        else:  # sigmoid bce == 2-class cce on [1 - p, p]
            ce = -tf.reduce_sum(onehot * tf.math.log(probs), axis=-1)
        return ce * self._pixel_weights(safe)

    def _focal(self, probs: tf.Tensor, onehot: tf.Tensor) -> tf.Tensor:
        p_t = tf.reduce_sum(onehot * probs, axis=-1)
        loss = -tf.pow(1.0 - p_t, self.gamma) * tf.math.log(p_t)
        if self.alpha is not None:
            if isinstance(self.alpha, list | tuple):
                alpha = tf.constant([float(a) for a in self.alpha], tf.float32)
            elif self.num_classes == 2:  # binary: alpha for foreground, 1 - alpha background
                alpha = tf.constant([1.0 - float(self.alpha), float(self.alpha)], tf.float32)
            else:
                alpha = tf.fill([self.num_classes], float(self.alpha))
            loss = loss * tf.reduce_sum(onehot * alpha, axis=-1)
        return loss

    def _dice(self, probs: tf.Tensor, onehot: tf.Tensor, valid: tf.Tensor) -> tf.Tensor:
        """Soft Dice loss per image [B, 1, 1] (or per batch), valid pixels only."""
        mask = valid[..., None]
        p, t = probs * mask, onehot * mask
        if not self.include_background:
            p, t = p[..., 1:], t[..., 1:]
        axes = [0, 1, 2] if self.batch_dice else [1, 2]
        inter = tf.reduce_sum(p * t, axis=axes)
        denom = tf.reduce_sum(p, axis=axes) + tf.reduce_sum(t, axis=axes)
        dice = (2.0 * inter + self.smooth) / (denom + self.smooth)
        loss = 1.0 - tf.reduce_mean(dice, axis=-1)
        return tf.reshape(loss, [-1, 1, 1])

    # ---------------------------------------------------------------- keras
    def call(self, y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
        """Per-pixel loss [B, H, W]."""
        if self.kind == "mse":
            diff = tf.cast(y_pred, tf.float32) - tf.cast(y_true, tf.float32)
            return tf.reduce_mean(tf.square(diff), axis=-1)
        safe, valid, scale = self._labels(y_true)
        probs = self._probs(y_pred)
        onehot = tf.one_hot(safe, tf.shape(probs)[-1], dtype=tf.float32)
        pixel_scale = valid * scale
        if self.kind in ("bce", "cce", "unet_weighted"):
            return self._cross_entropy(probs, onehot, safe) * pixel_scale
        if self.kind == "focal":
            return self._focal(probs, onehot) * pixel_scale
        dice = self._dice(probs, onehot, valid) * tf.ones_like(valid)
        if self.kind == "dice":
            return dice
        ce = self._cross_entropy(probs, onehot, safe) * pixel_scale
        return self.ce_weight * ce + self.dice_weight * dice

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            kind=self.kind,
            head=self.head,
            num_classes=self.num_classes,
            ignore_value=self.ignore_value,
            class_weights=self.class_weights,
            smooth=self.smooth,
            include_background=self.include_background,
            batch_dice=self.batch_dice,
            ce_weight=self.ce_weight,
            dice_weight=self.dice_weight,
            gamma=self.gamma,
            alpha=self.alpha,
        )
        return config


def build_loss(
    loss_cfg: Any, *, head: str, num_classes: int, ignore_value: int | None
) -> keras.losses.Loss:
    """Build the loss named by ``loss_cfg.name`` for a model ``head`` (auto|sigmoid|softmax|linear).

    ``auto`` => bce for a sigmoid head, sparse cce for softmax, mse for a linear head.
    """
    name, prm = loss_params(loss_cfg)
    head = resolve_head(head, num_classes)
    if name == "auto":
        name = {"sigmoid": "bce", "softmax": "cce", "linear": "mse"}[head]
    kwargs: dict[str, Any] = {}
    if name in ("bce", "cce", "bce_dice", "ce_dice"):
        kwargs["class_weights"] = prm.get("class_weights")
    if name in ("dice", "bce_dice", "ce_dice"):
        inc = prm["include_background"]
        if isinstance(inc, str):
            if inc != "auto":
                raise ConfigError(f"loss.include_background={inc!r}: expected auto, true or false")
            inc = None
        kwargs.update(
            smooth=float(prm["smooth"]), include_background=inc, batch_dice=bool(prm["batch_dice"])
        )
    if name in ("bce_dice", "ce_dice"):
        kwargs.update(ce_weight=float(prm["ce_weight"]), dice_weight=float(prm["dice_weight"]))
    if name == "focal":
        kwargs.update(gamma=float(prm["gamma"]), alpha=prm["alpha"])
    if name == "unet_weighted":
        weight_map_params(prm, num_classes)  # validate early
    return SegmentationLoss(
        name, head=head, num_classes=num_classes, ignore_value=ignore_value, name=name, **kwargs
    )
