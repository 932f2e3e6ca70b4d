"""Configuration: the schema, conf/ paths and the config helpers (no TensorFlow).

The schema (Hydra structured configs, registered here on import), conf/ paths, key checks,
secret redaction and MLflow params. Nothing here imports TensorFlow."""

from segexp.config.keys import (
    BUILD_CHECKED_KEYS,
    INTEGER_KEYS,
    MAPPING_KEYS,
    OPEN_KEYS,
    check_integers,
    check_key,
    closest,
    override_key,
)
from segexp.config.params import RUN_NAME_EXCLUDED_PREFIXES, as_params, flatten, run_name
from segexp.config.paths import CONF_DIR, PROJECT_ROOT, input_spec, to_dict
from segexp.config.schema import SCHEMAS, load_preset, register, typed
from segexp.config.secrets import MASK, is_secret_key, mask_secrets, mask_yaml_files, redact

register()

__all__ = [
    "BUILD_CHECKED_KEYS",
    "CONF_DIR",
    "INTEGER_KEYS",
    "MAPPING_KEYS",
    "MASK",
    "OPEN_KEYS",
    "PROJECT_ROOT",
    "RUN_NAME_EXCLUDED_PREFIXES",
    "SCHEMAS",
    "as_params",
    "check_integers",
    "check_key",
    "closest",
    "flatten",
    "input_spec",
    "load_preset",
    "is_secret_key",
    "mask_secrets",
    "mask_yaml_files",
    "override_key",
    "redact",
    "register",
    "run_name",
    "to_dict",
    "typed",
]
