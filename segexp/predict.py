"""segexp-predict: segment new images of any size with a trained (logged) model.

    segexp-predict model=runs:/<RUN_ID>/model input=images/ output=masks/ overlay=true

``model`` is an MLflow model URI (``runs:/ID/model``, ``models:/name/version``), a local MLflow
model directory, a directory written by :func:`save_local`, or a ``.keras`` file. The
preprocessing the model was trained with (input size, channels, normalisation, classes) is read
from the metadata stored with the model (see :func:`inference_meta`).
"""

from __future__ import annotations

import contextlib
import glob
import json
import math
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from segexp.errors import ConfigError, DataError, SegexpError
from segexp.predict_scores import check_shapes, match_masks, metric_names, read_truths

META_FILE = "segexp_meta.json"
KERAS_FILE = "model.keras"
META_KEY = "segexp"
PROG = "segexp-predict"
DEFAULT_TILE = 256  # tile size for a flexible-size model that carries no metadata


@dataclass
class PredictConfig:
    """Keys of ``segexp-predict`` (``key=value`` on the command line)."""

    model: str = "???"  # runs:/ID/model | models:/name/version | local dir | .keras file
    input: str = "???"  # image file, directory or glob
    output: str = "???"  # directory for the masks
    overlay: bool = False  # also write <name>_overlay.png (image with coloured classes)
    palette: bool = False  # masks as palette PNGs (a colour per class) instead of raw ids
    save_probs: bool = False  # also write <name>_probs.npy, float32 [H, W, num_classes]
    tta: bool = False  # average over flips (identity, horizontal, vertical, both)
    tile_overlap: float = 0.25  # < 1: fraction of the tile; >= 1: pixels
    blend: str = "gaussian"  # gaussian | mean
    threshold: float = 0.5  # foreground threshold for a one-channel sigmoid head
    batch_size: int = 8  # tiles per forward pass
    tracking_uri: str | None = None  # for runs:/ and models:/ (null: MLflow's default)
    mode: str = "auto"  # auto (as trained) | resize (whole image) | tile (sliding window)
    masks: str | None = None  # true masks (dir, file or glob, matched by stem): scores them
    metrics: list[str] | None = None  # with masks=: challenge metrics (null: the run's)
    verbose: bool = False  # show TensorFlow's start-up lines


_STR_KEYS = {"model", "input", "output", "blend", "tracking_uri", "mode", "masks"}


# --------------------------------------------------------------------------------------------
# Metadata
# --------------------------------------------------------------------------------------------


def _model_io(model: Any) -> tuple[tuple, tuple]:
    inp = model.inputs[0].shape if getattr(model, "inputs", None) else model.input_shape
    out = model.outputs[0].shape if getattr(model, "outputs", None) else model.output_shape
    return tuple(inp), tuple(out)


def _probe(model: Any, size: tuple[int, int], channels: int) -> tuple[int, int, int]:
    import numpy as np

    from segexp.inference import call_model

    out = call_model(model, np.zeros((1, *size, channels), np.float32))
    return tuple(int(d) for d in np.shape(out)[1:])  # type: ignore[return-value]


def _downsampling_factor(model: Any) -> int:
    """Product of the strides of pooling and strided-conv layers (2**depth for a U-Net)."""
    try:
        layers = list(model._flatten_layers(include_self=False, recursive=True))
    except Exception:  # noqa: BLE001 - private API; fall back to the top-level layers
        layers = list(getattr(model, "layers", []))
    factor = 1
    for layer in layers:
        cls = type(layer).__name__
        if "Transpose" in cls or "UpSampling" in cls or "Global" in cls:
            continue
        if "Pooling" in cls or "Conv" in cls:
            strides = getattr(layer, "strides", None) or getattr(layer, "pool_size", None) or 1
            strides = strides if isinstance(strides, (tuple, list)) else (strides,)
            factor *= max(int(s) for s in strides)
    return factor


def inference_meta(
    model: Any,
    *,
    input_size: tuple[int, int] | list[int],
    channels: int,
    num_classes: int,
    class_names: list[str],
    head: str,
    normalization: str = "unit",
    required_multiple: int | None = None,
    task: str = "segmentation",
    input_range: float = 1.0,
    geometry: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The input contract stored with a trained model and read back by segexp-predict.

    ``output_crop``/``valid_padding`` are measured with one forward pass at ``input_size``;
    ``required_multiple`` is derived from the model's pooling/stride layers unless given.
    ``input_range`` multiplies the normalised image (255 for models that rescale inside).
    ``geometry`` is how training brought images to ``input_size``
    (:func:`segexp.data.decode.training_geometry`); without it predict slides tiles.
    """
    h, w = (int(v) for v in input_size)
    oh, ow, k = _probe(model, (h, w), int(channels))
    crop = [(h - oh) // 2, (w - ow) // 2]
    if head == "auto":
        head = "sigmoid" if k == 1 else "softmax"
    meta = {
        "format": 2,
        "task": str(task),
        "input_size": [h, w],
        "channels": int(channels),
        "normalization": str(normalization),
        "input_range": float(input_range),
        "num_classes": int(num_classes),
        "class_names": [str(c) for c in class_names],
        "head": str(head),
        "output_channels": int(k),
        "required_multiple": int(required_multiple or _downsampling_factor(model)),
        "valid_padding": bool(crop[0] or crop[1]),
        "output_crop": crop,
    }
    if geometry is not None:
        meta["geometry"] = dict(geometry)
    return meta


def infer_meta_from_model(model: Any, tile: int = DEFAULT_TILE) -> dict[str, Any]:
    """Best-effort metadata for a model stored without it (size, channels and head guessed)."""
    (_, ih, iw, c), _ = _model_io(model)
    m = _downsampling_factor(model)
    default = math.ceil(tile / m) * m
    size = [int(ih) if ih else default, int(iw) if iw else default]
    _, _, k = _probe(model, (size[0], size[1]), int(c))
    num_classes = 2 if k == 1 else k
    return inference_meta(
        model,
        input_size=size,
        channels=int(c),
        num_classes=num_classes,
        class_names=[f"class_{i}" for i in range(num_classes)],
        head="sigmoid" if k == 1 else "softmax",
        required_multiple=m,
    )


def save_local(model: Any, meta: dict[str, Any], path: str | Path) -> Path:
    """Write ``model.keras`` and ``segexp_meta.json`` into the directory ``path``."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    model.save(path / KERAS_FILE)
    (path / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    return path


def model_signature(model: Any) -> Any:
    """The MLflow signature of a segmentation model: a float32 image batch ``[-1, H, W, C]`` in,
    float32 scores ``[-1, h, w, K]`` out (-1 where the model takes any size)."""
    import numpy as np
    from mlflow.models import ModelSignature
    from mlflow.types.schema import Schema, TensorSpec

    inp, out = _model_io(model)

    def spec(shape: tuple) -> Any:
        dims = tuple(-1 if d is None else int(d) for d in shape)
        return Schema([TensorSpec(np.dtype(np.float32), dims)])

    return ModelSignature(inputs=spec(inp), outputs=spec(out))


def log_model(model: Any, meta: dict[str, Any], *, name: str = "model", **kwargs: Any) -> Any:
    """Log ``model`` to the active MLflow run with ``meta`` in the MLmodel metadata and as a
    ``segexp_meta.json`` artifact at the logged model's root. Returns the ModelInfo.

    ``kwargs`` go to ``mlflow.keras.log_model`` (e.g. ``registered_model_name``,
    ``pip_requirements``, which skips MLflow's slow requirement inference); the signature is
    :func:`model_signature`'s unless given."""
    import mlflow

    kwargs.setdefault("signature", model_signature(model))
    info = mlflow.keras.log_model(model, name=name, metadata={META_KEY: meta}, **kwargs)
    model_id = getattr(info, "model_id", None)
    if model_id:
        with tempfile.TemporaryDirectory() as tmp:
            meta_path = Path(tmp) / META_FILE
            meta_path.write_text(json.dumps(meta, indent=2) + "\n")
            mlflow.MlflowClient().log_model_artifact(model_id, str(meta_path))
    return info


def register_model(run_id: str, name: str, *, artifact_path: str = "model") -> int:
    """Register the model logged as ``artifact_path`` in run ``run_id`` under ``name``;
    returns the new version, loadable as ``models:/<name>/<version>``."""
    import mlflow

    source = f"runs:/{run_id}/{artifact_path}"
    try:  # MLflow 3: register the LoggedModel itself (no "no artifacts at path" warning)
        found = mlflow.search_logged_models(
            filter_string=f"name = '{artifact_path}' AND source_run_id = '{run_id}'",
            output_format="list",
        )
        if len(found) == 1:
            source = found[0].model_uri
    except Exception:  # noqa: BLE001 - older servers: fall back to the runs:/ URI
        pass
    return int(mlflow.register_model(source, name).version)


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


def _warn(msg: str) -> None:
    print(f"{PROG}: warning: {msg}", file=sys.stderr)


def _read_meta_file(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ConfigError(f"{path}: not valid JSON ({err})") from None
    return meta if isinstance(meta, dict) else None


def _load_keras(path: Path) -> Any:
    import keras

    _import_custom_objects()
    try:
        return keras.saving.load_model(path, safe_mode=True)
    except Exception as err:  # noqa: BLE001
        raise ConfigError(f"model={path}: cannot load Keras model ({_first_line(err)})") from None


def _import_custom_objects() -> None:
    """Import segexp.models so its registered custom layers deserialize."""
    with contextlib.suppress(Exception):
        import segexp.models  # noqa: F401


def _first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__


def _load_local(path: Path) -> tuple[Any, dict[str, Any] | None]:
    if path.is_file():
        if path.suffix != ".keras":
            raise ConfigError(f"model={path}: expected a .keras file or a model directory")
        return _load_keras(path), _read_meta_file(path.parent / META_FILE)
    if (path / "MLmodel").is_file():
        import mlflow

        _import_custom_objects()
        meta = None
        try:
            from mlflow.models import Model

            meta = (Model.load(str(path / "MLmodel")).metadata or {}).get(META_KEY)
        except Exception:  # noqa: BLE001 - metadata is optional; fall through to the JSON file
            meta = None
        meta = meta or _read_meta_file(path / META_FILE)
        try:
            return mlflow.keras.load_model(str(path)), meta
        except Exception as err:  # noqa: BLE001
            raise ConfigError(
                f"model={path}: cannot load MLflow model ({_first_line(err)})"
            ) from None
    if (path / KERAS_FILE).is_file():
        return _load_keras(path / KERAS_FILE), _read_meta_file(path / META_FILE)
    raise ConfigError(f"model={path}: no MLmodel or {KERAS_FILE} in this directory")


def _store_path(uri: str) -> Path | None:
    """The local file or folder a tracking URI names (SQLite file, file store), else None."""
    from urllib.parse import unquote, urlparse

    if uri.startswith("sqlite:///"):
        return Path(unquote(uri[len("sqlite:///") :].split("?", 1)[0]))
    if uri.startswith("file:"):
        return Path(unquote(urlparse(uri).path))
    if "://" not in uri and not uri.startswith(("databricks", "uc")):
        return Path(uri)
    return None


def _require_store(uri: str, model_uri: str) -> None:
    """Refuse a local tracking store that does not exist instead of letting MLflow create an
    empty one (``mlflow.db`` in the working directory) on the way to "not found"."""
    path = _store_path(uri)
    if path is not None and not path.exists():
        raise ConfigError(
            f"model={model_uri}: no tracking store at {path} (tracking URI {uri}); "
            "tracking_uri= selects the store that holds the run, e.g. "
            "tracking_uri=sqlite:///path/to/mlflow.db"
        )


def load_model_and_meta(uri: str, *, tracking_uri: str | None = None) -> tuple[Any, dict[str, Any]]:
    """Load a model and its segexp metadata from an MLflow URI, a local dir or a .keras file.

    Without stored metadata it is inferred from the model's input and output shapes (warned).
    """
    path = Path(uri).expanduser()
    if path.exists():
        model, meta = _load_local(path)
    elif "://" in uri or uri.startswith(("runs:/", "models:/")):
        import mlflow

        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        if tracking_uri:
            mlflow.set_tracking_uri(tracking_uri)
        store = mlflow.get_tracking_uri()
        _require_store(store, uri)
        tmp = tempfile.mkdtemp(prefix="segexp-predict-")
        try:
            local = mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=tmp)
        except Exception as err:  # noqa: BLE001
            shutil.rmtree(tmp, ignore_errors=True)
            raise ConfigError(
                f"model={uri}: cannot download from tracking URI {store} "
                f"({_first_line(err)}); tracking_uri= selects the store that holds it"
            ) from None
        try:
            model, meta = _load_local(Path(local))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    else:
        raise ConfigError(
            f"model={uri}: no such file or directory, and not a runs:/ or models:/ URI"
        )
    if not meta:
        meta = infer_meta_from_model(model)
        _warn(
            f"no segexp metadata stored with {uri}; inferred input_size={meta['input_size']}, "
            f"channels={meta['channels']}, head={meta['head']}, normalization=unit"
        )
    return model, _complete_meta(meta, model)


def _complete_meta(meta: dict[str, Any], model: Any) -> dict[str, Any]:
    """Fill keys an older/partial META lacks, and check the ones the predictor relies on."""
    meta = dict(meta)
    (_, ih, iw, c), _ = _model_io(model)
    size = meta.get("input_size")
    if not size or len(size) != 2 or any(v is None for v in size):
        meta["input_size"] = infer_meta_from_model(model)["input_size"]
        _warn(f"metadata gives no usable input_size ({size}); using {meta['input_size']}")
    meta.setdefault("channels", int(c) if c else 3)
    meta.setdefault("normalization", "unit")
    from segexp.inference import NORMALIZATIONS

    if meta["normalization"] not in NORMALIZATIONS:
        raise ConfigError(
            f"model metadata normalization={meta['normalization']!r}: expected one of "
            f"{list(NORMALIZATIONS)}"
        )
    meta.setdefault("required_multiple", _downsampling_factor(model))
    if "num_classes" not in meta or "head" not in meta:
        k = _probe(model, tuple(meta["input_size"]), int(meta["channels"]))[2]
        meta.setdefault("num_classes", 2 if k == 1 else k)
        meta.setdefault("head", "sigmoid" if k == 1 else "softmax")
    n = int(meta["num_classes"])
    if not meta.get("class_names"):
        meta["class_names"] = [f"class_{i}" for i in range(n)]
    if meta.get("task", "segmentation") != "segmentation":
        raise ConfigError(f"model task={meta['task']!r}: segexp-predict only segments images")
    if ih and iw and [int(ih), int(iw)] != [int(v) for v in meta["input_size"]]:
        _warn(f"model input is {[ih, iw]}, metadata says {meta['input_size']}; using the model's")
        meta["input_size"] = [int(ih), int(iw)]
    if c and int(c) != int(meta["channels"]):
        raise ConfigError(f"metadata channels={meta['channels']} but the model takes {c}")
    return meta


# --------------------------------------------------------------------------------------------
# Batch prediction
# --------------------------------------------------------------------------------------------


def find_inputs(spec: str) -> list[Path]:
    """Image files named by a file, a directory (its image files) or a glob pattern."""
    from segexp.data.decode import IMAGE_EXTENSIONS

    path = Path(spec).expanduser()
    if path.is_file():
        return [path]
    if path.is_dir():
        files = [p for p in sorted(path.iterdir()) if p.is_file()]
        files = [p for p in files if p.suffix.lower() in IMAGE_EXTENSIONS]
        if not files:
            raise DataError(f"input={spec}: no image files ({', '.join(IMAGE_EXTENSIONS)})")
        return files
    if glob.has_magic(spec):
        files = [Path(p) for p in sorted(glob.glob(os.path.expanduser(spec), recursive=True))]
        files = [p for p in files if p.is_file()]
        if not files:
            raise DataError(f"input={spec}: the pattern matches no files")
        return files
    raise DataError(f"input={spec}: no such file or directory")


def _output_stems(files: list[Path]) -> list[str]:
    """Output base names: the file stem, or stem_ext where two inputs share a stem."""
    stems = [p.stem for p in files]
    dup = {s for s in stems if stems.count(s) > 1}
    out, seen = [], set()
    for p, s in zip(files, stems, strict=True):
        name = f"{s}_{p.suffix.lstrip('.').lower()}" if s in dup else s
        base, i = name, 1
        while name in seen:
            name, i = f"{base}_{i}", i + 1
        seen.add(name)
        out.append(name)
    return out


class _Progress:
    """A plain-text progress bar on stderr (one line per image when not a terminal)."""

    def __init__(self, total: int, width: int = 30) -> None:
        self.total, self.width, self.start = total, width, time.monotonic()
        self.tty = sys.stderr.isatty()

    def update(self, done: int, name: str, status: str) -> None:
        elapsed = time.monotonic() - self.start
        if self.tty:
            fill = int(self.width * done / max(self.total, 1))
            bar = "#" * fill + "." * (self.width - fill)
            end = "\n" if done == self.total else ""
            line = f"\r[{bar}] {done}/{self.total} {elapsed:6.1f}s {name[:40]:<40}"
            print(line, end=end, file=sys.stderr, flush=True)
        else:
            print(f"[{done}/{self.total}] {name}: {status}", file=sys.stderr, flush=True)


def predict_files(
    files: list[Path],
    output: str | Path,
    predictor: Any,
    meta: dict[str, Any],
    *,
    overlay: bool = False,
    palette: bool = False,
    save_probs: bool = False,
    progress: bool = True,
    keep: dict[Path, Any] | None = None,
) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Segment ``files`` into ``output``; returns (written mask paths, [(failed file, reason)]).
    ``keep``, if given, receives each segmented input's class-id mask."""
    import numpy as np
    from PIL import Image

    from segexp import inference as inf

    out_dir = Path(output).expanduser()
    out_dir.mkdir(parents=True, exist_ok=True)
    resolved = {p.resolve() for p in files}
    n_classes = int(meta["num_classes"])
    written: list[Path] = []
    failed: list[tuple[Path, str]] = []
    bar = _Progress(len(files)) if progress else None
    for i, (path, stem) in enumerate(zip(files, _output_stems(files), strict=True), start=1):
        mask_path = out_dir / f"{stem}.png"
        status = "ok"
        try:
            if mask_path.resolve() in resolved:
                raise DataError(f"{path}: the mask {mask_path} would overwrite an input image")
            image = inf.model_input(
                path,
                int(meta["channels"]),
                str(meta["normalization"]),
                float(meta.get("input_range") or 1.0),
            )
            mask, probs = predictor.segment(image, probabilities=save_probs)
            inf.save_mask(mask, mask_path, num_classes=n_classes, palette=palette)
            if overlay:
                ov = inf.overlay(inf.display_rgb(image), mask, n_classes)
                Image.fromarray(ov).save(out_dir / f"{stem}_overlay.png")
            if save_probs:
                np.save(out_dir / f"{stem}_probs.npy", probs)
            written.append(mask_path)
            if keep is not None:
                keep[path] = mask
            h, w = mask.shape
            tiles = predictor.last_tiles
            status = f"ok ({w}x{h}, {tiles} tile{'s' if tiles > 1 else ''})"
        except Exception as err:  # noqa: BLE001 - report this file and go on with the others
            reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            if not isinstance(err, SegexpError):
                reason = f"{type(err).__name__}: {reason}"
            failed.append((path, reason))
            status = "FAILED"
            print(f"{PROG}: failed: {path.name}: {reason}", file=sys.stderr, flush=True)
        if bar:
            bar.update(i, path.name, status)
    return written, failed


def make_predictor(model: Any, meta: dict[str, Any], cfg: PredictConfig) -> Any:
    """A :class:`~segexp.inference.Segmenter` for ``model`` configured from ``meta`` and the
    CLI keys, in the mode ``cfg.mode`` selects (see :func:`choose_mode`)."""
    from segexp.inference import Segmenter, TiledPredictor

    mode, _ = choose_mode(meta, cfg.mode)
    geometry = meta.get("geometry") or {"kind": "resize", "size": list(meta["input_size"])}
    tiled = TiledPredictor(
        model=model,
        tile=tuple(int(v) for v in meta["input_size"]),
        channels=int(meta["channels"]),
        head=str(meta["head"]),
        num_classes=int(meta["num_classes"]),
        required_multiple=int(meta.get("required_multiple") or 1),
        tile_overlap=float(cfg.tile_overlap),
        blend=str(cfg.blend),
        tta=bool(cfg.tta),
        batch_size=int(cfg.batch_size),
        threshold=float(cfg.threshold),
    )
    return Segmenter(tiled, mode=mode, geometry=geometry)


def choose_mode(meta: dict[str, Any], requested: str = "auto") -> tuple[str, str]:
    """``(mode, reason)`` for segexp-predict: ``mode=auto`` follows the training geometry
    stored with the model (resized whole images -> ``resize``, native tiles -> ``tile``)."""
    from segexp.data.decode import predict_mode

    return predict_mode(meta.get("geometry"), requested)


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


def _usage() -> str:
    lines = [
        f"usage: {PROG} model=<runs:/ID/model|models:/name/version|path> input=<file|dir|glob> "
        "output=<dir> [key=value ...]",
        "keys (default):",
    ]
    for f in fields(PredictConfig):
        default = f.default if f.default != "???" else "(required)"
        lines.append(f"  {f.name}={default}")
    return "\n".join(lines)


def parse_args(argv: list[str]) -> PredictConfig:
    """``key=value`` arguments merged onto the :class:`PredictConfig` schema by OmegaConf."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    valid = [f.name for f in fields(PredictConfig)]
    given: dict[str, Any] = {}
    for arg in argv:
        key, sep, value = arg.partition("=")
        key = key.strip().lstrip("+")
        if not sep or not key:
            raise ConfigError(
                f"argument {arg!r}: expected key=value; valid keys: {', '.join(valid)}"
            )
        if key not in valid:
            raise ConfigError(f"unknown key {key!r}; valid keys: {', '.join(valid)}")
        if value in ("null", "None", "~", ""):
            given[key] = None
        elif key in _STR_KEYS:
            given[key] = value  # verbatim: globs and URIs are not YAML
        else:
            given[key] = OmegaConf.from_cli([f"v={value}"])["v"]
    schema = OmegaConf.structured(PredictConfig)
    try:
        cfg = OmegaConf.merge(schema, OmegaConf.create(given))
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", None) or "?"
        msg = _first_line(err)
        raise ConfigError(f"{key}={given.get(key)!r}: {msg}; see `{PROG} --help`") from None
    missing = [k for k in ("model", "input", "output") if OmegaConf.is_missing(cfg, k)]
    if missing:
        raise ConfigError(f"missing required key(s): {', '.join(k + '=...' for k in missing)}")
    for k in ("model", "input", "output"):
        if cfg[k] is None:
            raise ConfigError(f"{k}=null: a value is required")
    result: PredictConfig = OmegaConf.to_object(cfg)  # type: ignore[assignment]
    if result.batch_size < 1:
        raise ConfigError(f"batch_size={result.batch_size}: expected a positive integer")
    if not 0 <= result.threshold <= 1:
        raise ConfigError(f"threshold={result.threshold}: expected a value in [0, 1]")
    choose_mode({}, result.mode)  # checks the value
    if result.metrics is not None and result.masks is None:
        raise ConfigError(f"metrics={result.metrics}: scores need the true masks, masks=<dir>")
    if result.metrics is not None:
        metric_names({}, result.metrics)  # checks the names
    return result


def run(cfg: PredictConfig, *, progress: bool = True) -> int:
    """Run a prediction job; returns the process exit code (1 if any image failed)."""
    files = find_inputs(cfg.input)
    masks = match_masks(cfg.masks, files) if cfg.masks is not None else None
    from segexp.cli import import_tensorflow

    import_tensorflow(cfg.verbose)  # TensorFlow's start-up lines only with verbose=true
    model, meta = load_model_and_meta(cfg.model, tracking_uri=cfg.tracking_uri)
    predictor = make_predictor(model, meta, cfg)
    mode, reason = choose_mode(meta, cfg.mode)
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
        _score(cfg, meta, files, truths, keep)
    return 1 if failed else 0


def _score(
    cfg: PredictConfig,
    meta: dict[str, Any],
    files: list[Path],
    truths: list[Any],
    keep: dict[Path, Any],
) -> None:
    """Score the segmented images against their true masks; print and write metrics.json."""
    from segexp import predict_scores as ps

    names, source = ps.metric_names(meta, cfg.metrics)
    done = [i for i, p in enumerate(files) if p in keep]
    preds = [keep[files[i]] for i in done]
    trues = [truths[i] for i in done]
    failed = [str(p) for p in files if p not in keep]
    if not done:
        print(f"{PROG}: no image was segmented, nothing to score", file=sys.stderr)
        return
    values = ps.score(preds, trues, names, meta)
    print(ps.format_table(values, len(done), len(files), source))
    path = ps.write_result(
        Path(cfg.output).expanduser(), values, [str(files[i]) for i in done], failed, source
    )
    print(f"{PROG}: scores written to {path}")


def main(argv: list[str] | None = None) -> int:
    """Console entry point ``segexp-predict key=value ...``."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or any(a in ("-h", "--help", "help") for a in argv):
        print(_usage())
        return 0 if argv else 2
    try:
        cfg = parse_args(argv)
        return run(cfg)
    except SegexpError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
