"""Variant (c): an ImageDataGenerator-style Python augmentation loop feeding ``fit``.

Keras 2 ``ImageDataGenerator``-style augmentation in Python on NumPy arrays (SciPy per channel,
one worker), the articles' input pipeline."""

from __future__ import annotations

import math
from typing import Any

from segexp.errors import ConfigError


def _affine_matrix(rng: Any, prm: dict, h: int, w: int) -> Any:
    """Keras 2 ``ImageDataGenerator.get_random_transform`` + ``apply_affine_transform`` matrix
    (output -> input, in (row, col) coordinates, about the image centre)."""
    import numpy as np

    theta = np.deg2rad(rng.uniform(-prm["rotation_range"], prm["rotation_range"]))
    ws, hs = float(prm["width_shift_range"]), float(prm["height_shift_range"])
    tx = rng.uniform(-hs, hs) * (h if hs < 1 else 1)
    ty = rng.uniform(-ws, ws) * (w if ws < 1 else 1)
    shear = np.deg2rad(rng.uniform(-prm["shear_range"], prm["shear_range"]))
    z = prm["zoom_range"]
    lo, hi = (1 - z, 1 + z) if not isinstance(z, list | tuple) else z
    zx, zy = (1.0, 1.0) if lo == hi == 1 else rng.uniform(lo, hi, 2)
    m = np.eye(3)
    if theta:
        m = m @ np.array(
            [[np.cos(theta), -np.sin(theta), 0], [np.sin(theta), np.cos(theta), 0], [0, 0, 1]]
        )
    if tx or ty:
        m = m @ np.array([[1, 0, tx], [0, 1, ty], [0, 0, 1]])
    if shear:
        m = m @ np.array([[1, -np.sin(shear), 0], [0, np.cos(shear), 0], [0, 0, 1]])
    if zx != 1 or zy != 1:
        m = m @ np.array([[zx, 0, 0], [0, zy, 0], [0, 0, 1]])
    ox, oy = h / 2 + 0.5, w / 2 + 0.5
    offset = np.array([[1, 0, ox], [0, 1, oy], [0, 0, 1]])
    reset = np.array([[1, 0, -ox], [0, 1, -oy], [0, 0, 1]])
    return offset @ m @ reset


def python_augment(
    kind: str, prm: dict, image: Any, mask: Any, rng: Any, weights: Any = None
) -> tuple[Any, ...]:
    """One sample, ImageDataGenerator-style: SciPy per channel, image order 1, mask order 0.

    ``weights`` (a ``[H, W]`` sample-weight map) moves exactly like the mask, as segexp carries
    it through augmentation, with 0 where a constant fill invents pixels; it is returned third.
    """
    import numpy as np
    from scipy import ndimage

    h, w = image.shape[:2]

    def planes(x: Any, move: Any) -> Any:
        return np.stack([move(x[..., c]) for c in range(x.shape[-1])], axis=-1)

    if kind == "affine":
        mode = {"reflect": "reflect", "constant": "constant", "nearest": "nearest"}.get(
            str(prm["fill_mode"]), "wrap"
        )
        t = _affine_matrix(rng, prm, h, w)
        mat, off = t[:2, :2], t[:2, 2]

        def nearest(plane: Any, cval: Any) -> Any:
            return ndimage.affine_transform(plane, mat, off, order=0, mode=mode, cval=cval)

        image = planes(
            image,
            lambda p: ndimage.affine_transform(
                p, mat, off, order=1, mode=mode, cval=float(prm["fill_value"])
            ),
        )
        mask = planes(mask, lambda p: nearest(p, prm["mask_fill_value"]))
        weights = None if weights is None else nearest(weights, 0.0)
        flips = [
            (1, prm["horizontal_flip"] and rng.uniform() < 0.5),
            (0, prm["vertical_flip"] and rng.uniform() < 0.5),
        ]
    elif kind == "elastic":
        g = prm["grid_size"]
        gh, gw = (g, g) if isinstance(g, int) else tuple(g)
        coarse = rng.normal(0.0, float(prm["sigma"]), (2, gh, gw))
        order = 3 if str(prm["interpolation"]) == "bicubic" else 1
        # corner-aligned upsampling of the coarse grid to exactly (h, w) (grid_mode=False)
        dy, dx = (ndimage.zoom(c, (h / gh, w / gw), order=order) for c in coarse)
        rr, cc = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
        coords = np.stack([rr + dy, cc + dx])

        def warp(plane: Any, order: int) -> Any:
            return ndimage.map_coordinates(plane, coords, order=order, mode="mirror")

        image = planes(image, lambda p: warp(p, 1))
        mask = planes(mask, lambda p: warp(p, 0))
        weights = None if weights is None else warp(weights, 0)
        flips = []
    elif kind == "flip":
        flips = [
            (1, prm["horizontal"] and rng.uniform() < prm["p"]),
            (0, prm["vertical"] and rng.uniform() < prm["p"]),
        ]
    else:
        raise ConfigError(f"bench: no Python baseline for augmentation {kind!r}")
    for axis, flip in flips:
        if flip:
            image, mask = np.flip(image, axis), np.flip(mask, axis)
            weights = None if weights is None else np.flip(weights, axis)
    return (image, mask) if weights is None else (image, mask, weights)


def python_dataset(
    x: Any,
    y: Any,
    batch_size: int,
    kind: str,
    prm: dict,
    seed: int,
    *,
    crop: tuple[int, int],
    target: str,
    input_scale: float = 1.0,
    weights: Any = None,
):
    """A ``keras.utils.PyDataset`` (Keras 2 ``Sequence``-like) doing the augmentation in Python,
    its batches finished as segexp's pipeline finishes them (image target or cropped mask,
    images times ``input_scale``). ``weights``: each sample's weight map ``[N, H, W]`` (the
    ``unet_weighted`` loss), augmented with its mask and cropped like it, as the batches'
    sample weights."""
    import keras
    import numpy as np

    from segexp.data.decode import to_model_input
    from segexp.data.pipeline import center_crop_mask

    class NumpyAugmentIterator(keras.utils.PyDataset):
        def __init__(self) -> None:
            super().__init__(workers=1, use_multiprocessing=False, max_queue_size=10)
            self.rng = np.random.default_rng(seed)
            self.order = self.rng.permutation(len(x))

        def __len__(self) -> int:
            return math.ceil(len(x) / batch_size)

        def __getitem__(self, i: int) -> tuple[Any, ...]:
            idx = self.order[i * batch_size : (i + 1) * batch_size]
            weighted = weights is not None and target == "mask"
            samples = [
                python_augment(kind, prm, x[j], y[j], self.rng, weights[j] if weighted else None)
                for j in idx
            ]
            bx = np.stack([s[0] for s in samples]).astype(np.float32)
            if target == "image":
                return to_model_input(bx, input_scale), bx
            # The mask, and the weight map after it, cropped alike.
            targets = [
                np.stack([center_crop_mask(s[k], crop) for s in samples])
                for k in range(1, len(samples[0]))
            ]
            return to_model_input(bx, input_scale), *targets

        def on_epoch_end(self) -> None:
            self.order = self.rng.permutation(len(x))

    return NumpyAugmentIterator()
