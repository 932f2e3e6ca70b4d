"""The run's trained model: logged once in the Keras flavor, optionally registered."""

from __future__ import annotations

from typing import Any

from segexp.track.store import retry


def logged_model_uri(run_id: str, name: str = "model") -> str | None:
    """The URI of the run's complete (READY) logged model ``name``, if it has one."""
    import mlflow

    found = retry(
        mlflow.search_logged_models,
        filter_string=f"name = '{name}' AND source_run_id = '{run_id}'",
        output_format="list",
    )
    ready = [m for m in found if str(m.status) == "READY"]  # the filter cannot select status
    return ready[0].model_uri if ready else None


def log_model(
    model: Any,
    meta: dict[str, Any],
    registered_name: str | None = None,
    *,
    resumed_run: str | None = None,
) -> str:
    """Log the model in the Keras flavor (inference graph only, with ``meta`` for
    `segexp-predict`, see :func:`segexp.predict.store.log_model`) and optionally register it.

    ``resumed_run``: the run id of a resumed run; when it already holds a complete model (the
    crash came after the model was logged) that one is kept and nothing is logged twice."""
    import keras

    from segexp.predict.store import log_model as log_with_meta

    if resumed_run is not None:
        uri = logged_model_uri(resumed_run)
        if uri is not None:
            print(f"segexp: the run already holds its model ({uri}); not logged again", flush=True)
            if registered_name and not _registered(registered_name, resumed_run):
                from segexp.predict.store import register_model

                register_model(resumed_run, registered_name)
            return uri

    inference = keras.Model(model.inputs, model.outputs, name=model.name)
    requirements = [f"tensorflow=={_version('tensorflow')}", f"keras=={keras.__version__}"]
    info = log_with_meta(
        inference,
        meta,
        name="model",
        pip_requirements=requirements,
        registered_model_name=registered_name,
    )
    return info.model_uri


def _registered(name: str, run_id: str) -> bool:
    """Whether the registered model ``name`` has a version from run ``run_id``."""
    from mlflow import MlflowClient

    try:
        versions = retry(MlflowClient().search_model_versions, f"name = '{name}'")
    except Exception:  # noqa: BLE001 - no such registered model yet
        return False
    return any(v.run_id == run_id for v in versions)


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)
