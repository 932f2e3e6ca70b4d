"""Command-line keys: the key an override sets, and the checks before Hydra starts (unknown keys,
`+` rules, integer counts)."""

from __future__ import annotations

import difflib
from typing import Any

from omegaconf import DictConfig, OmegaConf

# Mapping-valued keys: a plain override (`'dataset.mask_values={0:0,128:1}'`) replaces the
# preset's map; `+dataset.mask_values.128=1` adds or changes one entry.
MAPPING_KEYS = ("dataset.mask_values",)
# Maps that hold user-chosen keys: `+` may add any key below them.
OPEN_KEYS = ("tracking.tags", *MAPPING_KEYS)
# Sections whose valid keys depend on their `name` or `_target_` and are checked when built
# (the schedule's schema, the optimizer class' signature): `+` may add keys the preset leaves out.
BUILD_CHECKED_KEYS = ("optimizer",)


# Integer keys every run reads, with their minimum (None: any integer); null allowed where noted.
INTEGER_KEYS: dict[str, tuple[int | None, bool]] = {
    "seed": (None, False),
    "trainer.epochs": (1, False),
    "trainer.batch_size": (1, False),
    "trainer.steps_per_epoch": (1, True),
    "trainer.log_images_every": (1, False),
    "trainer.num_sample_images": (0, False),
    "dataset.train_size": (1, True),
}


def override_key(override: str) -> str:
    """The key a command-line override sets: ``+model.dropout=0.1`` -> ``model.dropout``."""
    return override.split("=", 1)[0].lstrip("+~")


def check_integers(cfg: DictConfig) -> None:
    """One-line ``ConfigError`` for a non-integer or out-of-range count (``trainer.epochs=abc``)."""
    from segexp.errors import ConfigError

    for key, (minimum, nullable) in INTEGER_KEYS.items():
        value = OmegaConf.select(cfg, key, default=None)
        if value is None and nullable:
            continue
        ok = isinstance(value, int) and not isinstance(value, bool)
        if not ok or (minimum is not None and value < minimum):
            bound = f" >= {minimum}" if minimum is not None else ""
            allowed = " or null" if nullable else ""
            raise ConfigError(f"{key}={value!r}: expected an integer{bound}{allowed}")


def closest(key: str, valid: Any) -> str:
    """`` (did you mean 'x'?)`` for the valid key closest to ``key`` (difflib), or ``""``."""
    match = difflib.get_close_matches(key, [str(v) for v in valid], n=1, cutoff=0.6)
    return f" (did you mean {match[0]!r}?)" if match else ""


def _under(key: str, prefixes: tuple[str, ...]) -> str | None:
    return next((p for p in prefixes if key == p or key.startswith(p + ".")), None)


def check_key(cfg: DictConfig, key: str, value: Any, op: str = "") -> None:
    """One-line ``ConfigError`` when an override names a key the composed config lacks.

    ``cfg`` is the config composed from the group choices (the presets' keys are the schema);
    ``op`` is the override's prefix (``""``, ``"+"`` or ``"++"``). Keys under ``OPEN_KEYS`` may be
    added with ``+``; so may keys under ``BUILD_CHECKED_KEYS`` (their builder checks them).
    """
    from segexp.errors import ConfigError

    mapping = _under(key, MAPPING_KEYS)
    if mapping == key and op and isinstance(value, dict):
        current = OmegaConf.select(cfg, key, default=None)
        if isinstance(current, DictConfig) and len(current):
            raise ConfigError(
                f"{op}{key}={value}: '{op}' would merge into the preset's map "
                f"{OmegaConf.to_container(current)}; replace it with '{key}=<map>' (no '+') or "
                f"change one entry with +{key}.<stored value>=<class>"
            )
    if key.startswith("hydra.") or key == "hydra":
        return
    node: Any = cfg
    parts = key.split(".")
    for depth, part in enumerate(parts):
        parent = ".".join(parts[:depth])
        if _under(parent, OPEN_KEYS) or (op and _under(parent, BUILD_CHECKED_KEYS)):
            return
        if not isinstance(node, DictConfig) or node._is_none() or node._is_missing():
            return  # a value, not a section: OmegaConf reports what it cannot set
        keys = [str(k) for k in node.keys()]  # noqa: SIM118 - `in` skips `???` values
        if part not in keys:
            valid = sorted(k for k in keys if k != "hydra")
            where = parent or "the top level"
            if parent and isinstance(node.get("name"), str):
                where = f"{parent}={node.name}"
            adding = ""
            if op:
                opened = ", ".join((*OPEN_KEYS, *BUILD_CHECKED_KEYS))
                adding = f"; '+' adds keys only below {opened}"
            raise ConfigError(
                f"{op}{key}: {where} has no key {part!r}{closest(part, valid)}; "
                f"valid keys: {', '.join(valid)}{adding}"
            )
        node = node._get_node(part)
