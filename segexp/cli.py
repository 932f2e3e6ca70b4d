"""What the command lines do before TensorFlow starts: key and value checks, a quiet start-up."""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from segexp.config import CONF_DIR, MAPPING_KEYS, check_integers, check_key
from segexp.errors import ConfigError

# TensorFlow's C++ start-up lines: absl's pre-init notice, oneDNN, CUDA stubs, CPU features and,
# on a machine without a GPU driver, "failed call to cuInit".
_STARTUP_LINE = re.compile(
    r"WARNING: All log messages before absl::InitializeLog\(\) is called"
    r"|[IW]\d{4} [\d:.]+\s+\d+ \S+\.cc:\d+\]"
    r"|E\d{4} [\d:.]+\s+\d+ (cuda|gpu)\w*\.cc:\d+\]"
    r"|To enable the following instructions:"
)
# What Hydra writes into a run's output folder before the job starts.
HYDRA_FILES = frozenset({".hydra", "train.log"})


@contextlib.contextmanager
def _without_startup_lines() -> Iterator[None]:
    """Route file descriptor 2 to a temporary file; replay all but TensorFlow's start-up lines."""
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            lines = tmp.read().decode(errors="replace").splitlines(keepends=True)
            kept = [line for line in lines if not _STARTUP_LINE.match(line)]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


def import_tensorflow(verbose: bool = False) -> None:
    """Import TensorFlow and find its devices; its start-up lines are shown only if ``verbose``.

    Quiet (the default) also sets ``TF_CPP_MIN_LOG_LEVEL=2`` (C++ errors only) unless the
    environment sets it; ``verbose=true`` sets 0.
    """
    if "tensorflow" in sys.modules:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0" if verbose else "2")
    quiet = contextlib.nullcontext() if verbose else _without_startup_lines()
    with quiet:
        import tensorflow as tf

        tf.config.list_physical_devices()


def check_paths(dataset: DictConfig) -> None:
    """The dataset's files exist (one-line ``DataError`` naming the key); no TensorFlow needed."""
    from segexp.data import check_paths as check

    check(dataset)


def check_values(cfg: DictConfig) -> None:
    """Counts, split fractions, challenge metric names, data paths and the tracking store, in
    that order (a refused config creates no store)."""
    from segexp.challenge import check_names
    from segexp.data.split import split_fractions
    from segexp.track import check_store

    check_integers(cfg)
    if cfg.dataset.get("split") is not None:
        split_fractions(cfg.dataset.split)
    check_names(cfg.dataset.get("challenge_metrics"))
    check_paths(cfg.dataset)
    check_store(str(cfg.tracking.uri))


def _prefix(override: Any) -> str:
    line = override.input_line or ""
    return line[: len(line) - len(line.lstrip("+~"))]


def _choices(override: Any) -> list[str]:
    """An override as one command-line string per value it sweeps over."""
    if not override.is_sweep_override():
        return [override.input_line]
    head = override.input_line.split("=", 1)[0]
    return [f"{head}={value}" for value in override.sweep_string_iterator()]


def preflight(
    argv: list[str],
    config_name: str = "train",
    checks: Callable[[DictConfig], None] | None = None,
    max_compositions: int = 16,
) -> list[str]:
    """Check a command line before Hydra starts; returns it with mapping overrides made to replace.

    Every key override must name a key the composed presets have (``config.check_key``), for
    every combination of swept group choices. ``dataset.mask_values={...}`` gets a
    ``dataset.mask_values=null`` before it, so that the map replaces the preset's instead of
    merging into it. One plain run (no ``-m``, ``--cfg``, ``resume``) also gets ``checks``
    (default :func:`check_values`). Composition errors are left to Hydra, which reports them itself.
    """
    from hydra import compose, initialize_config_dir
    from hydra._internal.utils import get_args_parser
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    args, _ = get_args_parser().parse_known_args(argv)
    if args.help or args.hydra_help or args.info or args.shell_completion:
        return argv
    if GlobalHydra.instance().is_initialized():
        return argv
    try:
        overrides = OverridesParser.create().parse_overrides(args.overrides)
    except HydraException:
        return argv
    config_name = args.config_name or config_name
    # Hydra's own keys and groups (hydra.run.dir, hydra/launcher=joblib) are Hydra's to check.
    overrides = [o for o in overrides if not re.match(r"hydra($|[./])", o.key_or_group)]
    groups = {p.name for p in CONF_DIR.iterdir() if p.is_dir()}
    is_group = [o.key_or_group.split("/")[0] in groups or o.package is not None for o in overrides]
    choice_lists = [_choices(o) for o, g in zip(overrides, is_group, strict=True) if g]
    keyed = [o for o, g in zip(overrides, is_group, strict=True) if not g]
    rewritten, listed = list(argv), list(args.overrides)
    # Without `+`, sweeps or mapping keys, a config that composes has only known keys (Hydra's
    # struct mode): one composition then serves for the value checks too.
    simple = not args.multirun and not any(
        _prefix(o) or o.key_or_group in MAPPING_KEYS for o in keyed
    )
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = _compose(compose, config_name, listed) if simple else None
        if cfg is None:
            combos = list(itertools.islice(itertools.product(*choice_lists), max_compositions))
            bases = [_compose(compose, config_name, list(combo), False) for combo in combos]
            if any(base is None for base in bases):
                return argv
            for base, o in itertools.product(bases, keyed):
                value = None if o.is_sweep_override() else o.value()
                check_key(base, o.key_or_group, value, _prefix(o))
            # Each swept value once against the schema's types (a plain value is checked with
            # the whole command line below): a wrong type fails here, before any job starts.
            swept = [
                c
                for o in keyed
                if o.is_sweep_override() and not o.is_interval_sweep()  # Optuna draws those
                for c in _choices(o)
            ]
            for choice in swept[:max_compositions]:
                _compose(compose, config_name, [*combos[0], choice], False)
            for o in keyed:
                current = OmegaConf.select(bases[0], o.key_or_group, default=None)
                if (
                    o.key_or_group in MAPPING_KEYS
                    and not _prefix(o)
                    and (o.is_sweep_override() or isinstance(o.value(), dict))
                    and isinstance(current, DictConfig)
                ):
                    null = f"{o.key_or_group}=null"
                    rewritten.insert(rewritten.index(o.input_line), null)
                    listed.insert(listed.index(o.input_line), null)
            if not (args.multirun or args.cfg or args.experimental_rerun):
                cfg = _compose(compose, config_name, listed)
    if cfg is None or args.multirun or args.cfg or args.experimental_rerun:
        return rewritten
    mode = OmegaConf.select(cfg, "hydra.mode", default=None)
    if getattr(mode, "name", str(mode)) != "MULTIRUN" and not cfg.get("resume"):
        (checks or check_values)(cfg)
    return rewritten


def _compose(compose: Callable, name: str, overrides: list[str], hydra: bool = True) -> Any:
    """The composed config; a value of the wrong type is a one-line ``ConfigError``; None where
    Hydra refuses it otherwise (Hydra reports that itself)."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException, ValidationError

    try:
        return compose(name, overrides=overrides, return_hydra_config=hydra)
    except (HydraException, OmegaConfBaseException) as err:
        cause = err.__cause__ if isinstance(err, HydraException) else err
        key = getattr(cause, "full_key", None)
        if isinstance(cause, ValidationError) and key:
            schema = getattr(getattr(cause, "object_type", None), "__name__", "the schema")
            reason = str(cause).splitlines()[0]
            raise ConfigError(
                f"{key}: {reason} (its type is set by {schema} in segexp/config/schema/)"
            ) from None
        return None


def remove_unused_output(folder: Path) -> None:
    """Delete an output folder that holds only Hydra's files (a refused run, or one that wrote
    elsewhere as asked), and the parents this leaves empty, up to the working directory."""
    folder, cwd = Path(folder).resolve(), Path.cwd().resolve()
    if folder == cwd or folder in cwd.parents or not folder.is_dir():
        return
    if not {p.name for p in folder.iterdir()} <= HYDRA_FILES:
        return
    shutil.rmtree(folder, ignore_errors=True)
    for parent in folder.parents:
        if parent == cwd or cwd not in parent.parents:
            break
        with contextlib.suppress(OSError):
            parent.rmdir()  # only when empty
