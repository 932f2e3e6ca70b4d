"""The resume checkpoint's files: layout, atomic writes, reading them back.

Their layout, atomic writes, and reading them back (a usable state, falling back past a damaged
variables file; a saved config that is really one; a failed resume noted on its MLflow run)."""

from __future__ import annotations

import contextlib
import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from segexp import track
from segexp.config import redact
from segexp.errors import ConfigError

RESUME_SUBDIR = Path("checkpoints") / "resume"
RUN_FILE, CONFIG_FILE, STATE_FILE = "run.json", "config.yaml", "state.json"
BEST_WEIGHTS_FILE = "early_stopping_best.npz"
# Sections every saved config has; a file without them is not a segexp config.
CONFIG_SECTIONS = ("model", "dataset", "trainer", "tracking")


def resume_dir(output_dir: Path | str) -> Path:
    """Where the resume checkpoint of a run lives."""
    return Path(output_dir) / RESUME_SUBDIR


@contextlib.contextmanager
def _replacing(path: Path) -> Iterator[Any]:
    """A binary file that replaces ``path`` atomically once written and synced to disk."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        yield fh
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def write_atomic(path: Path, text: str) -> None:
    with _replacing(path) as fh:
        fh.write(text.encode("utf-8"))


def savez_atomic(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with _replacing(path) as fh:
        np.savez(fh, **arrays)


def read_json(path: Path) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, ValueError) as err:
        raise ConfigError(f"resume: {path} is unreadable ({err}); start a new run") from None


def saved_history(output_dir: Path | str) -> dict[str, list[float]]:
    """The per-epoch history in a run's resume checkpoint (empty when there is none)."""
    path = resume_dir(output_dir) / STATE_FILE
    if not path.is_file():
        return {}
    return dict(read_json(path).get("history") or {})


def load_saved_config(path: Path, spec: str) -> DictConfig:
    """The saved config of ``resume=spec``, or a one-line ConfigError saying what to do."""
    hint = "copy the run's config.yaml artifact from MLflow there, or start a new run"
    try:
        saved = OmegaConf.load(path)
    except Exception as err:  # noqa: BLE001 - any parse error becomes one line
        raise ConfigError(f"resume={spec}: {path} is unreadable ({err}); {hint}") from None
    missing = [k for k in CONFIG_SECTIONS if not isinstance(saved, DictConfig) or k not in saved]
    if missing:
        what = "empty" if not saved else f"missing {', '.join(missing)}"
        raise ConfigError(f"resume={spec}: {path} is {what}, not a saved segexp config; {hint}")
    return saved


def _unreadable(path: Path) -> str | None:
    """Why a variables file cannot be read (None when every array in it reads back)."""
    try:
        with np.load(path) as saved:
            for key in saved.files:
                saved[key]
    except Exception as err:  # noqa: BLE001 - BadZipFile, EOFError, zlib errors, a missing file
        return f"{type(err).__name__}: {err}"
    return None


def usable_state(folder: Path, state: dict[str, Any] | None, spec: str) -> dict[str, Any] | None:
    """``state`` when its variables file reads back; else the previous epoch's state (its
    variables, the newest history), saying so; else a one-line ConfigError."""
    if not state or not state.get("weights"):
        return state
    path = folder / state["weights"]
    why = _unreadable(path)
    if why is None:
        return state
    epoch, prev = int(state.get("epoch", 0)), state.get("previous")
    if prev and prev.get("weights") and _unreadable(folder / prev["weights"]) is None:
        print(
            f"segexp: resume: {path} is unreadable ({why}); continuing from the previous "
            f"checkpoint {prev['weights']} (epoch {prev['epoch']}): epoch {epoch} is trained "
            "again and the run keeps the values it logged for it",
            flush=True,
        )
        return {**prev, "history": state.get("history", {}), "redo_through": epoch}
    if epoch == 0:
        print(f"segexp: resume: {path} is unreadable ({why}); starting from epoch 0", flush=True)
        return None
    raise ConfigError(
        f"resume={spec}: {path} is unreadable ({why}) and no earlier checkpoint is readable; "
        "start a new run"
    )


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def note_failed_resume(uri: str, record: dict[str, Any], err: Exception) -> None:
    """Say on the run why it could not be resumed; close it as KILLED if its process is gone."""
    run_id = record.get("run_id")
    if not run_id:
        return
    with contextlib.suppress(Exception):
        from mlflow import MlflowClient

        client = MlflowClient(track.credentials_to_env(uri))
        run = track.retry(client.get_run, run_id, attempts=1)
        line = redact(str(err))[:5000]
        tags = {"segexp.resume_error": line}
        pid, host = int(record.get("pid", -1)), record.get("host")
        gone = host != socket.gethostname() or pid == -1 or not process_alive(pid)
        if run.info.status == "RUNNING" and gone:
            tags["segexp.status_reason"] = f"killed (process {pid} on {host} gone); {line}"
        track.log_tags(client, run_id, tags)
        if "segexp.status_reason" in tags:
            track.set_status(client, run_id, "KILLED")
