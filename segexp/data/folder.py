"""Image/mask folders: ``dataset=folder dataset.images=<dir> dataset.masks=<dir>``.

Also the shared file backend of the file-based presets (oxford_pets, dsb2018, isbi2012 slices):
samples are listed and paired, then *validated eagerly* (every mask decoded: values, sizes,
readability; images decoded too with ``validate: full``), then streamed: each split is a
``tf.data`` pipeline that decodes files in parallel (``tf.numpy_function`` around Pillow /
tifffile), so the data never has to fit in memory; the training pipeline's ``cache`` keeps
decoded, resized samples after the first epoch.

Pairing: by file stem (``a.png`` <-> ``a.png``/``a.gif``), or by regular expressions applied to
the stems whose first group (or group ``key``) is the pairing key, e.g.
``image_pattern: '(\\d+)_training'`` and ``mask_pattern: '(\\d+)_manual1'``.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from segexp.data import decode
from segexp.data import split as splitlib
from segexp.data.source import DataSource
from segexp.errors import ConfigError, DataError

log = logging.getLogger(__name__)

FIRST_NAMES = 3
VALIDATE_MODES = ("full", "quick")


# ----------------------------------------------------------------------------- config helpers
def opt(cfg: Any, key: str, default: Any = None) -> Any:
    """``cfg[key]`` or ``default`` when missing/null (works for DictConfig and dict)."""
    value = cfg.get(key, default) if cfg is not None else default
    return default if value is None else value


def class_info(cfg: Any) -> tuple[int, list[str]]:
    """``(num_classes, class_names)`` from a dataset config."""
    names = opt(cfg, "class_names")
    num = opt(cfg, "num_classes", len(names) if names else None)
    if num is None:
        raise ConfigError("dataset.num_classes is not set")
    num = int(num)
    names = [str(n) for n in names] if names else [f"class_{i}" for i in range(num)]
    if len(names) != num:
        raise ConfigError(
            f"dataset.class_names has {len(names)} names but dataset.num_classes={num}"
        )
    return num, names


def require_root(cfg: Any, *, dataset: str, layout: str, where: str = "") -> Path:
    """The dataset root as a Path; a one-line DataError when unset or missing."""
    root = cfg.get("root")
    where = f"; {where}" if where else ""
    if root in (None, "", "???"):
        raise ConfigError(
            f"dataset.root is not set for dataset={dataset} (set dataset.root=<dir>); "
            f"expected {layout}{where}"
        )
    path = Path(str(root)).expanduser()
    if not path.exists():
        raise DataError(f"dataset.root={path} does not exist; expected {layout}{where}")
    return path


def require_dir(path: Path, what: str, layout: str, where: str) -> Path:
    """A directory that must exist inside the dataset."""
    if not path.is_dir():
        raise DataError(f"{what} {path} is not a directory; expected {layout}; {where}")
    return path


# ----------------------------------------------------------------------------- listing, pairing
def list_files(
    directory: Path, extensions: Sequence[str] = decode.IMAGE_EXTENSIONS, recursive: bool = False
) -> list[Path]:
    """Image files in ``directory`` (hidden files such as macOS ``._x.png`` excluded), sorted."""
    exts = {e.lower() if e.startswith(".") else f".{e.lower()}" for e in extensions}
    it = directory.rglob("*") if recursive else directory.iterdir()
    return sorted(
        p for p in it if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in exts
    )


def _key_fn(pattern: str | None, what: str) -> Callable[[Path], str | None]:
    if not pattern:
        return lambda p: p.stem
    try:
        regex = re.compile(pattern)
    except re.error as err:
        raise ConfigError(
            f"dataset.{what}={pattern!r}: invalid regular expression ({err})"
        ) from None

    def key(p: Path) -> str | None:
        m = regex.fullmatch(p.stem) or regex.fullmatch(p.name) or regex.search(p.name)
        if m is None:
            return None
        if "key" in m.groupdict():
            return m.group("key")
        return m.group(1) if m.groups() else m.group(0)

    return key


def _index_by_key(
    paths: Sequence[Path], key: Callable[[Path], str | None], what: str
) -> tuple[dict[str, Path], list[Path]]:
    """Paths by pairing key, and the paths that yield no key; a repeated key is an error."""
    by_key: dict[str, Path] = {}
    keyless: list[Path] = []
    for p in paths:
        k = key(p)
        if k is None:
            keyless.append(p)
        elif k in by_key:
            raise DataError(f"{what} {by_key[k]} and {p} have the same pairing key {k!r}")
        else:
            by_key[k] = p
    return by_key, keyless


def pair_files(
    images: Sequence[Path],
    masks: Sequence[Path],
    *,
    image_pattern: str | None = None,
    mask_pattern: str | None = None,
) -> tuple[list[tuple[str, Path, Path]], list[Path], list[Path]]:
    """Pair images with masks by key. Returns ``(pairs, images_without_masks,
    masks_without_images)``; pairs are ``(key, image, mask)`` sorted by key."""
    ikey, mkey = _key_fn(image_pattern, "image_pattern"), _key_fn(mask_pattern, "mask_pattern")
    by_image, lonely_images = _index_by_key(images, ikey, "images")
    by_mask, lonely_masks = _index_by_key(masks, mkey, "masks")
    pairs = [(k, by_image[k], by_mask[k]) for k in sorted(set(by_image) & set(by_mask))]
    lonely_images += [by_image[k] for k in sorted(set(by_image) - set(by_mask))]
    lonely_masks += [by_mask[k] for k in sorted(set(by_mask) - set(by_image))]
    return pairs, sorted(lonely_images), sorted(lonely_masks)


def _display(p: Any) -> str:
    return p.name if isinstance(p, Path) else str(p)


def _names(paths: Sequence[Any]) -> str:
    shown = ", ".join(_display(p) for p in list(paths)[:FIRST_NAMES])
    more = f", ... {len(paths) - FIRST_NAMES} more" if len(paths) > FIRST_NAMES else ""
    return shown + more


def check_unpaired(
    lonely_images: Sequence[Any],
    lonely_masks: Sequence[Any],
    *,
    skip_bad: bool,
    skipped: list[str],
    images_dir: Any = "",
    masks_dir: Any = "",
    hint: str = "pairing: dataset.image_pattern/mask_pattern",
) -> None:
    """One-line DataError for unpaired files, or record them as skipped when ``skip_bad``."""
    if not lonely_images and not lonely_masks:
        return
    parts = []
    if lonely_images:
        parts.append(
            f"{len(lonely_images)} image(s) without masks in {images_dir} ({_names(lonely_images)})"
        )
    if lonely_masks:
        parts.append(
            f"{len(lonely_masks)} mask(s) without images in {masks_dir} ({_names(lonely_masks)})"
        )
    if not skip_bad:
        raise DataError("; ".join(parts) + f" ({hint}; dataset.skip_bad=true skips them)")
    skipped.extend(f"{_display(p)}: image without mask" for p in lonely_images)
    skipped.extend(f"{_display(p)}: mask without image" for p in lonely_masks)


def paired_samples(
    images: Sequence[Path],
    masks: Sequence[Path],
    cfg: Any,
    images_dir: Path,
    masks_dir: Path,
    *,
    what: str = "image/mask",
) -> tuple[list[Sample], list[str]]:
    """Pair image and mask files (by stem or ``dataset.image_pattern`` / ``mask_pattern``).

    Unpaired files fail with one line, or are recorded in the returned skipped list when
    ``dataset.skip_bad`` is true.
    """
    pairs, lonely_images, lonely_masks = pair_files(
        images, masks, image_pattern=cfg.get("image_pattern"), mask_pattern=cfg.get("mask_pattern")
    )
    skipped: list[str] = []
    check_unpaired(
        lonely_images,
        lonely_masks,
        skip_bad=bool(opt(cfg, "skip_bad", False)),
        skipped=skipped,
        images_dir=images_dir,
        masks_dir=masks_dir,
    )
    if not pairs:
        raise DataError(f"no {what} pairs in {images_dir} and {masks_dir}")
    return [Sample(k, i, [m]) for k, i, m in pairs], skipped


# ----------------------------------------------------------------------------- validation
@dataclass
class Sample:
    """One image with one or more mask files (several are merged by maximum, e.g. DSB2018)."""

    name: str
    image: Path
    masks: list[Path]


@dataclass
class Checked:
    """What the eager check of one sample found."""

    sample: Sample
    shape: tuple[int, int] = (0, 0)
    counts: np.ndarray | None = None
    ignored: int = 0
    digests: list[str] = field(default_factory=list)
    error: str | None = None


def read_merged_mask(
    sample: Sample, palette: str = "auto", datas: Sequence[bytes | None] | None = None
) -> np.ndarray:
    """The sample's stored mask values, merged over its mask files by maximum."""
    merged = None
    for i, path in enumerate(sample.masks):
        plane = decode.read_mask(path, datas[i] if datas else None, palette)
        if merged is not None and plane.shape != merged.shape:
            raise DataError(
                f"masks {sample.masks[0]} ({merged.shape[0]}x{merged.shape[1]}) and "
                f"{path} ({plane.shape[0]}x{plane.shape[1]}) differ in size"
            )
        merged = plane if merged is None else np.maximum(merged, plane)
    assert merged is not None
    return merged


def check_sample(
    sample: Sample,
    mask_map: decode.MaskMap,
    *,
    channels: int,
    validate: str = "full",
    palette: str = "auto",
    fingerprint: str = "content",
) -> Checked:
    """Decode and check one sample; errors are returned (one line), not raised."""
    out = Checked(sample)
    try:
        paths = [sample.image, *sample.masks]
        datas: list[bytes | None] = []
        for p in paths:
            try:
                datas.append(p.read_bytes())
            except OSError as err:
                raise DataError(f"cannot read {p}: {err.strerror or err}") from None
        if fingerprint == "content":
            out.digests = [splitlib.file_digest(p, d) for p, d in zip(paths, datas, strict=True)]
        elif fingerprint == "stat":
            out.digests = [f"{len(d)}" for d in datas]
        if validate == "full":
            img = decode.read_image(sample.image, channels, datas[0])
            shape = (int(img.shape[0]), int(img.shape[1]))
        else:
            shape = decode.image_shape(sample.image, datas[0])
        raw = read_merged_mask(sample, palette, datas[1:])
        if raw.shape != shape:
            first = sample.masks[0] if len(sample.masks) == 1 else f"{sample.masks[0].parent}/*"
            raise DataError(
                f"image {sample.image} ({shape[0]}x{shape[1]}) and mask {first} "
                f"({raw.shape[0]}x{raw.shape[1]}) differ in size"
            )
        bad = mask_map.invalid_values(raw)
        if bad:
            where = sample.masks[0] if len(sample.masks) == 1 else f"{sample.masks[0].parent}/*"
            raise DataError(
                f"mask {where} has values {bad} outside the class map "
                f"(accepted stored values {mask_map.describe()}; set "
                "dataset.mask_values / dataset.ignore_value)"
            )
        ids = mask_map.apply(raw)
        out.shape = shape
        out.counts = mask_map.class_counts(ids)
        out.ignored = int(ids.size - out.counts.sum())
    except DataError as err:
        out.error = str(err)
    return out


def _workers() -> int:
    return max(2, min(8, 2 * (os.cpu_count() or 1)))


def validate_samples(
    samples: Sequence[Sample],
    mask_map: decode.MaskMap,
    *,
    channels: int,
    cfg: Any,
    skipped: list[str],
) -> list[Checked]:
    """Check every sample eagerly (in threads). Raises one DataError for the first bad sample
    (with the count of others) unless ``skip_bad``, which records them in ``skipped``."""
    validate = str(opt(cfg, "validate", "full"))
    if validate not in VALIDATE_MODES:
        raise ConfigError(f"dataset.validate={validate!r}: expected one of {VALIDATE_MODES}")
    palette = str(opt(cfg, "mask_palette", "auto"))
    if palette not in ("auto", "index", "gray"):
        raise ConfigError(f"dataset.mask_palette={palette!r}: expected auto, index or gray")
    fingerprint = str(opt(cfg, "fingerprint", "content"))
    if fingerprint not in ("content", "stat", "none"):
        raise ConfigError(f"dataset.fingerprint={fingerprint!r}: expected content, stat or none")

    def one(s: Sample) -> Checked:
        return check_sample(
            s,
            mask_map,
            channels=channels,
            validate=validate,
            palette=palette,
            fingerprint=fingerprint,
        )

    if len(samples) > 4:
        with ThreadPoolExecutor(_workers()) as pool:
            checked = list(pool.map(one, samples))
    else:
        checked = [one(s) for s in samples]
    bad = [c for c in checked if c.error]
    if bad and not bool(opt(cfg, "skip_bad", False)):
        more = f" (and {len(bad) - 1} more bad sample(s))" if len(bad) > 1 else ""
        raise DataError(f"{bad[0].error}{more}; dataset.skip_bad=true skips bad samples")
    for c in bad:
        skipped.append(f"{c.sample.name}: {c.error}")
        log.warning("skipping sample %s: %s", c.sample.name, c.error)
    good = [c for c in checked if not c.error]
    if not good:
        raise DataError("no usable samples left after skipping bad ones")
    return good


# ----------------------------------------------------------------------------- tf.data
def geometry(ds: Any, cfg: Any, image_size: tuple[int, int], fill: int) -> Any:
    """Optional tiling (``tile: 256``), then resize/crop/pad to ``image_size``."""
    import tensorflow as tf

    tile = opt(cfg, "tile")
    mode = str(opt(cfg, "resize", "resize"))
    if mode not in decode.RESIZE_MODES:
        raise ConfigError(f"dataset.resize={mode!r}: expected one of {decode.RESIZE_MODES}")
    if tile:
        t = int(tile)
        ds = ds.flat_map(
            lambda im, m: tf.data.Dataset.from_tensor_slices(decode.tile_pair(im, m, t))
        )
    return ds.map(
        lambda im, m: decode.resize_pair(im, m, image_size, mode, fill),
        num_parallel_calls=tf.data.AUTOTUNE,
    )


def index_dataset(
    n: int,
    load_fn: Callable[[int], tuple[np.ndarray, np.ndarray]],
    channels: int,
    indices: np.ndarray,
) -> Any:
    """A dataset of ``load_fn(i)`` for ``i`` in ``indices``, decoded in parallel, in order."""
    import tensorflow as tf

    def py_load(i: Any) -> tuple[np.ndarray, np.ndarray]:
        image, mask = load_fn(int(i))
        return image.astype(np.float32), mask.astype(np.int32)

    def tf_load(i: Any) -> tuple[Any, Any]:
        image, mask = tf.numpy_function(py_load, [i], [tf.float32, tf.int32], stateful=False)
        return (
            tf.ensure_shape(image, (None, None, channels)),
            tf.ensure_shape(mask, (None, None, 1)),
        )

    ds = tf.data.Dataset.from_tensor_slices(np.asarray(indices, np.int64).reshape(-1))
    return ds.map(tf_load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def fill_value(cfg: Any) -> int:
    """The mask value used for padding: ignore_value when set, else 0."""
    ignore = cfg.get("ignore_value")
    return 0 if ignore is None else int(ignore)


def build_file_source(
    name: str,
    samples: Sequence[Sample],
    cfg: Any,
    image_size: tuple[int, int],
    channels: int,
    seed: int,
    *,
    root: Path,
    skipped: list[str] | None = None,
    extra: dict[str, Any] | None = None,
    instance_fn: Callable[[Sample], np.ndarray] | None = None,
) -> DataSource:
    """Validate ``samples`` and stream them as a :class:`DataSource` split by ``cfg.split``.

    ``instance_fn(sample) -> [H, W]`` object ids adds ``DataSource.instances``: the same
    splits, tiling and resizing (nearest neighbour) applied to the object ids."""
    num_classes, class_names = class_info(cfg)
    mask_map = decode.mask_map_from_cfg(cfg, num_classes)
    skipped = [] if skipped is None else skipped
    samples = sorted(samples, key=lambda s: s.name)
    checked = validate_samples(samples, mask_map, channels=channels, cfg=cfg, skipped=skipped)
    good = [c.sample for c in checked]
    palette = str(opt(cfg, "mask_palette", "auto"))

    def load_fn(i: int) -> tuple[np.ndarray, np.ndarray]:
        s = good[i]
        image = decode.read_image(s.image, channels)
        mask = mask_map.apply(read_merged_mask(s, palette))[..., None]
        return image, mask

    fractions = splitlib.split_fractions(cfg.get("split"))
    idx = splitlib.split_indices(len(good), fractions, seed)
    idx["train"] = splitlib.limit(idx["train"], cfg.get("train_size"), seed)
    tile = opt(cfg, "tile")
    fill = fill_value(cfg)
    splits, sizes = {}, {}
    for key in splitlib.SPLITS:
        ds = index_dataset(len(good), load_fn, channels, idx[key])
        splits[key] = geometry(ds, cfg, image_size, fill)
        sizes[key] = int(sum(decode.tiles_per_image(checked[i].shape, tile) for i in idx[key]))
    instances = None
    if instance_fn is not None:

        def load_ids(i: int) -> tuple[np.ndarray, np.ndarray]:
            ids = np.asarray(instance_fn(good[i]), np.int32)
            return np.zeros((*ids.shape, 1), np.float32), ids[..., None]

        instances = {
            key: geometry(index_dataset(len(good), load_ids, 1, idx[key]), cfg, image_size, 0).map(
                lambda _image, ids: ids
            )
            for key in splitlib.SPLITS
        }
    if tile and sizes["train"] == 0:
        raise ConfigError(f"dataset.tile={tile} is larger than the training images")
    counts_all = np.sum([c.counts for c in checked], axis=0)
    counts_train = (
        np.sum([checked[i].counts for i in idx["train"]], axis=0)
        if len(idx["train"])
        else np.zeros(num_classes)
    )
    total = int(sum(c.shape[0] * c.shape[1] for c in checked))
    info = splitlib.lineage(
        sizes,
        counts_train,
        counts_all,
        class_names,
        ignored=sum(c.ignored for c in checked),
        total_pixels=total,
    )
    fp_mode = str(opt(cfg, "fingerprint", "content"))
    fingerprint = ""
    if fp_mode != "none":
        parts = []
        for c in checked:
            rels = [_rel(p, root) for p in (c.sample.image, *c.sample.masks)]
            parts.extend(f"{r}:{d}" for r, d in zip(rels, c.digests, strict=True))
        fingerprint = splitlib.digest(parts)
    info.update(
        {
            "num_samples": len(good),
            "skipped": list(skipped),
            "num_skipped": len(skipped),
            "image_shapes": _shape_summary([c.shape for c in checked]),
            "fingerprint_mode": fp_mode,
        }
    )
    info.update(extra or {})
    if skipped:
        log.warning("%s: skipped %d bad sample(s) (dataset.skip_bad=true)", name, len(skipped))
    return DataSource(
        name=name,
        splits=splits,
        sizes=sizes,
        num_classes=num_classes,
        class_names=class_names,
        channels=channels,
        ignore_value=cfg.get("ignore_value"),
        root=str(root),
        fingerprint=fingerprint,
        labels=None,
        extra=info,
        instances=instances,
    )


def _rel(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return path.name


def _shape_summary(shapes: Sequence[tuple[int, int]]) -> str:
    uniq = sorted(set(shapes))
    if len(uniq) == 1:
        return f"{uniq[0][0]}x{uniq[0][1]}"
    hs, ws = [s[0] for s in shapes], [s[1] for s in shapes]
    return f"{len(uniq)} sizes, {min(hs)}..{max(hs)} x {min(ws)}..{max(ws)}"


# ----------------------------------------------------------------------------- the loader
LAYOUT = "dataset.images=<dir of images> and dataset.masks=<dir of masks>, paired by file stem"


def resolve(root: Path | None, value: Any) -> Path:
    """``value`` as a path, relative to ``root`` when not absolute."""
    path = Path(str(value)).expanduser()
    if root is not None and not path.is_absolute():
        path = root / path
    return path


def check_paths(cfg: Any) -> tuple[Path | None, Path, Path]:
    """``(root, images_dir, masks_dir)``; a one-line error naming the key of a missing one."""
    root = cfg.get("root")
    root_path = Path(str(root)).expanduser() if root not in (None, "") else None
    if root_path is not None and not root_path.exists():
        raise DataError(
            f"dataset.root={root_path} does not exist; expected {LAYOUT} (or dataset.root=null)"
        )
    if not cfg.get("images") or not cfg.get("masks"):
        raise ConfigError(f"dataset=folder needs {LAYOUT} (set both keys)")
    dirs = {key: resolve(root_path, cfg.get(key)) for key in ("images", "masks")}
    for key, d in dirs.items():
        if not d.is_dir():
            under = f" under dataset.root={root_path}" if root_path is not None else ""
            what = "image folder" if key == "images" else "mask folder"
            raise DataError(
                f"{what} {d} does not exist (dataset.{key}={cfg.get(key)}{under}); "
                f"expected {LAYOUT}"
            )
    return root_path, dirs["images"], dirs["masks"]


def load(cfg: Any, image_size: tuple[int, int], channels: int, seed: int) -> DataSource:
    """Load a pair of image/mask folders (keys ``images``, ``masks``, optional ``root``)."""
    root_path, images_dir, masks_dir = check_paths(cfg)
    exts = opt(cfg, "extensions", decode.IMAGE_EXTENSIONS)
    recursive = bool(opt(cfg, "recursive", False))
    images = list_files(images_dir, exts, recursive)
    masks = list_files(masks_dir, exts, recursive)
    if not images:
        raise DataError(
            f"no image files ({', '.join(exts)}) in {images_dir} (dataset.images= points "
            f"elsewhere, dataset.extensions= lists the suffixes); expected {LAYOUT}"
        )
    samples, skipped = paired_samples(images, masks, cfg, images_dir, masks_dir)
    base = root_path or Path(os.path.commonpath([images_dir, masks_dir]))
    return build_file_source(
        str(opt(cfg, "name", "folder")),
        samples,
        cfg,
        image_size,
        channels,
        seed,
        root=base,
        skipped=skipped,
        extra={"images_dir": str(images_dir), "masks_dir": str(masks_dir)},
    )
