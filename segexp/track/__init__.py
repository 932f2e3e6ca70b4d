"""MLflow glue: the store, what a run records, and the sweep (parent run, nested children).

The run-logging functions are importable from here; the sweep lives in
:mod:`segexp.track.context` (what a job knows of its sweep) and :mod:`segexp.track.sweep`
(the Hydra callback).
"""

from segexp.track.history import (
    log_metrics,
    log_metrics_once,
    log_missing_epochs,
    logged_image_steps,
    logged_steps,
)
from segexp.track.model import log_model, logged_model_uri
from segexp.track.params import git_commit, log_config, log_error, log_params, log_tags, safe_tags
from segexp.track.store import (
    EXPERIMENT_TAGS,
    PASSWORD_ENV,
    USER_ENV,
    check_store,
    credentials_to_env,
    get_or_create_experiment,
    init_sqlite,
    retry,
    set_status,
)

__all__ = [
    "EXPERIMENT_TAGS",
    "PASSWORD_ENV",
    "USER_ENV",
    "check_store",
    "credentials_to_env",
    "get_or_create_experiment",
    "git_commit",
    "init_sqlite",
    "log_config",
    "log_error",
    "log_metrics",
    "log_metrics_once",
    "log_missing_epochs",
    "log_model",
    "log_params",
    "log_tags",
    "logged_image_steps",
    "logged_model_uri",
    "logged_steps",
    "retry",
    "safe_tags",
    "set_status",
]
