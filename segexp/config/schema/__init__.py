"""The config schema: one Hydra structured config per group option, in the ConfigStore.

Hydra structured configs (one dataclass per group option), registered in Hydra's ConfigStore as
``schema_<group>_<option>`` (root-level names, so that they are no config groups to choose
from), and :func:`typed`, which fills and checks a config section against its dataclass.

A YAML preset names its schema first in its defaults list (``/schema_model_unet@_here_``) and
states only the values it chooses; the dataclass holds every key's type and default.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

from segexp.config.schema.augment import AUGMENTATIONS, BLOCKS
from segexp.config.schema.bench import BenchConf
from segexp.config.schema.dataset import DATASETS
from segexp.config.schema.loss import LOSSES
from segexp.config.schema.model import MODELS
from segexp.config.schema.optim import OPTIMIZERS, SCHEDULES
from segexp.config.schema.run import PreviewConf, TopConf, TrackingConf, TrainerConf

T = TypeVar("T")

# Group -> option -> dataclass (ConfigStore name schema_<group>_<option>).
SCHEMAS: dict[str, dict[str, type]] = {
    "model": dict(MODELS),
    "dataset": dict(DATASETS),
    "optimizer": dict(OPTIMIZERS),
    "augmentation": dict(AUGMENTATIONS),
    "loss": dict(LOSSES),
    "trainer": {"default": TrainerConf},
    "tracking": {"mlflow": TrackingConf},
}

__all__ = [
    "BLOCKS",
    "SCHEDULES",
    "SCHEMAS",
    "load_preset",
    "option_name",
    "preset_schema",
    "register",
    "typed",
]


def register() -> None:
    """Store every schema in Hydra's ConfigStore (idempotent). The top-level schema
    (``schema_train``) stays open so that commands and experiments add their own sections
    (``schema_preview``, ``schema_bench``: segexp-preview's and segexp-bench's)."""
    from hydra.core.config_store import ConfigStore
    from omegaconf import OmegaConf

    store = ConfigStore.instance()
    for group, options in SCHEMAS.items():
        for option, node in options.items():
            store.store(name=f"schema_{group}_{option}", node=node)
    top = OmegaConf.structured(TopConf)
    OmegaConf.set_struct(top, False)
    store.store(name="schema_train", node=top)
    store.store(name="schema_preview", node=PreviewConf)
    store.store(name="schema_bench", node=BenchConf)


def _expected(hint: Any) -> str:
    """``float``, ``a list of int``, ``... or null`` for a dataclass field's type."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    nullable = len(args) < len(typing.get_args(hint))
    origin = typing.get_origin(hint)
    if nullable:
        return f"{_expected(args[0])} or null"
    if origin in (list, tuple):
        return f"a list of {_expected(typing.get_args(hint)[0])}"
    if origin is dict:
        return "a mapping"
    if dataclasses.is_dataclass(hint):
        return f"a mapping of {', '.join(f.name for f in dataclasses.fields(hint))}"
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(
        hint, str(hint)
    )


def typed(cfg: Any, schema: type[T], where: str) -> T:
    """``cfg`` (a mapping, DictConfig or None) merged into ``schema``'s defaults, as a dataclass
    instance. An unknown key or a value of the wrong type is a one-line ``ConfigError``:
    ``<where>: unknown key(s) [...] (did you mean ...?); expected some of [...]`` or
    ``<where>.<key>=<value>: expected <type>`` (``where`` up to its first ``(``)."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from segexp.config.keys import closest
    from segexp.config.paths import to_dict
    from segexp.errors import ConfigError

    names = [f.name for f in dataclasses.fields(schema)]
    data = {k: v for k, v in to_dict(cfg, where).items() if k != "name" or "name" in names}
    unknown = sorted(str(k) for k in data if str(k) not in names and k != "name")
    if unknown:
        valid = sorted(n for n in names if n != "name")
        near = "".join(closest(k, valid) for k in unknown)
        raise ConfigError(f"{where}: unknown key(s) {unknown}{near}; expected some of {valid}")
    try:
        merged = OmegaConf.merge(OmegaConf.structured(schema), data)
        return OmegaConf.to_object(merged)
    except OmegaConfBaseException as err:
        key = str(getattr(err, "full_key", "") or "")
        value: Any = data
        hint: Any = schema
        for part in key.split(".") if key else []:
            value = value.get(part) if isinstance(value, Mapping) else None
            nested = [a for a in (hint, *typing.get_args(hint)) if dataclasses.is_dataclass(a)]
            hints = typing.get_type_hints(nested[0]) if nested else {}
            if nested and part not in hints:
                raise ConfigError(
                    f"{where.split('(')[0]}.{key}: unknown key{closest(part, hints)}; expected "
                    f"some of {sorted(hints)}"
                ) from None
            hint = hints.get(part)
        expected = _expected(hint) if key and hint is not None else str(err).splitlines()[0]
        raise ConfigError(f"{where.split('(')[0]}.{key}={value!r}: expected {expected}") from None


def option_name(section: Mapping[str, Any], group: str) -> str:
    """The option a plain ``group`` section names (its ``name``, lower case); a one-line
    ``ConfigError`` when it names none: a composed section always does (Hydra's choice)."""
    from segexp.errors import ConfigError

    name = section.get("name")
    if name is None:
        raise ConfigError(f"{group}.name is not set; expected one of {sorted(SCHEMAS[group])}")
    return str(name).lower()


def preset_schema(group: str, preset: Mapping[str, Any], where: str = "") -> type:
    """The dataclass a preset names in its defaults list (``/schema_<group>_<option>@_here_``)."""
    from segexp.errors import ConfigError

    for entry in preset.get("defaults") or []:
        path = str(entry).split("@", 1)[0].strip("/")
        prefix = f"schema_{group}_"
        if path.startswith(prefix) and path[len(prefix) :] in SCHEMAS[group]:
            return SCHEMAS[group][path[len(prefix) :]]
    raise ConfigError(
        f"{where or group}: no schema in its defaults list; expected one of "
        f"{', '.join(f'/schema_{group}_{o}@_here_' for o in SCHEMAS[group])}"
    )


def load_preset(group: str, name: str) -> Any:
    """``conf/<group>/<name>.yaml`` merged into its schema (a typed DictConfig, as Hydra
    composes it; interpolations left as written)."""
    from omegaconf import OmegaConf

    from segexp.config.paths import CONF_DIR
    from segexp.errors import ConfigError

    path = CONF_DIR / group / f"{name}.yaml"
    if not path.is_file():
        names = sorted(p.stem for p in path.parent.glob("*.yaml"))
        raise ConfigError(f"{group} preset {name!r}: no {path}; available: {', '.join(names)}")
    raw = OmegaConf.load(path)
    schema = preset_schema(group, raw, str(path))
    values = OmegaConf.to_container(raw, resolve=False)
    values.pop("defaults", None)
    return OmegaConf.merge(OmegaConf.structured(schema), OmegaConf.create(values))
