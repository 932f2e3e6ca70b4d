"""Registers segexp's custom Keras objects so saved segexp models load with plain Keras.

``import segexp.saving`` before ``keras.saving.load_model(path)`` (safe mode, compile included)
for a checkpoint such as ``checkpoints/best.keras``; the loss and metrics are registered as
``segexp>SegmentationLoss`` and ``segexp>ConfusionMatrixMetric``.
"""

from __future__ import annotations

from segexp.losses import SegmentationLoss
from segexp.metrics import ConfusionMatrixMetric

#: Every custom object a compiled segexp model refers to (for ``custom_objects=``).
CUSTOM_OBJECTS = {
    "segexp>SegmentationLoss": SegmentationLoss,
    "segexp>ConfusionMatrixMetric": ConfusionMatrixMetric,
}
