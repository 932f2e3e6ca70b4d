"""Schema of the ``dataset`` group: one dataclass per data source."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING

CHALLENGE_METRICS = ["image_mean_iou", "image_dice"]
# Image files the loaders and segexp-predict read (and the folder dataset's default extensions).
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".gif", ".bmp", ".webp")


def _list(*values: Any) -> Any:
    return field(default_factory=lambda: list(values))


def _split(train: float, val: float, test: float) -> Any:
    return field(default_factory=lambda: {"train": train, "val": val, "test": test})


@dataclass
class DatasetConf:
    """Keys every data source has."""

    # The source (conf/dataset/<name>.yaml, segexp.data).
    name: str = MISSING
    # Classes the masks hold (class ids 0..num_classes-1).
    num_classes: int | None = 2
    # Stored mask value kept as-is and skipped by losses/metrics (e.g. 255 for a "don't care" band).
    ignore_value: int | None = None
    # Model input geometry when model.input_shape is null.
    image_size: list[int] = _list(128, 128)
    # Image channels the model gets (1 = grey, 3 = RGB).
    channels: int = 3
    # Cache the decoded samples in memory after the first epoch.
    cache: bool = True
    # Shuffle buffer in samples; null = 4096 with cache on, 256 with cache off (streaming).
    shuffle_buffer: int | None = None
    # Challenge metrics on the test split after training, logged as test_<name>
    # (segexp/challenge.py): image_mean_iou, image_dice, instance_map, rand_error, pixel_error,
    # hd95.
    challenge_metrics: list[str] = _list(*CHALLENGE_METRICS)


@dataclass
class SyntheticConf(DatasetConf):
    """Built-in synthetic images, generated from the seed: no files, no network."""

    name: str = "synthetic"
    # trimap: 3 classes (background, object, boundary); binary: 2 classes (background, object);
    # auto: follow the model preset's num_classes (3 -> trimap, otherwise binary).
    mode: str = "auto"
    image_size: list[int] = _list(64, 64)
    channels: int = 1
    # Images generated in all.
    num_images: int = 320
    # Fractions of the images in each split.
    split: dict[str, float] = _split(0.6, 0.2, 0.2)
    # Boundary width in pixels (trimap mode).
    boundary_width: int = 2
    # Standard deviation of the additive pixel noise.
    noise: float = 0.1
    # Cap on the training split (null = all), for training-set-size sweeps (an integer, checked
    # by segexp.config.check_integers).
    train_size: Any = None


@dataclass
class FileDatasetConf(DatasetConf):
    """Keys of the sources read from disk."""

    # The data folder; ??? = must be given (dataset.root=...).
    root: str | None = MISSING
    # Names of the classes 0..num_classes-1 (metric names, legends).
    class_names: list[str] = _list("background", "foreground")
    # Stored mask value -> class id (null: masks already hold 0..num_classes-1). A plain override
    # replaces this map, `+` changes one entry:
    #   'dataset.mask_values={0:0,128:1}'   or   +dataset.mask_values.128=1
    # (Any: OmegaConf cannot assign a map to a typed Optional[Dict] node after null.)
    mask_values: Any = None
    # resize (bilinear images, nearest masks) | crop (centre crop/pad) | pad (keep aspect,
    # letterbox). Padded mask pixels get ignore_value when it is set, else class 0.
    resize: str = "resize"
    # Optional square patches cut before resizing (e.g. 256); null = whole images.
    tile: int | None = None
    # Content fingerprint for lineage: content (sha256 of bytes) | stat (names, sizes) | none.
    fingerprint: str = "content"


@dataclass
class MnistConf(FileDatasetConf):
    """MNIST digits from a local mnist.npz (reconstruction: masks are dummy zeros)."""

    name: str = "mnist"
    task: str = "reconstruction"
    # The file below root.
    file: str = "mnist.npz"
    # Keep only these digits; null = all ten.
    digits: list[int] | None = _list(1, 5, 6)
    # Validation share carved from x_train; the test split is x_test.
    val_fraction: float = 0.1
    # Cap on every split's size (quick runs); null = all.
    limit: int | None = None
    num_classes: int | None = 1
    class_names: list[str] = _list("digit")
    image_size: list[int] = _list(28, 28)
    channels: int = 1
    # Reconstruction task: no segmentation challenge metrics.
    challenge_metrics: list[str] = _list()


@dataclass
class SplitDatasetConf(FileDatasetConf):
    """Keys of the sources split into train/val/test here."""

    # Binarise masks instead (value >= threshold -> 1), e.g. 128 for JPEG-compressed masks.
    mask_threshold: int | None = None
    split: dict[str, float] = _split(0.8, 0.1, 0.1)
    # Cap on the training-split size (sweeps); null = all (an integer, check_integers).
    train_size: Any = None
    # Skip unpaired/corrupt/inconsistent samples (counted and logged) instead of failing.
    skip_bad: bool = False


@dataclass
class ArraysConf(SplitDatasetConf):
    """NumPy arrays: images [N,H,W(,C)], masks [N,H,W] index or [N,H,W,K] one-hot."""

    name: str = "arrays"
    # Image and mask arrays (.npy or .npz) below root.
    images: str = "images_training.npy"
    masks: str = "seg_training.npy"
    # For .npz files: the member to use (null: the only member).
    images_key: str | None = None
    masks_key: str | None = None
    # Optional per-sample labels (.npy / .npz) kept in DataSource.labels.
    labels: str | None = None
    labels_key: str | None = None
    # Optional separate test arrays with masks; otherwise test is split off like val.
    test_images: str | None = None
    test_masks: str | None = None
    # auto | index | onehot.
    mask_format: str = "auto"
    class_names: list[str] = _list("background", "object")
    image_size: list[int] = _list(224, 224)


@dataclass
class CheckedDatasetConf(SplitDatasetConf):
    """Keys of the image-file sources checked before training."""

    # Palette (indexed) masks: auto = indices, or grey levels when the palette is grey; index; gray.
    mask_palette: str = "auto"
    # Eager checks before training: full (decode everything) | quick (masks + image headers).
    validate: str = "full"


@dataclass
class Dsb2018Conf(CheckedDatasetConf):
    """Kaggle Data Science Bowl 2018 nuclei: <root>/<id>/images/<id>.png + masks/*.png."""

    name: str = "dsb2018"
    # The folder below root that holds the samples (when root contains it).
    subset: str = "stage1_train"
    class_names: list[str] = _list("background", "nucleus")
    mask_values: Any = field(default_factory=lambda: {0: 0, 255: 1})
    # instance_map matches predicted components to the nuclei, one per mask file.
    challenge_metrics: list[str] = _list(*CHALLENGE_METRICS, "instance_map", "hd95")


@dataclass
class FolderConf(CheckedDatasetConf):
    """A folder of images and a folder of masks, paired by stem or by regular expressions."""

    name: str = "folder"
    # Optional base for relative images/masks paths.
    root: str | None = None
    # Image and mask folders (relative to root when it is set); ??? = must be given.
    images: str = MISSING
    masks: str = MISSING
    # Regular expressions on the stems whose first group (or group "key") pairs the files.
    image_pattern: str | None = None
    mask_pattern: str | None = None
    # Also search the folders' subfolders.
    recursive: bool = False
    # Image and mask file extensions looked for.
    extensions: list[str] = _list(*IMAGE_EXTENSIONS)
    mask_values: Any = field(default_factory=lambda: {0: 0, 255: 1})
    split: dict[str, float] = _split(0.7, 0.15, 0.15)


@dataclass
class Isbi2012Conf(CheckedDatasetConf):
    """ISBI 2012 EM membranes: a tiff volume pair or slices as PNGs."""

    name: str = "isbi2012"
    # tiff | slices | auto (tiff when the volume exists).
    format: str = "auto"
    # tiff: the volume and label stacks below root; slices: the image and label folders.
    volume: str = "train-volume.tif"
    labels: str = "train-labels.tif"
    images: str = "images"
    masks: str = "labels"
    # Labels store 255 cell / 0 membrane; membrane is the positive class (id 1).
    class_names: list[str] = _list("cell", "membrane")
    # Objects of the U-Net weight map (loss=unet_weighted): the cells the membrane separates.
    object_class: str = "cell"
    mask_values: Any = field(default_factory=lambda: {0: 1, 255: 0})
    image_size: list[int] = _list(256, 256)
    channels: int = 1
    # 256x256 patches (4 per slice); null = whole slices resized to image_size.
    tile: int | None = 256
    # Split per slice (before tiling): 30 slices -> 21 / 5 / 4.
    split: dict[str, float] = _split(0.7, 0.15, 0.15)
    # rand_error: cells are the connected components of class 0 (cell interior).
    challenge_metrics: list[str] = _list("rand_error", "pixel_error")


@dataclass
class OxfordPetsConf(CheckedDatasetConf):
    """Oxford-IIIT Pet trimaps: raw release archives unpacked, or a prepared TFDS data_dir."""

    name: str = "oxford_pets"
    # raw | tfds (TFDS train/test splits, val carved from train; nothing is downloaded).
    format: str = "raw"
    # raw: image and trimap folders below root; tfds: dataset name and splits.
    images: str = "images"
    masks: str = "annotations/trimaps"
    tfds_name: str = "oxford_iiit_pet"
    train_split: str = "train"
    test_split: str = "test"
    num_classes: int | None = 3
    class_names: list[str] = _list("background", "pet", "border")
    # Trimaps store 1 pet, 2 background, 3 border.
    mask_values: Any = field(default_factory=lambda: {1: 1, 2: 0, 3: 2})


DATASETS: dict[str, type[DatasetConf]] = {
    c.name: c
    for c in (
        SyntheticConf,
        ArraysConf,
        Dsb2018Conf,
        FolderConf,
        Isbi2012Conf,
        MnistConf,
        OxfordPetsConf,
    )
}
