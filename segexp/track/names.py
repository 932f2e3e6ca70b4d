"""Run names: a sweep job's run is named by what the job varies, with short keys."""

from __future__ import annotations

from collections.abc import Iterable

from omegaconf import DictConfig

from segexp.config.keys import override_key
from segexp.track.context import SweepContext


def short_names(overrides: list[str]) -> list[str]:
    """``model.batchnorm=true`` -> ``batchnorm=true``: each key cut to its last component, or
    to as many trailing components as keep it distinct from the other keys (``a.dropout=0.1``
    beside ``b.dropout=0.2`` stay whole); long floats shortened (:func:`_short_value`)."""
    keys = [override_key(o).split(".") for o in overrides]

    names = []
    for override, parts in zip(overrides, keys, strict=True):
        if "=" not in override:
            names.append(override)
            continue
        n = 1
        while n < len(parts) and any(
            other[-n:] == parts[-n:] for other in keys if other is not parts
        ):
            n += 1
        names.append(".".join(parts[-n:]) + "=" + _short_value(override.split("=", 1)[1]))
    return names


def _short_value(value: str) -> str:
    """Long floats (an Optuna trial's ``0.0012345678901``) to 4 significant digits; the run's
    params keep the exact value."""
    try:
        number = float(value)
    except ValueError:
        return value
    return f"{number:.4g}" if len(value) > 8 and "." in value else value


def child_run_name(cfg: DictConfig, overrides: Iterable[str], context: SweepContext | None) -> str:
    """A run's name: in a job of the sweep ``context``, what the job varies with short keys
    (``batchnorm=true seed=2``), so the MLflow UI shows children uncut and distinct; else
    :func:`segexp.config.run_name`."""
    from segexp.config import RUN_NAME_EXCLUDED_PREFIXES, run_name

    varied = context.varied(overrides) if context else list(overrides)
    kept = [o for o in varied if not override_key(o).startswith(RUN_NAME_EXCLUDED_PREFIXES)]
    if context is None or not kept or cfg.tracking.get("run_name"):
        return run_name(cfg, varied)
    return " ".join(short_names(kept))
