"""A claim's protocol: its defining config keys, their values, and the runs that differ.

The config keys that define it, their values from the experiment file, and the runs whose params
differ from them."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from segexp.errors import ConfigError


def norm(value: Any) -> str:
    """A param value as text that compares equal across spellings (True/true, 60/60.0)."""
    text = "null" if value is None else str(value).strip().lower()
    try:
        number = float(text)
    except ValueError:
        return text
    return repr(int(number)) if number.is_integer() else repr(number)


def with_protocol(claim: dict[str, Any], experiment: str | None) -> dict[str, Any]:
    """``claim`` with ``protocol`` as ``{key: value}``, the values read from the composed
    experiment file ``experiments/<experiment>.yaml`` without any other override."""
    keys = claim.get("protocol")
    if keys is None or isinstance(keys, Mapping) or not experiment:
        return claim
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise ConfigError(f"claim.protocol: expected a list of config keys, got {keys!r}")
    swept = {
        name
        for check in claim.get("checks") or []
        for side in ("group", "other")
        for key in check.get(side) or {}
        for name in (key, f"{key}.name")
    }
    if overlap := sorted(set(keys) & swept):
        raise ConfigError(
            f"claim.protocol: {', '.join(overlap)} selects the groups of a check; a key the "
            "sweep varies cannot also be fixed by the protocol"
        )
    from segexp.config import as_params

    params = as_params(_compose_experiment(experiment))
    missing = [k for k in keys if k not in params]
    if missing:
        raise ConfigError(
            f"claim.protocol: {', '.join(missing)} not in the config of experiment={experiment}"
        )
    return {**claim, "protocol": {k: params[k] for k in keys}}


def _compose_experiment(experiment: str) -> Any:
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from segexp.config import CONF_DIR

    overrides = [f"experiment={experiment}"]
    try:
        if GlobalHydra.instance().is_initialized():  # inside segexp-train (the sweep callback)
            return compose(config_name="train", overrides=overrides)
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            return compose(config_name="train", overrides=overrides)
    except Exception as err:  # noqa: BLE001 - Hydra's errors carry the useful first line
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ConfigError(f"experiment={experiment}: cannot compose it ({first})") from None


def deviations(claim: Mapping[str, Any], table: pd.DataFrame) -> list[str]:
    """``key=value (claim: value)`` for each protocol key on which a run's params differ."""
    protocol = claim.get("protocol")
    if not isinstance(protocol, Mapping) or table.empty:
        return []
    out = []
    for key, expected in protocol.items():
        column = f"param:{key}"
        values = table[column] if column in table else pd.Series(["<unset>"] * len(table))
        seen = [v for v in dict.fromkeys(values.fillna("<unset>").astype(str))]
        differing = [v for v in seen if norm(v) != norm(expected)]
        if differing:
            out.append(f"{key}={','.join(differing)} (claim: {expected})")
    return out


def claim_of(parent: Any | None, claim_file: str | None = None) -> dict | None:
    """The claim of ``--claim`` (an experiment file: a path or a name in experiments/), else the
    one stored on the sweep's parent run; its protocol resolved from the experiment file."""
    if claim_file:
        from omegaconf import OmegaConf

        from segexp.config import PROJECT_ROOT

        path = Path(claim_file)
        if not path.is_file():
            path = PROJECT_ROOT / "experiments" / f"{claim_file.removesuffix('.yaml')}.yaml"
        if not path.is_file():
            raise ConfigError(
                f"--claim {claim_file}: no such experiment file (a path, or a name in "
                f"{PROJECT_ROOT / 'experiments'})"
            )
        claim = OmegaConf.select(OmegaConf.load(path), "claim", default=None)
        if claim is None:
            raise ConfigError(f"--claim {claim_file}: {path} has no top-level `claim:`")
        return with_protocol(OmegaConf.to_container(claim, resolve=True), path.stem)
    if parent is not None and parent.data.tags.get("segexp.claim"):
        claim = json.loads(parent.data.tags["segexp.claim"])
        return with_protocol(claim, parent.data.tags.get("segexp.experiment_file") or None)
    return None
