"""Secret redaction: URI passwords and secret-named keys, in text, containers and YAML files."""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

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
