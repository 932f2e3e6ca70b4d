"""MNIST from a local ``mnist.npz``, for the convolutional autoencoder.

MNIST from a local ``mnist.npz`` in the Keras layout (``x_train, y_train, x_test, y_test``),
for the convolutional autoencoder. Masks are dummies (zeros): the task is reconstruction;
``DataSource.labels`` holds the digits (for the latent-space scatter plot).

The file is what ``keras.datasets.mnist.load_data()`` caches in ``~/.keras/datasets/``; nothing
is downloaded here. ``digits: [1, 5, 6]`` keeps only those digits (as the lecture notes do).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from segexp.data import split as splitlib
from segexp.data.array_source import build_array_source
from segexp.data.keys import class_info
from segexp.data.source import DataSource
from segexp.errors import ConfigError, DataError, first_line

KEYS = ("x_train", "y_train", "x_test", "y_test")
WHERE = (
    "copy mnist.npz from a machine where keras.datasets.mnist.load_data() ran "
    "(~/.keras/datasets/mnist.npz) or from https://storage.googleapis.com/tensorflow/"
    "tf-keras-datasets/mnist.npz"
)


def load(cfg: Any, image_size: tuple[int, int], channels: int, seed: int) -> DataSource:
    """Load MNIST digits (optionally filtered) with train/val (carved from train)/test splits."""
    root = cfg.get("root")
    layout = f"<root>/{cfg.file} with arrays {', '.join(KEYS)}"
    if root in (None, "", "???"):
        raise ConfigError(
            f"dataset.root is not set for dataset=mnist (set dataset.root=<dir>); "
            f"expected {layout}; {WHERE}"
        )
    path = Path(str(root)).expanduser()
    if path.is_dir():
        path = path / str(cfg.file)
    if not path.exists():
        raise DataError(
            f"dataset file {path} does not exist; expected {layout} (set with dataset.root=, "
            f"dataset.file=); {WHERE}"
        )
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in KEYS if k not in npz]
            if missing:
                raise DataError(f"{path} lacks arrays {missing}; expected {layout}")
            x_train, y_train, x_test, y_test = (np.asarray(npz[k]) for k in KEYS)
    except DataError:
        raise
    except Exception as err:
        raise DataError(
            f"cannot read {path}: corrupt or not an .npz file ({first_line(err)})"
        ) from None
    for x, y, part in ((x_train, y_train, "train"), (x_test, y_test, "test")):
        if x.ndim not in (3, 4) or len(x) != len(y):
            raise DataError(
                f"{path}: x_{part} {x.shape} / y_{part} {y.shape} are not "
                "[N,H,W] images with N labels"
            )
    images = np.concatenate([x_train, x_test])
    labels = np.concatenate([y_train, y_test]).astype(np.int64).reshape(-1)
    train_all = np.arange(len(x_train))
    test = np.arange(len(x_train), len(images))
    digits = cfg.get("digits")
    if digits:
        wanted = np.asarray([int(d) for d in digits])
        train_all = train_all[np.isin(labels[train_all], wanted)]
        test = test[np.isin(labels[test], wanted)]
        if not len(train_all):
            raise DataError(f"{path}: no training images of digits {list(wanted)}")
    val_fraction = float(cfg.val_fraction)
    train, val = splitlib.carve(train_all, val_fraction, seed)
    cap = cfg.get("limit")
    split_idx = {"train": train, "val": val, "test": test}
    if cap is not None:
        split_idx = {k: splitlib.limit(v, int(cap), seed) for k, v in split_idx.items()}
    num_classes, class_names = class_info(cfg)
    mode = str(cfg.fingerprint)
    fingerprint = (
        ""
        if mode == "none"
        else splitlib.fingerprint_files(
            [path], root=None, mode="stat" if mode == "stat" else "content"
        )
    )
    return build_array_source(
        "mnist",
        images,
        None,
        cfg,
        image_size,
        channels,
        seed,
        root=str(path),
        names=("x", "y"),
        split_idx=split_idx,
        labels=labels,
        fingerprint=fingerprint,
        num_classes=num_classes,
        class_names=class_names,
        extra={
            "digits": sorted({int(d) for d in labels[np.concatenate(list(split_idx.values()))]}),
            "task": "reconstruction",
        },
    )
