"""Resuming an interrupted run: find its checkpoint, merge its saved config, reopen its MLflow run.

``run.json`` (with a launch id, no run id yet) and ``config.yaml`` are written *before* the
MLflow run is created, which carries the launch id as the tag ``segexp.launch``; ``run.json``
gets the run id right after. A crash in between is resumed by finding the run by its launch tag
(or creating it when the crash came first). The saved config and ``run.json`` hold no secret:
secret-named keys are masked and tracking credentials travel in ``MLFLOW_TRACKING_USERNAME`` /
``MLFLOW_TRACKING_PASSWORD``.
"""

from __future__ import annotations

import json
import os
import re
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from segexp import track
from segexp.config import MASK, mask_secrets, override_key, redact
from segexp.errors import ConfigError
from segexp.train.resume_files import (
    CONFIG_FILE,
    RESUME_SUBDIR,
    RUN_FILE,
    STATE_FILE,
    load_saved_config,
    note_failed_resume,
    process_alive,
    read_json,
    resume_dir,
    usable_state,
    write_atomic,
)

# Keys that may differ between the interrupted run and the resuming command.
FREE_KEYS = ("resume", "trainer.verbose", "tracking.uri", "hydra")
_RUN_ID = re.compile(r"[0-9a-f]{32}")
LAUNCH_TAG = "segexp.launch"


def write_run_file(
    output_dir: Path | str, run_id: str | None, cfg: DictConfig, launch: str
) -> None:
    """Record the launch id, the run id (None before the run exists) and the resolved config
    (secrets masked) next to the checkpoints."""
    folder = resume_dir(output_dir)
    folder.mkdir(parents=True, exist_ok=True)
    masked = mask_secrets(OmegaConf.to_container(cfg, resolve=True))
    write_atomic(folder / CONFIG_FILE, OmegaConf.to_yaml(OmegaConf.create(masked)))
    write_atomic(folder / RUN_FILE, json.dumps(_run_record(run_id, cfg, launch), indent=1))


def _run_record(run_id: str | None, cfg: DictConfig, launch: str | None) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "launch": launch,
        "tracking_uri": redact(str(cfg.tracking.uri)),
        "tracking_credentials": bool(os.environ.get(track.USER_ENV)),
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


def find_launched_run(client: Any, experiment_id: str, launch: str) -> str | None:
    """The run created by the launch ``launch`` (a crash may have come before ``run.json``
    got its id), or None when the crash came before the run was created."""
    runs = track.retry(
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
        key = override_key(override).strip()
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
    record = read_json(folder / RUN_FILE)
    saved = None
    try:
        saved = load_saved_config(folder / CONFIG_FILE, spec)
        merged, state = _merge(cfg, saved, overrides, spec, record), None
        if (folder / STATE_FILE).is_file():
            state = usable_state(folder, read_json(folder / STATE_FILE), spec)
    except ConfigError as err:
        uri = str(saved.tracking.uri) if saved is not None else str(cfg.tracking.uri)
        explicit = {override_key(o) for o in overrides}
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
    explicit = {override_key(o) for o in overrides}
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
        and not os.environ.get(track.USER_ENV)
    ):
        raise ConfigError(
            f"resume={spec}: the run's tracking store {uri} needs credentials; set "
            f"{track.USER_ENV} and {track.PASSWORD_ENV} (or pass "
            "tracking.uri=<uri with user:password@>)"
        )
    return merged


def reopen(client: Any, resume: Resume, cfg: DictConfig) -> None:
    """Make an interrupted run resumable: refuse finished or live runs, close a stale one.

    A run still RUNNING whose process is gone (SIGKILL, OOM, power loss) is first marked KILLED
    with the tag ``segexp.stale_run`` saying so; the caller then reopens it (RUNNING again).
    """
    run = track.retry(client.get_run, resume.run_id)
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
        track.log_tags(
            client,
            resume.run_id,
            {
                "segexp.stale_run": f"RUNNING without a process (pid {pid} on {host}); "
                f"closed as KILLED at {time.strftime('%Y-%m-%dT%H:%M:%S')} by a resume"
            },
        )
        track.set_status(client, resume.run_id, "KILLED")
    resumes = int(run.data.tags.get("segexp.resumes", "0")) + 1
    track.log_tags(
        client,
        resume.run_id,
        {"segexp.resumes": resumes, "segexp.resumed_from_epoch": resume.epoch},
    )
    folder = resume_dir(resume.output_dir)
    record = _run_record(resume.run_id, cfg, resume.record.get("launch"))
    write_atomic(folder / RUN_FILE, json.dumps(record, indent=1))
    print(
        f"segexp: resuming MLflow run {resume.run_id} after epoch {resume.epoch} "
        f"(was {status}); outputs in {resume.output_dir}",
        flush=True,
    )
