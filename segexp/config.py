"""Config helpers that need no TensorFlow: locating conf/, key checks, flattening, run names."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

PROJECT_ROOT = Path(__file__).resolve().parents[1]
CONF_DIR = PROJECT_ROOT / "conf"

_SECRET_WORDS = r"(?:password|passwd|secret|token|api_key|apikey|credential)"
_SECRET_KEY = re.compile(_SECRET_WORDS, re.I)
# ``scheme://user:password@``, also as Hydra escapes it in overrides (``http\://user\:pw@``).
_URI_USERINFO = re.compile(
    r"(?P<scheme>[a-z][a-z0-9+.-]*\\?:\\?/\\?/)(?P<user>[^:/@\s\\]+)(?P<sep>\\?:)(?P<pw>[^@/\s]+)@",
    re.I,
)
# ``key=value`` (an override, a line of text) whose key names a secret.
_SECRET_ASSIGN = re.compile(
    rf"(?P<key>[\w.+~-]*{_SECRET_WORDS}[\w.-]*)(?P<sep>\s*[=:]\s*)(?P<value>[^\s,'\"]+)",
    re.I,
)
MASK = "***"
# Keys that describe where and how a run is tracked, not what it trains.
RUN_NAME_EXCLUDED_PREFIXES = ("tracking.", "hydra.", "resume", "trainer.verbose", "verbose")

# Mapping-valued keys: a plain override (`'dataset.mask_values={0:0,128:1}'`) replaces the
# preset's map; `+dataset.mask_values.128=1` adds or changes one entry.
MAPPING_KEYS = ("dataset.mask_values",)
# Maps that hold user-chosen keys: `+` may add any key below them.
OPEN_KEYS = ("tracking.tags", *MAPPING_KEYS)
# Sections whose valid keys depend on their `name` and are checked against the builder's
# defaults when built (segexp.optim.SCHEDULE_DEFAULTS): `+` may add keys the preset leaves out.
BUILD_CHECKED_KEYS = ("optimizer.schedule",)


def input_spec(cfg: DictConfig) -> tuple[int, int, int]:
    """The model's input shape: the preset's fixed ``input_shape`` or the dataset's size."""
    if cfg.model.get("input_shape"):
        h, w, c = (int(v) for v in cfg.model.input_shape)
        return h, w, c
    h, w = (int(v) for v in cfg.dataset.image_size)
    return h, w, int(cfg.dataset.get("channels", 3))


def to_dict(cfg: Any, where: str = "config") -> dict[str, Any]:
    """A config section (DictConfig, mapping or None) as a plain, resolved dict."""
    if cfg is None:
        return {}
    if isinstance(cfg, DictConfig):
        return dict(OmegaConf.to_container(cfg, resolve=True))
    if isinstance(cfg, Mapping):
        return dict(cfg)
    from segexp.errors import ConfigError

    raise ConfigError(f"{where}: expected a mapping, got {type(cfg).__name__}")


def with_defaults(
    cfg: Mapping[str, Any], defaults: Mapping[str, Any], where: str
) -> dict[str, Any]:
    """``defaults`` updated by ``cfg`` (its ``name`` key aside); unknown keys are a ConfigError."""
    unknown = sorted(set(cfg) - set(defaults) - {"name"})
    if unknown:
        from segexp.errors import ConfigError

        near = "".join(closest(str(k), defaults) for k in unknown)
        raise ConfigError(
            f"{where}: unknown key(s) {unknown}{near}; expected some of {sorted(defaults)}"
        )
    return {**defaults, **{k: v for k, v in cfg.items() if k != "name"}}


def redact(value: str) -> str:
    """Hide URI passwords (``scheme://user:***@host``) and the values of secret-named
    ``key=value`` / ``key: value`` pairs in any text: the one redaction every output uses."""
    text = _URI_USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}{m['sep']}{MASK}@", str(value))
    return _SECRET_ASSIGN.sub(
        lambda m: m[0] if m["value"] == MASK else f"{m['key']}{m['sep']}{MASK}", text
    )


def is_secret_key(key: Any) -> bool:
    """Whether a config key or tag name names a secret (password, token, api_key, ...)."""
    return bool(_SECRET_KEY.search(str(key)))


def mask_secrets(value: Any) -> Any:
    """A plain container with secret-named keys masked and every string :func:`redact`-ed."""
    if isinstance(value, dict):
        return {
            k: MASK if is_secret_key(k) and v is not None else mask_secrets(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [mask_secrets(v) for v in value]
    return redact(value) if isinstance(value, str) else value


def mask_yaml_files(paths: Iterable[Path]) -> list[Path]:
    """Rewrite YAML files (Hydra's ``.hydra/*.yaml``) with :func:`mask_secrets` applied;
    returns the files that held a secret. Interpolations stay as written."""
    import yaml

    changed = []
    for path in paths:
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError):
            continue
        masked = mask_secrets(data)
        if masked != data:
            tmp = path.with_name(f".{path.name}.masked")
            tmp.write_text(yaml.safe_dump(masked, sort_keys=False), encoding="utf-8")
            tmp.replace(path)
            changed.append(path)
    return changed


def flatten(cfg: DictConfig | dict, prefix: str = "") -> dict[str, Any]:
    """Flatten a config to dotted keys; lists stay as values. Secrets are redacted."""
    container = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg
    flat: dict[str, Any] = {}
    for key, value in container.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{dotted}."))
        elif is_secret_key(key) and value is not None:
            flat[dotted] = MASK
        elif isinstance(value, str):
            flat[dotted] = redact(value)
        else:
            flat[dotted] = value
    return flat


def as_params(cfg: DictConfig, max_length: int = 6000) -> dict[str, str]:
    """Config values as MLflow params: strings, over-long values shortened with a marker.

    The full, unshortened config is always logged as ``config.yaml``.
    """
    params = {}
    for key, value in flatten(cfg).items():
        text = "null" if value is None else str(value)
        if len(text) > max_length:
            marker = f"...[{len(text)} chars, see config.yaml]"
            text = text[: max_length - len(marker)] + marker
        params[key] = text
    return params


def run_name(cfg: DictConfig, overrides: list[str] | ListConfig) -> str:
    """Readable run name: the job's own overrides, or ``<model>-<dataset>`` without any."""
    if cfg.tracking.get("run_name"):
        return str(cfg.tracking.run_name)
    keys = [o.lstrip("+~").split("=", 1)[0] for o in overrides]
    kept = [
        redact(o)
        for i, o in enumerate(overrides)
        if not o.lstrip("+~").startswith(RUN_NAME_EXCLUDED_PREFIXES)
        and keys[i] not in keys[i + 1 :]  # a later override of the same key wins
    ]
    if kept:
        return ",".join(kept)
    return f"{cfg.model.name}-{cfg.dataset.name}"


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
