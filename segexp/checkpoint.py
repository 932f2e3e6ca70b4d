"""Checkpoint and resume: continue an interrupted run from its last completed epoch.

Layout, in the run's output directory::

    checkpoints/resume/run.json          run id, tracking URI (password hidden), pid, host
    checkpoints/resume/config.yaml       the resolved config of the run (read back on resume)
    checkpoints/resume/state.json        last completed epoch, its variables file, the
                                         per-epoch history, timing and callback counters
    checkpoints/resume/epoch-NNNNN.npz   every model variable (weights, BatchNorm statistics,
                                         dropout seed generators) and optimizer variable
                                         (iterations, learning rate, moments) after epoch NNNNN

Order at the end of every epoch (``EpochLogger`` calls :meth:`ResumeCheckpoint.before_log`):
1. the variables are written to a new ``epoch-NNNNN.npz``, then ``state.json`` is replaced
   atomically (``os.replace``; it also records the previous epoch's state) and weight files
   older than the previous epoch's are deleted: a crash at any moment leaves a ``state.json``
   that names a complete weights file, and a fall-back if that file is damaged later;
2. only then is the epoch logged to MLflow. A crash between 1 and 2 loses nothing: on resume
   :func:`segexp.track.history.log_missing_epochs` compares the checkpoint's history with the run's
   metric history and logs exactly the (metric, epoch) values the run lacks; training continues
   at the next epoch, so no epoch is ever logged twice.

``run.json`` (with a launch id, no run id yet) and ``config.yaml`` are written *before* the
MLflow run is created, which carries the launch id as the tag ``segexp.launch``; ``run.json``
gets the run id right after. A crash in between is resumed by finding the run by its launch tag
(or creating it when the crash came first). An epoch-0 state is written right before the first
epoch; the previous epoch's variables file is kept, so a truncated newest file falls back to it.

The saved config and ``run.json`` hold no secret: secret-named keys are masked and tracking
credentials travel in ``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD``.

Crash tests: ``SEGEXP_FAULT=<point>`` makes the process SIGKILL itself at that point
(:func:`fault_point`): ``run_created``, ``mid_epoch``, ``between_epochs``, ``test_evaluation``,
``model_logging``.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import signal
import socket
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np
from omegaconf import DictConfig, OmegaConf

from segexp import track as tracking
from segexp.config import MASK, mask_secrets, redact
from segexp.errors import ConfigError, SegexpError
from segexp.resume_files import load_saved_config, note_failed_resume, process_alive, usable_state

RESUME_SUBDIR = Path("checkpoints") / "resume"
RUN_FILE, CONFIG_FILE, STATE_FILE = "run.json", "config.yaml", "state.json"
BEST_WEIGHTS_FILE = "early_stopping_best.npz"
# Keys that may differ between the interrupted run and the resuming command.
FREE_KEYS = ("resume", "trainer.verbose", "tracking.uri", "hydra")
# Counters of Keras callbacks that must survive a restart (plateau, early stopping, best ckpt).
CALLBACK_ATTRS = ("wait", "best", "cooldown_counter", "best_epoch", "stopped_epoch")
_RUN_ID = re.compile(r"[0-9a-f]{32}")
LAUNCH_TAG = "segexp.launch"
FAULT_ENV = "SEGEXP_FAULT"


def fault_point(name: str) -> None:
    """Crash tests: SIGKILL this process here when ``SEGEXP_FAULT`` names this point."""
    if os.environ.get(FAULT_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)


class NaNLossError(SegexpError):
    """Training produced a NaN or infinite loss (TerminateOnNaN stopped it)."""


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


def _write_atomic(path: Path, text: str) -> None:
    with _replacing(path) as fh:
        fh.write(text.encode("utf-8"))


def _savez_atomic(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with _replacing(path) as fh:
        np.savez(fh, **arrays)


def _read_json(path: Path) -> dict[str, Any]:
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
    return dict(_read_json(path).get("history") or {})


def write_run_file(
    output_dir: Path | str, run_id: str | None, cfg: DictConfig, launch: str
) -> None:
    """Record the launch id, the run id (None before the run exists) and the resolved config
    (secrets masked) next to the checkpoints."""
    folder = resume_dir(output_dir)
    folder.mkdir(parents=True, exist_ok=True)
    masked = mask_secrets(OmegaConf.to_container(cfg, resolve=True))
    _write_atomic(folder / CONFIG_FILE, OmegaConf.to_yaml(OmegaConf.create(masked)))
    _write_atomic(folder / RUN_FILE, json.dumps(_run_record(run_id, cfg, launch), indent=1))


def _run_record(run_id: str | None, cfg: DictConfig, launch: str | None) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "launch": launch,
        "tracking_uri": redact(str(cfg.tracking.uri)),
        "tracking_credentials": bool(os.environ.get(tracking.USER_ENV)),
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


def find_launched_run(client: Any, experiment_id: str, launch: str) -> str | None:
    """The run created by the launch ``launch`` (a crash may have come before ``run.json``
    got its id), or None when the crash came before the run was created."""
    runs = tracking.retry(
        client.search_runs, [experiment_id], filter_string=f"tags.`{LAUNCH_TAG}` = '{launch}'"
    )
    return runs[0].info.run_id if runs else None


@dataclass
class Resume:
    """An interrupted run to continue."""

    output_dir: Path
    run_id: str
    state: dict[str, Any] | None
    record: dict[str, Any] = field(default_factory=dict)

    @property
    def epoch(self) -> int:
        """Completed epochs (0 when killed before the first epoch ended)."""
        return int(self.state["epoch"]) if self.state else 0


def locate(spec: str, tracking_uri: str) -> Path:
    """The output directory named by ``resume=<dir>`` or ``resume=<MLflow run id>``."""
    path = Path(spec).expanduser()
    if path.is_dir():
        if (resume_dir(path) / RUN_FILE).is_file():
            return path.resolve()
        raise ConfigError(
            f"resume={spec}: no {RESUME_SUBDIR / RUN_FILE} in this directory; expected the "
            "output directory of a segexp-train run"
        )
    if not _RUN_ID.fullmatch(spec):
        raise ConfigError(
            f"resume={spec}: neither an existing output directory nor an MLflow run id"
        )
    from mlflow import MlflowClient

    try:
        run = MlflowClient(tracking_uri).get_run(spec)
    except Exception:  # noqa: BLE001 - any lookup failure means "not found" to the user
        raise ConfigError(
            f"resume={spec}: no such run in tracking.uri={redact(tracking_uri)}"
        ) from None
    out = run.data.tags.get("output_dir")
    if not out or not (resume_dir(out) / RUN_FILE).is_file():
        raise ConfigError(
            f"resume={spec}: the run's output_dir tag ({out}) holds no resume checkpoint "
            f"({RESUME_SUBDIR / RUN_FILE}) on this machine; resume it where that folder is, "
            "or start a new run"
        )
    return Path(out)


def _flat(container: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(container, dict):
        flat: dict[str, Any] = {}
        for key, value in container.items():
            flat.update(_flat(value, f"{prefix}{key}."))
        return flat or {prefix.rstrip("."): {}}
    return {prefix.rstrip("."): container}


def conflicts(cfg: DictConfig, saved: DictConfig, overrides: Iterable[str]) -> list[str]:
    """``key: saved -> new`` for the explicit overrides that change the saved config."""
    new = _flat(OmegaConf.to_container(cfg, resolve=True))
    old = _flat(OmegaConf.to_container(saved, resolve=True))
    prefixes: list[str] = []
    for override in overrides:
        key = override.lstrip("+~").split("=", 1)[0].strip()
        if key.startswith(FREE_KEYS):
            continue
        prefixes.append("" if key == "experiment" else key)
    found = []
    for key in sorted(set(new) | set(old)):
        if key.startswith(FREE_KEYS) or old.get(key) == MASK:  # a masked secret: re-supplied
            continue
        if any(p == "" or key == p or key.startswith(p + ".") for p in prefixes) and new.get(
            key, "<unset>"
        ) != old.get(key, "<unset>"):
            found.append(f"{key}: {old.get(key, '<unset>')} -> {new.get(key, '<unset>')}")
    return found


def prepare(cfg: DictConfig, overrides: list[str]) -> tuple[DictConfig, Resume]:
    """Load the interrupted run's config and checkpoint; refuse conflicting overrides.

    A checkpoint that cannot be used is one line (ConfigError) and is noted on the run (tag
    ``segexp.resume_error``; a run left RUNNING by a dead process is closed as KILLED)."""
    spec = str(cfg.resume)
    out = locate(spec, str(cfg.tracking.uri))
    folder = resume_dir(out)
    record = _read_json(folder / RUN_FILE)
    saved = None
    try:
        saved = load_saved_config(folder / CONFIG_FILE, spec)
        merged, state = _merge(cfg, saved, overrides, spec, record), None
        if (folder / STATE_FILE).is_file():
            state = usable_state(folder, _read_json(folder / STATE_FILE), spec)
    except ConfigError as err:
        uri = str(saved.tracking.uri) if saved is not None else str(cfg.tracking.uri)
        explicit = {o.lstrip("+~").split("=", 1)[0] for o in overrides}
        note_failed_resume(
            str(cfg.tracking.uri) if "tracking.uri" in explicit else uri, record, err
        )
        raise
    return merged, Resume(out, str(record.get("run_id") or ""), state, record)


def _merge(
    cfg: DictConfig, saved: DictConfig, overrides: list[str], spec: str, record: dict[str, Any]
) -> DictConfig:
    changed = conflicts(cfg, saved, overrides)
    if changed:
        shown = "; ".join(redact(c) for c in changed[:5])
        raise ConfigError(
            f"resume={spec}: the overrides change the saved config ({shown}); a resumed run "
            "keeps its config: drop these overrides or start a new run"
        )
    explicit = {o.lstrip("+~").split("=", 1)[0] for o in overrides}
    merged = saved.copy()
    OmegaConf.set_struct(merged, False)
    merged.resume = spec
    masked = [k for k, v in _flat(OmegaConf.to_container(saved)).items() if v == MASK]
    for key in ("trainer.verbose", "tracking.uri", *masked):
        if key in explicit:
            OmegaConf.update(merged, key, OmegaConf.select(cfg, key), merge=False)
    uri = str(merged.tracking.uri)
    has_userinfo = "@" in uri.split("://", 1)[-1].split("/", 1)[0]
    if (
        record.get("tracking_credentials")
        and not has_userinfo
        and not os.environ.get(tracking.USER_ENV)
    ):
        raise ConfigError(
            f"resume={spec}: the run's tracking store {uri} needs credentials; set "
            f"{tracking.USER_ENV} and {tracking.PASSWORD_ENV} (or pass "
            "tracking.uri=<uri with user:password@>)"
        )
    return merged


def reopen(client: Any, resume: Resume, cfg: DictConfig) -> None:
    """Make an interrupted run resumable: refuse finished or live runs, close a stale one.

    A run still RUNNING whose process is gone (SIGKILL, OOM, power loss) is first marked KILLED
    with the tag ``segexp.stale_run`` saying so; the caller then reopens it (RUNNING again).
    """
    run = tracking.retry(client.get_run, resume.run_id)
    status = run.info.status
    where = f"resume={cfg.resume}"
    if status == "FINISHED":
        raise ConfigError(f"{where}: run {resume.run_id} is already FINISHED; nothing to resume")
    pid, host = int(resume.record.get("pid", -1)), resume.record.get("host")
    if status == "RUNNING":
        if host == socket.gethostname() and pid not in (-1, os.getpid()) and process_alive(pid):
            raise ConfigError(
                f"{where}: run {resume.run_id} is still being trained by process {pid}; "
                "stop it first (kill -TERM saves a checkpoint)"
            )
        tracking.log_tags(
            client,
            resume.run_id,
            {
                "segexp.stale_run": f"RUNNING without a process (pid {pid} on {host}); "
                f"closed as KILLED at {time.strftime('%Y-%m-%dT%H:%M:%S')} by a resume"
            },
        )
        tracking.set_status(client, resume.run_id, "KILLED")
    resumes = int(run.data.tags.get("segexp.resumes", "0")) + 1
    tracking.log_tags(
        client,
        resume.run_id,
        {"segexp.resumes": resumes, "segexp.resumed_from_epoch": resume.epoch},
    )
    folder = resume_dir(resume.output_dir)
    record = _run_record(resume.run_id, cfg, resume.record.get("launch"))
    _write_atomic(folder / RUN_FILE, json.dumps(record, indent=1))
    print(
        f"segexp: resuming MLflow run {resume.run_id} after epoch {resume.epoch} "
        f"(was {status}); outputs in {resume.output_dir}",
        flush=True,
    )


def _optimizer_variables(model: keras.Model) -> list[Any]:
    opt = getattr(model, "optimizer", None)  # None or absent before compile()
    return list(opt.variables) if opt is not None and opt.built else []


def save_variables(model: keras.Model, path: Path) -> None:
    """Write every model variable (weights, BatchNorm statistics, dropout seed generators) and
    every optimizer variable (iterations, learning rate, moments) to ``path`` (``.npz``),
    atomically. A plain array per variable is several times faster than ``save_weights``."""
    arrays = {f"model_{i:05d}": np.asarray(v.numpy()) for i, v in enumerate(model.variables)}
    for i, v in enumerate(_optimizer_variables(model)):
        arrays[f"optimizer_{i:05d}"] = np.asarray(v.numpy())
    _savez_atomic(path, arrays)


def _assign(variables: list[Any], values: list[np.ndarray], what: str, path: Path) -> None:
    shapes = [tuple(v.shape) for v in variables]
    saved = [tuple(a.shape) for a in values]
    if shapes != saved:
        raise ConfigError(
            f"resume: {path} holds {len(saved)} {what} variables that do not match the "
            f"{len(shapes)} of this config's model; the checkpoint belongs to another model"
        )
    for var, value in zip(variables, values, strict=True):
        var.assign(value.astype(var.dtype, copy=False))


def load_weights(model: keras.Model, resume: Resume) -> None:
    """Restore the model's variables (weights, BatchNorm statistics, dropout seed generators, so
    dropout draws the masks an uninterrupted run would) and the optimizer's (iterations, so the
    learning-rate schedule too, learning rate, moments) from the last completed epoch."""
    if not resume.state or not resume.state.get("weights"):
        return
    path = resume_dir(resume.output_dir) / resume.state["weights"]
    try:
        with np.load(path) as saved:
            parts = {
                prefix: [saved[k] for k in sorted(saved.files) if k.startswith(prefix)]
                for prefix in ("model_", "optimizer_")
            }
    except Exception as err:  # noqa: BLE001 - BadZipFile, EOFError, zlib errors: one line
        raise ConfigError(
            f"resume: {path} is unreadable ({type(err).__name__}: {err}); start a new run"
        ) from None
    _assign(list(model.variables), parts["model_"], "model", path)
    if parts["optimizer_"] and getattr(model, "optimizer", None) is not None:
        if not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
        _assign(_optimizer_variables(model), parts["optimizer_"], "optimizer", path)


class ResumeCheckpoint(keras.callbacks.Callback):
    """Saves the resume state after every epoch (see the module docstring) and spots NaN losses.

    Put it after the callbacks in ``watch`` (their counters are restored in ``on_train_begin``,
    after their own reset) and hand :meth:`before_log` to ``EpochLogger(before_log=...)``.
    """

    def __init__(
        self,
        output_dir: Path | str,
        run_id: str,
        *,
        logger: Any = None,
        watch: Iterable[keras.callbacks.Callback] = (),
        state: dict[str, Any] | None = None,
        stop_on_nan: bool = True,
    ) -> None:
        super().__init__()
        self.stop_on_nan = stop_on_nan
        self.folder = resume_dir(output_dir)
        self.run_id = run_id
        self.logger = logger
        self.watch = list(watch)
        self.restored = state
        state = state or {}
        self.epoch = int(state.get("epoch", 0))
        # After a fall-back to the previous checkpoint: epochs the run already logged.
        self.redo_through = int(state.get("redo_through", 0))
        self._saved = {k: v for k, v in state.items() if k not in ("previous", "redo_through")}
        self.history: dict[str, list[float]] = {
            k: [float(v) for v in vals] for k, vals in state.get("history", {}).items()
        }
        if logger is not None:
            self.attach(logger)
        self.nan_epoch: int | None = None
        self._current = self.epoch

    def attach(self, logger: Any) -> None:
        """Save (and, when resuming, restore) the timing state of this ``EpochLogger``."""
        self.logger = logger
        if self.restored and self.restored.get("logger"):
            logger.restore(self.restored["logger"])

    # -- Keras hooks -------------------------------------------------------------------------
    def on_train_begin(self, logs: dict | None = None) -> None:
        if self.restored:
            saved = self.restored.get("callbacks", {})
            for i, cb in enumerate(self.watch):
                for attr, value in saved.get(f"{i}:{type(cb).__name__}", {}).items():
                    setattr(cb, attr, value)
            self._restore_best_weights()
        else:
            self.save()

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._current = epoch

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        if self._current >= 1 and batch == 1:
            fault_point("mid_epoch")
        loss = (logs or {}).get("loss")
        if self.stop_on_nan and self.nan_epoch is None and loss is not None and not _finite(loss):
            self.nan_epoch = self._current + 1

    def before_log(self, epoch: int, logs: dict) -> bool:
        """Checkpoint a finished epoch; False (do not log) for an epoch stopped by a NaN loss."""
        if self.stop_on_nan and self.nan_epoch is None and not _finite(logs.get("loss", 0.0)):
            self.nan_epoch = epoch + 1
        if self.nan_epoch is not None:
            return False
        for key, value in logs.items():
            values = self.history.setdefault(key, [])
            values.extend([math.nan] * (epoch - len(values)))
            values[epoch:] = [_float(value)]
        self.epoch = epoch + 1
        self.save()
        fault_point("between_epochs")
        return self.epoch > self.redo_through

    # -- state ---------------------------------------------------------------------------------
    def callback_state(self) -> dict[str, dict[str, Any]]:
        saved: dict[str, dict[str, Any]] = {}
        for i, cb in enumerate(self.watch):
            attrs = {}
            for attr in CALLBACK_ATTRS:
                value = getattr(cb, attr, None)
                if isinstance(value, (int, float, np.number)) and not isinstance(value, bool):
                    attrs[attr] = value.item() if isinstance(value, np.number) else value
            saved[f"{i}:{type(cb).__name__}"] = attrs
        return saved

    def _early_stopping(self) -> Any:
        return next(
            (cb for cb in self.watch if isinstance(cb, keras.callbacks.EarlyStopping)), None
        )

    def _restore_best_weights(self) -> None:
        """EarlyStopping(restore_best_weights) keeps its best weights in memory; bring them
        back so a resumed run ends on the same weights as an uninterrupted one."""
        es, path = self._early_stopping(), self.folder / BEST_WEIGHTS_FILE
        if es is not None and es.restore_best_weights and path.is_file():
            with np.load(path) as saved:
                es.best_weights = [saved[f"w{i}"] for i in range(len(saved.files))]

    def save(self) -> Path:
        """Write model + optimizer variables, then ``state.json`` (atomically), then clean up."""
        self.folder.mkdir(parents=True, exist_ok=True)
        name = f"epoch-{self.epoch:05d}.npz"
        save_variables(self.model, self.folder / name)
        es = self._early_stopping()
        if es is not None and es.restore_best_weights and es.best_weights is not None:
            best = {f"w{i}": w for i, w in enumerate(es.best_weights)}
            _savez_atomic(self.folder / BEST_WEIGHTS_FILE, best)
        state = {
            "run_id": self.run_id,
            "epoch": self.epoch,
            "weights": name,
            "history": self.history,
            "logger": self.logger.state() if self.logger is not None else {},
            "callbacks": self.callback_state(),
            "pid": os.getpid(),
            "saved": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
        previous = self._saved if self._saved.get("weights") not in (None, name) else None
        _write_atomic(
            self.folder / STATE_FILE, json.dumps({**state, "previous": previous}, indent=1)
        )
        keep = {name, (previous or {}).get("weights")}
        for old in self.folder.glob("epoch-*.npz"):
            if old.name not in keep:
                old.unlink(missing_ok=True)
        self._saved = state
        return self.folder / name


def _float(value: Any) -> float:
    try:
        return float(np.asarray(value))
    except (TypeError, ValueError):
        return math.nan


def _finite(value: Any) -> bool:
    return math.isfinite(_float(value))


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM into KeyboardInterrupt (like Ctrl-C) while training, in the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"received {signal.Signals(signum).name}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
