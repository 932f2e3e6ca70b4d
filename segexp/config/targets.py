"""``_target_`` dotted paths: the callable a config section names, resolved by Hydra."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any


def target_callable(target: str, key: str, expected: str) -> Callable[..., Any]:
    """``target`` resolved by Hydra's ``instantiate`` (``_partial_``: its target checks apply,
    the caller passes the arguments). A path that does not import or is not callable is a
    one-line ``ConfigError``: ``<key>='<target>': <Hydra's reason>; expected <expected>``."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    from segexp.errors import ConfigError

    try:
        return instantiate({"_target_": target, "_partial_": True})
    except InstantiationException as err:
        raise ConfigError(
            f"{key}={target!r}: {str(err).splitlines()[0]}; expected {expected}"
        ) from None


def keyword_names(target: Callable[..., Any]) -> set[str]:
    """The named parameters ``target`` (a class: its ``__init__``) takes, ``**kwargs`` aside."""
    function = getattr(target, "func", target)
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return {p.name for p in inspect.signature(function).parameters.values() if p.kind in kinds}
