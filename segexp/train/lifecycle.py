"""The MLflow run of one training job: create or reopen it, resume, fit, log, end it honestly."""

from __future__ import annotations

import contextlib
import math
import signal
import threading
import traceback
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
from mlflow import MlflowClient
from omegaconf import DictConfig, OmegaConf

from segexp import track
from segexp.config import check_integers, redact
from segexp.track.context import current, parent_tags
from segexp.track.names import child_run_name
from segexp.train import devices, results
from segexp.train.build import Built, build
from segexp.train.checkpoint import fault_point
from segexp.train.fit import fit
from segexp.train.resume import (
    LAUNCH_TAG,
    Resume,
    find_launched_run,
    prepare,
    reopen,
    write_run_file,
)
from segexp.train.resume_files import resume_dir, saved_history


@dataclass
class RunHandle:
    """The MLflow run a job logs to, and where its files go."""

    client: MlflowClient
    run_id: str
    output_dir: Path
    overrides: list[str]  # the command line's Hydra overrides


def train(cfg: DictConfig) -> float | None:
    """Run one job described by ``cfg``; returns the configured objective metric."""
    output_dir, overrides = _hydra_context()
    _mask_hydra_files()
    check_integers(cfg)
    _check_weights_choice(cfg)
    track.check_store(str(cfg.tracking.uri))
    resume: Resume | None = None
    if cfg.get("resume"):
        cfg, resume = prepare(cfg, overrides)
        output_dir = resume.output_dir
        track.check_store(str(cfg.tracking.uri))
    cfg = _credentials_to_env(cfg)
    # GPU options first: a multi-worker strategy must exist before any TensorFlow op runs.
    gpu = devices.setup(cfg.trainer)
    if not gpu.chief:  # only the chief tracks and checkpoints; the others train alongside
        cfg, output_dir = devices.worker_sandbox(cfg, gpu.task)
    mlflow.set_tracking_uri(str(cfg.tracking.uri))
    client = MlflowClient()
    experiment_id = track.get_or_create_experiment(client, str(cfg.tracking.experiment))
    mlflow.set_experiment(experiment_id=experiment_id)
    built = build(cfg, gpu=gpu, initial_epoch=resume.epoch if resume else 0)

    tags = {
        "model": cfg.model.name,
        "dataset": built.source.name,
        "task": built.task,
        "hydra_overrides": " ".join(overrides),
        "git_commit": track.git_commit(),
        "output_dir": str(output_dir),
        **parent_tags(),
        **OmegaConf.to_container(cfg.tracking.tags, resolve=True),
    }
    # A non-chief worker opens a fresh run in its private sandbox store.
    run_id = _open_run(
        client, experiment_id, cfg, overrides, tags, output_dir, resume if gpu.chief else None
    )
    print(
        f"segexp: MLflow run {run_id} in {redact(str(cfg.tracking.uri))} "
        f"(experiment {cfg.tracking.experiment!r}); outputs in {output_dir}",
        flush=True,
    )
    run = RunHandle(client, run_id, output_dir, overrides)
    try:
        with _run_status(client, run_id, output_dir):
            summary = _fit_and_log(cfg, built, run, resume)
    except KeyboardInterrupt:
        sweep_job = current()
        if sweep_job is None or not sweep_job.cancelled_job_goes_on():
            raise
        return math.nan  # the run is KILLED with its resume checkpoint; the sweep goes on
    value = summary.get(cfg.objective)
    return None if value is None else float(value)


def _fit_and_log(
    cfg: DictConfig, built: Built, run: RunHandle, resume: Resume | None
) -> dict[str, float]:
    """Set-up logging (new runs only), training with per-epoch checkpoints, result logging."""
    title = results.figure_title(cfg, built, run)
    if resume is None or resume.state is None:
        # New run, or one killed before its first checkpoint (set-up logging may be partial;
        # logging the same params and artifacts again is idempotent).
        results.log_setup(cfg, built, run, title)
    fitted = fit(cfg, built, run, resume, title)
    return results.log_results(cfg, built, run, fitted, title, resumed=resume is not None)


def _hydra_context() -> tuple[Path, list[str]]:
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():
        hc = HydraConfig.get()
        return Path(hc.runtime.output_dir), list(hc.overrides.task)
    return Path.cwd(), []


def _mask_hydra_files() -> None:
    """Hide secrets (URI passwords, secret-named keys) in the YAML files Hydra wrote for this
    job (``.hydra/``) and for its sweep (``multirun.yaml``)."""
    from hydra.core.hydra_config import HydraConfig

    from segexp.config import mask_yaml_files

    if not HydraConfig.initialized():
        return
    from hydra.types import RunMode

    hc = HydraConfig.get()
    folder = Path(hc.runtime.output_dir) / hc.output_subdir if hc.output_subdir else None
    files = sorted(folder.glob("*.yaml")) if folder and folder.is_dir() else []
    if hc.mode == RunMode.MULTIRUN:
        files.append(Path(hc.sweep.dir) / "multirun.yaml")
    mask_yaml_files([f for f in files if f.is_file()])


def _check_weights_choice(cfg: DictConfig) -> None:
    """``trainer.evaluate_weights`` and EarlyStopping's ``restore_best_weights`` agree (a
    one-line ConfigError before any MLflow run exists)."""
    from segexp.callbacks import restore_best_weights

    restore_best_weights(cfg.trainer)


def _credentials_to_env(cfg: DictConfig) -> DictConfig:
    """The config with the tracking URI's credentials moved to MLflow's environment variables."""
    uri = str(cfg.tracking.uri)
    clean = track.credentials_to_env(uri)
    if clean == uri:
        return cfg
    cfg = cfg.copy()
    OmegaConf.update(cfg, "tracking.uri", clean, merge=False)
    return cfg


def _open_run(
    client: MlflowClient,
    experiment_id: str,
    cfg: DictConfig,
    overrides: list[str],
    tags: dict[str, Any],
    output_dir: Path,
    resume: Resume | None,
) -> str:
    """Create the MLflow run (what resume needs is on disk first) or reopen the resumed one.

    A resume of a launch that was killed before ``run.json`` got its run id finds the run by its
    launch tag, or creates it when the kill came before the run existed."""
    if resume is not None and not resume.run_id:
        launch = str(resume.record.get("launch") or "")
        found = launch and find_launched_run(client, experiment_id, launch)
        if found:
            resume.run_id = found
            write_run_file(output_dir, found, cfg, launch)
        else:
            print("segexp: the interrupted launch never created its MLflow run; creating it")
    if resume is not None and resume.run_id:
        reopen(client, resume, cfg)
        return resume.run_id
    launch = str(resume.record.get("launch") or "") if resume else ""
    launch = launch or uuid.uuid4().hex
    write_run_file(output_dir, None, cfg, launch)
    run = track.retry(
        client.create_run,
        experiment_id,
        run_name=redact(child_run_name(cfg, overrides, current())),
        tags=track.safe_tags({**tags, LAUNCH_TAG: launch}),
    )
    fault_point("run_created")
    write_run_file(output_dir, run.info.run_id, cfg, launch)
    if resume is not None:
        resume.run_id = run.info.run_id
    return run.info.run_id


@contextlib.contextmanager
def _run_status(client: MlflowClient, run_id: str, output_dir: Path) -> Iterator[None]:
    """Run the job inside the (re)opened MLflow run and end it with an honest status.

    Success: FINISHED. Ctrl-C or SIGTERM (turned into KeyboardInterrupt): KILLED, with the tags
    ``segexp.status_reason`` and ``segexp.resume_checkpoint`` (the checkpoint of the last
    completed epoch is already on disk, and every epoch it holds is logged to the run first).
    Any other exception, a NaN loss included: FAILED, with the tag ``error`` (one line) and the
    artifact ``error.txt`` (traceback). Secrets are redacted.
    """
    status = "FAILED"
    try:
        track.retry(mlflow.start_run, run_id=run_id)
        with sigterm_as_interrupt():
            yield
        status = "FINISHED"
    except KeyboardInterrupt as err:
        status = "KILLED"
        folder = resume_dir(output_dir)
        with contextlib.suppress(Exception):
            # The signal may land between an epoch's checkpoint and its logging: every epoch
            # the checkpoint holds is in the run before it is marked KILLED.
            track.log_missing_epochs(client, run_id, saved_history(output_dir))
        with contextlib.suppress(Exception):
            track.log_tags(
                client,
                run_id,
                {
                    "segexp.status_reason": f"interrupted ({str(err) or 'received SIGINT'})",
                    "segexp.resume_checkpoint": str(folder),
                },
            )
        print(
            f"segexp: interrupted; checkpoint in {folder}; continue with: "
            f"segexp-train resume={output_dir}",
            flush=True,
        )
        raise
    except BaseException as err:
        track.log_error(client, run_id, err, traceback.format_exc())
        raise
    finally:
        track.set_status(client, run_id, status)
        with contextlib.suppress(Exception):
            mlflow.end_run(status)


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
