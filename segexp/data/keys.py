"""The dataset keys every loader reads the same way.

Optional values, classes, the dataset root and paths under it, and the mask value used for
padding."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from segexp.errors import ConfigError, DataError


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


def require_dirs(
    root: Path, dirs: dict[str, Path], layout: str, where: str, note: str = ""
) -> None:
    """The dataset's folders (key -> path under ``root``) exist, else a one-line ``DataError``
    naming the first missing one and its key; ``note`` adds what else was looked for."""
    for key, path in dirs.items():
        if not path.is_dir():
            raise DataError(
                f"{path} is not a directory ({key}= under dataset.root={root}{note}); "
                f"expected {layout}; {where}"
            )


def resolve(root: Path | None, value: Any) -> Path:
    """``value`` as a path, relative to ``root`` when not absolute."""
    path = Path(str(value)).expanduser()
    if root is not None and not path.is_absolute():
        path = root / path
    return path


def fill_value(cfg: Any) -> int:
    """The mask value used for padding: ignore_value when set, else 0."""
    ignore = cfg.get("ignore_value")
    return 0 if ignore is None else int(ignore)
