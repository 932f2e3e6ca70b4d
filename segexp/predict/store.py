"""A model stored with its input contract, and loaded back.

A model stored with its input contract and loaded back: a local ``model.keras`` with
``segexp_meta.json``, the MLflow Keras flavour (contract in the MLmodel metadata and as an
artifact, a tensor signature), registered versions; loading from a path or a ``runs:/`` /
``models:/`` URI, without creating a tracking store on the way.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from segexp.errors import ConfigError, first_line
from segexp.predict.contract import complete_meta, infer_meta_from_model, model_io, warn

META_FILE = "segexp_meta.json"
KERAS_FILE = "model.keras"
META_KEY = "segexp"


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

    inp, out = model_io(model)

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
        raise ConfigError(f"model={path}: cannot load Keras model ({first_line(err)})") from None


def _import_custom_objects() -> None:
    """Import segexp.models so its registered custom layers deserialize."""
    with contextlib.suppress(Exception):
        import segexp.models  # noqa: F401


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
                f"model={path}: cannot load MLflow model ({first_line(err)})"
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
                f"({first_line(err)}); tracking_uri= selects the store that holds it"
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
        warn(
            f"no segexp metadata stored with {uri}; inferred input_size={meta['input_size']}, "
            f"channels={meta['channels']}, head={meta['head']}, normalization=unit"
        )
    return model, complete_meta(meta, model)
