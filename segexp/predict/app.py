"""``segexp-predict``, the Hydra app: checks before TensorFlow, then one prediction job.

The command line composed onto ``conf/predict.yaml`` and checked before TensorFlow starts (one-line
errors), then one prediction job.

    segexp-predict model=runs:/<RUN_ID>/model input=images/ output=masks/ overlay=true

``model`` is an MLflow model URI (``runs:/ID/model``, ``models:/name/version``), a local MLflow
model directory, a directory written by :func:`segexp.predict.store.save_local`, or a ``.keras``
file; the preprocessing the model was trained with is read from the contract stored with it
(:mod:`segexp.predict.contract`).

``conf/predict.yaml`` is the app's primary config, served from Hydra's ConfigStore rather than
from ``conf/`` as a config directory: there, the ``model`` config group of the training
configs would take ``model=`` for a group choice instead of this app's key.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from segexp.config import CONF_DIR, override_key
from segexp.errors import ConfigError, SegexpError, first_line
from segexp.predict.contract import PROG, predict_mode
from segexp.predict.schema import REQUIRED, PredictConfig

CONFIG_NAME = "predict"
CONFIG_FILE = CONF_DIR / f"{CONFIG_NAME}.yaml"
HELP_FLAGS = ("-h", "--help", "help")


def usage() -> str:
    """The ``--help`` text: the command line and every key with its default (the schema's)."""
    lines = [
        f"usage: {PROG} model=<runs:/ID/model|models:/name/version|path> input=<file|dir|glob> "
        "output=<dir> [key=value ...]",
        "keys (default):",
    ]
    for f in fields(PredictConfig):
        default = f.default if f.default != "???" else "(required)"
        lines.append(f"  {f.name}={default}")
    lines.append(
        "values are Hydra overrides (quote special characters: \"input='scan (1).tif'\"); "
        "--cfg job prints the composed keys"
    )
    return "\n".join(lines)


def _valid_keys() -> str:
    return ", ".join(f.name for f in fields(PredictConfig))


def _check_keys(overrides: list[str]) -> None:
    """Each override parses and names a key of the schema (Hydra's own keys are Hydra's)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    parser = OverridesParser.create()
    valid = {f.name for f in fields(PredictConfig)}
    for arg in overrides:
        if "=" not in arg:
            raise ConfigError(f"argument {arg!r}: expected key=value; valid keys: {_valid_keys()}")
        try:
            key = parser.parse_override(arg).key_or_group
        except HydraException as err:
            raise ConfigError(
                f"argument {arg!r}: {first_line(err)}; quote a value with special characters "
                "as Hydra's override grammar requires, e.g. \"input='scan (1).tif'\""
            ) from None
        if key != "hydra" and not key.startswith(("hydra.", "hydra/")) and key not in valid:
            raise ConfigError(f"unknown key {key!r}; valid keys: {_valid_keys()}")


def _register() -> None:
    """``conf/predict.yaml`` (and, imported with it, the schema) in Hydra's ConfigStore."""
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name=CONFIG_NAME, node=OmegaConf.load(CONFIG_FILE))


def compose(overrides: list[str]) -> DictConfig:
    """``overrides`` composed onto ``conf/predict.yaml``; a wrong type is one line."""
    from hydra import compose as hydra_compose
    from hydra import initialize
    from hydra.errors import HydraException

    _check_keys(overrides)
    _register()
    with initialize(config_path=None, version_base="1.3"):
        try:
            return hydra_compose(CONFIG_NAME, overrides=overrides)
        except HydraException as err:
            cause = err.__cause__
            key = getattr(cause, "full_key", None)
            given = [a for a in overrides if override_key(a) == key]
            if cause is not None and given:
                msg = f"{given[-1]}: {first_line(cause)}; see `{PROG} --help`"
            else:
                msg = " ".join(line.strip() for line in str(err).splitlines() if line.strip())
            raise ConfigError(msg) from None


def check(cfg: DictConfig) -> PredictConfig:
    """The composed keys as a :class:`PredictConfig`, their values checked (one-line errors)."""
    from segexp.predict.scores import metric_names

    missing = [k for k in REQUIRED if OmegaConf.is_missing(cfg, k)]
    if missing:
        raise ConfigError(f"missing required key(s): {', '.join(k + '=...' for k in missing)}")
    for k in REQUIRED:
        if not cfg[k]:
            raise ConfigError(f"{k}={cfg[k]}: a value is required")
    result = OmegaConf.to_object(cfg)
    if not isinstance(result, PredictConfig):
        raise ConfigError(f"the config {CONFIG_NAME}.yaml does not compose the {PROG} schema")
    if result.batch_size < 1:
        raise ConfigError(f"batch_size={result.batch_size}: expected a positive integer")
    if not 0 <= result.threshold <= 1:
        raise ConfigError(f"threshold={result.threshold}: expected a value in [0, 1]")
    predict_mode(None, result.mode)  # checks the value
    if result.metrics is not None and result.masks is None:
        raise ConfigError(f"metrics={result.metrics}: scores need the true masks, masks=<dir>")
    if result.metrics is not None:
        metric_names({}, result.metrics)  # checks the names
    return result


def preflight(argv: list[str]) -> None:
    """Check the command line before Hydra runs the job: flags, keys, types and values."""
    from hydra._internal.utils import get_args_parser

    args, unknown = get_args_parser().parse_known_args(argv)
    if unknown:
        raise ConfigError(f"argument {unknown[0]!r}: expected key=value; see `{PROG} --help`")
    if args.hydra_help or args.info or args.shell_completion:
        return
    if args.multirun:
        raise ConfigError(f"-m/--multirun: {PROG} runs one job; start it once per model or input")
    cfg = compose(list(args.overrides))
    if not args.cfg:
        check(cfg)


def run(cfg: PredictConfig, *, progress: bool = True) -> int:
    """Run a prediction job; returns the process exit code (1 if any image failed)."""
    from segexp.cli import import_tensorflow
    from segexp.predict.inference import make_predictor
    from segexp.predict.outputs import find_inputs, predict_files
    from segexp.predict.scores import check_shapes, match_masks, read_truths, report
    from segexp.predict.store import load_model_and_meta

    files = find_inputs(cfg.input)
    masks = match_masks(cfg.masks, files) if cfg.masks is not None else None
    import_tensorflow(cfg.verbose)  # TensorFlow's start-up lines only with verbose=true
    model, meta = load_model_and_meta(cfg.model, tracking_uri=cfg.tracking_uri)
    predictor = make_predictor(model, meta, cfg)
    mode, reason = predict_mode(meta.get("geometry"), cfg.mode)
    truths = read_truths(masks, meta) if masks is not None else None
    if masks is not None and truths is not None:
        check_shapes(files, masks, truths)
    print(f"{PROG}: mode={mode} {reason}", flush=True)
    keep: dict[Path, Any] | None = {} if masks is not None else None
    start = time.monotonic()
    written, failed = predict_files(
        files,
        cfg.output,
        predictor,
        meta,
        overlay=cfg.overlay,
        palette=cfg.palette,
        save_probs=cfg.save_probs,
        progress=progress,
        keep=keep,
    )
    secs = time.monotonic() - start
    summary = f"{PROG}: {len(files)} image(s): {len(written)} segmented into {cfg.output}"
    if failed:
        summary += f", {len(failed)} failed ({', '.join(p.name for p, _ in failed)})"
    print(f"{summary} in {secs:.1f}s")
    if masks is not None and truths is not None and keep is not None:
        report(cfg, meta, files, truths, keep)
    return 1 if failed else 0


@hydra.main(version_base="1.3", config_path=None, config_name=CONFIG_NAME)
def _app(cfg: DictConfig) -> None:
    """One prediction job; exits with its code."""
    try:
        code = run(check(cfg))
    except SegexpError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        code = 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        code = 130
    sys.exit(code)


@contextlib.contextmanager
def _command_line(argv: list[str]) -> Iterator[None]:
    """``sys.argv`` as Hydra reads it; afterwards ``sys.argv`` and Hydra's job config as they
    were, so that a later Hydra job in this process does not see this one's."""
    from hydra.core.hydra_config import HydraConfig

    saved, saved_cfg = sys.argv, HydraConfig.instance().cfg
    sys.argv = [PROG, *argv]
    try:
        yield
    finally:
        sys.argv = saved
        HydraConfig.instance().cfg = saved_cfg


def main(argv: list[str] | None = None) -> int:
    """Console entry point ``segexp-predict key=value ...``; returns the exit code (0 done,
    1 an image failed, 2 bad input, 130 interrupted)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or any(a in HELP_FLAGS for a in argv):
        print(usage())
        return 0 if argv else 2
    try:
        preflight(argv)
    except SegexpError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 2
    _register()
    with _command_line(argv):
        try:
            _app()
        except SystemExit as done:
            return done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
