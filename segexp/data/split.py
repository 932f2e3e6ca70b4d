"""Deterministic splits, content fingerprints and class pixel frequencies (dataset lineage)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from segexp.errors import ConfigError

SPLITS = ("train", "val", "test")
FINGERPRINT_CHARS = 16
SPLIT_TOLERANCE = 1e-3  # how far from 1 the fractions may sum (rounding, e.g. 0.33 * 3)


def split_fractions(
    split_cfg: Mapping[str, Any] | None, default: Mapping[str, float] | None = None
) -> dict[str, float]:
    """Read ``split: {train, val, test}`` fractions, which must sum to 1 (within rounding)."""
    split_cfg = (
        dict(split_cfg)
        if split_cfg is not None
        else dict(default or {"train": 0.7, "val": 0.15, "test": 0.15})
    )
    unknown = set(split_cfg) - set(SPLITS)
    if unknown:
        raise ConfigError(
            f"dataset.split has unknown keys {sorted(unknown)}; expected train/val/test"
        )
    try:
        fractions = {k: float(split_cfg.get(k) or 0.0) for k in SPLITS}
    except (TypeError, ValueError):
        raise ConfigError(f"dataset.split={split_cfg}: fractions must be numbers") from None
    total = sum(fractions.values())
    if any(v < 0 for v in fractions.values()) or total <= 0 or fractions["train"] <= 0:
        raise ConfigError(f"dataset.split={split_cfg}: need train > 0 and no negative fractions")
    if abs(total - 1.0) > SPLIT_TOLERANCE:
        shown = ", ".join(f"{k}: {fractions[k]:g}" for k in SPLITS)
        raise ConfigError(
            f"dataset.split={{{shown}}} sums to {total:g}; the fractions must sum to 1 "
            "(change dataset.split.train / val / test)"
        )
    return {k: v / total for k, v in fractions.items()}


def split_counts(n: int, fractions: Mapping[str, float]) -> dict[str, int]:
    """Sizes of the splits of ``n`` samples; val/test get at least one sample when asked for
    (and when there are enough samples), train takes the rest."""
    counts = {}
    for key in ("val", "test"):
        f = float(fractions.get(key, 0.0))
        counts[key] = int(round(n * f))
        if f > 0 and counts[key] == 0 and n >= 3:
            counts[key] = 1
    while counts["val"] + counts["test"] >= n and (counts["val"] or counts["test"]):
        key = "test" if counts["test"] >= counts["val"] else "val"
        counts[key] -= 1
    counts["train"] = n - counts["val"] - counts["test"]
    return {k: counts[k] for k in SPLITS}


def split_indices(n: int, fractions: Mapping[str, float], seed: int) -> dict[str, np.ndarray]:
    """Deterministic random train/val/test partition of ``range(n)`` from ``seed``.

    Callers sort their samples by name first, so the split depends only on the content
    and the seed, not on directory listing order. Indices are sorted within each split.
    """
    counts = split_counts(n, fractions)
    order = np.random.default_rng(seed).permutation(n)
    out, start = {}, 0
    for key in SPLITS:
        out[key] = np.sort(order[start : start + counts[key]])
        start += counts[key]
    return out


def carve(indices: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split ``indices`` into ``(rest, carved)`` with ``round(len * fraction)`` carved out
    (at least one when ``fraction > 0`` and there are at least two)."""
    n = len(indices)
    k = int(round(n * float(fraction)))
    if fraction > 0 and k == 0 and n >= 2:
        k = 1
    k = min(k, max(n - 1, 0))
    order = np.random.default_rng(seed).permutation(n)
    carved = np.sort(np.asarray(indices)[order[:k]])
    rest = np.sort(np.asarray(indices)[order[k:]])
    return rest, carved


def limit(indices: np.ndarray, size: int | None, seed: int) -> np.ndarray:
    """At most ``size`` of ``indices``, a deterministic random subset (for train-size sweeps)."""
    if size is None or int(size) >= len(indices):
        return indices
    order = np.random.default_rng(seed + 1).permutation(len(indices))
    return np.sort(np.asarray(indices)[order[: int(size)]])


# ----------------------------------------------------------------------------- fingerprints
def digest(parts: Iterable[bytes | str]) -> str:
    """sha256 over a sequence of parts (length-prefixed), as truncated hex."""
    h = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else bytes(part)
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()[:FINGERPRINT_CHARS]


def file_digest(path: str | Path, data: bytes | None = None) -> str:
    """Full sha256 hex of a file's bytes."""
    if data is not None:
        return hashlib.sha256(data).hexdigest()
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fingerprint_files(
    paths: Iterable[str | Path], root: str | Path | None = None, mode: str = "content"
) -> str:
    """Fingerprint of files: names (relative to ``root``) plus their bytes (``content``) or
    their size and modification time (``stat``, fast for very large sets)."""
    parts: list[str] = []
    for path in sorted(str(p) for p in paths):
        rel = str(Path(path).relative_to(root)) if root else Path(path).name
        if mode == "stat":
            st = Path(path).stat()
            parts.append(f"{rel}:{st.st_size}:{int(st.st_mtime)}")
        else:
            parts.append(f"{rel}:{file_digest(path)}")
    return digest(parts)


def class_frequencies(
    counts: np.ndarray | Sequence[int], class_names: Sequence[str]
) -> dict[str, float]:
    """Pixel counts per class -> ``{class_name: fraction}`` (zeros when there are no pixels)."""
    counts = np.asarray(counts, np.float64)
    total = counts.sum()
    return {
        name: float(c / total) if total else 0.0
        for name, c in zip(class_names, counts, strict=True)
    }


def lineage(
    sizes: Mapping[str, int],
    counts_train: np.ndarray,
    counts_all: np.ndarray,
    class_names: Sequence[str],
    ignored: int = 0,
    total_pixels: int = 0,
) -> dict[str, Any]:
    """The ``DataSource.extra`` entries shared by all loaders."""
    return {
        "class_frequencies": class_frequencies(counts_train, class_names),
        "class_frequencies_all": class_frequencies(counts_all, class_names),
        "class_pixel_counts": {n: int(c) for n, c in zip(class_names, counts_all, strict=True)},
        "ignore_fraction": float(ignored / total_pixels) if total_pixels else 0.0,
        "split_sizes": dict(sizes),
    }
