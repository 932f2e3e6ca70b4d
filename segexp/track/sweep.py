"""Multirun tracking: one MLflow parent run per Hydra sweep, every job a nested child run.

Registered in ``conf/train.yaml`` under ``hydra.callbacks.mlflow_sweep``. Works with any launcher
(basic, joblib, submitit local/SLURM) and sweeper (basic, Optuna) because it only relies on
Hydra's callback hooks:

- ``on_multirun_start`` (main process, before any job is launched) creates the parent run and
  saves the sweep's :class:`~segexp.track.context.SweepContext` (parent run id, sweep id,
  tracking URI) to ``<sweep dir>/segexp_sweep.json``.
- ``on_job_start`` (in the process that runs the job, on whichever machine) loads it as the
  job's :func:`~segexp.track.context.current` context; the training job adds its ``job_tags()``
  (``mlflow.parentRunId``, ``segexp.sweep_id``, ``segexp.sweep_job``) to the child run and
  names it from what the job varies (:func:`~segexp.track.names.child_run_name`).
- ``on_job_end`` marks a job that raised as FAILED in MLflow (creating a FAILED child run when it
  failed before its run existed) and, with ``continue_on_failure``, turns the failure into a NaN
  objective so the sweeper carries on (Hydra's basic sweeper would otherwise abort the sweep).
- ``on_multirun_end`` counts the children, logs the comparison to the parent and ends it
  (:func:`~segexp.track.sweep_summary.close_parent`). If the sweep aborts, an exit handler
  ends the parent as KILLED (interrupted) or FAILED.
"""

from __future__ import annotations

import atexit
import json
import logging
import math
import os
import sys
import time
import traceback
import uuid
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from segexp.config import mask_secrets, override_key, redact
from segexp.track import context as sweep_context
from segexp.track.context import SweepContext, parent_tags
from segexp.track.names import child_run_name, short_names
from segexp.track.params import git_commit, log_tags, safe_tags
from segexp.track.store import (
    check_store,
    client_for,
    credentials_to_env,
    get_or_create_experiment,
    retry_patiently,
)


def _fixed_keys(task_overrides: list[str]) -> tuple[str, ...]:
    """Keys of the sweep's command-line overrides that are not sweeps (same in every job)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(task_overrides)
    return tuple(sorted({override_key(o.input_line) for o in parsed if not o.is_sweep_override()}))


def _sweep_params(config: DictConfig) -> list[str]:
    params = OmegaConf.select(config, "hydra.sweeper.params", default=None)
    if not params:
        return []
    return [f"{k}={v}" for k, v in OmegaConf.to_container(params, resolve=False).items()]


def redact_log_records() -> None:
    """Mask secrets in every log record from now on (Hydra's launchers log each job's
    overrides, and they reconfigure logging's handlers per job, so a handler filter would not
    last): a log-record factory, installed once per process."""
    previous = logging.getLogRecordFactory()
    if getattr(previous, "segexp_redacts", False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed record is logging's to report
            return record
        masked = redact(message)
        if masked != message:
            record.msg, record.args = masked, ()
        return record

    factory.segexp_redacts = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)


def _sweep_tags(
    config: DictConfig, choices: Any, task_overrides: list[str], sweep_id: str, sweep_dir: Path
) -> dict[str, Any]:
    """The parent run's tags: what the sweep is, how it runs, what it optimises."""
    tags = {
        "segexp.sweep_id": sweep_id,
        "segexp.sweep_role": "parent",
        "segexp.sweep_dir": str(sweep_dir),
        "segexp.sweeper": choices.get("hydra/sweeper", ""),
        "segexp.launcher": choices.get("hydra/launcher", ""),
        "segexp.experiment_file": choices.get("experiment") or "",
        "sweep_overrides": " ".join(task_overrides),
        "sweep_params": " ".join(_sweep_params(config)),
        "objective": str(config.objective),
        "objective_direction": str(
            OmegaConf.select(config, "hydra.sweeper.direction", default="minimize")
        ),
        "git_commit": git_commit(),
        **parent_tags(),
    }
    claim = OmegaConf.select(config, "claim", default=None)
    if claim is not None:
        from segexp.compare.protocol import with_protocol

        claim = with_protocol(
            OmegaConf.to_container(claim, resolve=True), choices.get("experiment")
        )
        tags["segexp.claim"] = json.dumps(mask_secrets(claim))
    return tags


class MlflowSweepCallback(Callback):
    """Hydra callback: a parent MLflow run per multirun, nested child runs, failure handling."""

    def __init__(
        self, enabled: bool = True, continue_on_failure: bool = True, summary: bool = True
    ) -> None:
        self.enabled = enabled
        self.continue_on_failure = continue_on_failure
        self.summary = summary
        self._context: SweepContext | None = None
        self._owner_pid: int | None = None
        self._interrupted = False

    # -- main process ------------------------------------------------------------------------
    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        if not self.enabled or OmegaConf.select(config, "tracking.uri") is None:
            return
        redact_log_records()
        # Credentials move to MLflow's environment variables (the jobs inherit them), so no
        # URI the parent saves or MLflow prints carries them.
        uri = credentials_to_env(str(config.tracking.uri))
        check_store(uri)
        client = client_for(uri)
        name = str(config.tracking.experiment)
        experiment_id = get_or_create_experiment(client, name)
        choices = OmegaConf.select(config, "hydra.runtime.choices", default={}) or {}
        task_overrides = list(OmegaConf.select(config, "hydra.overrides.task", default=[]) or [])
        sweep_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
        sweep_dir = Path(str(config.hydra.sweep.dir)).resolve()
        label = choices.get("experiment") or f"{config.model.name}-{config.dataset.name}"
        run = retry_patiently(
            client.create_run,
            experiment_id,
            run_name=redact(f"sweep {label} {sweep_id}"),
            tags=safe_tags(_sweep_tags(config, choices, task_overrides, sweep_id, sweep_dir)),
        )
        base = OmegaConf.to_container(config, resolve=False)
        base.pop("hydra", None)
        text = OmegaConf.to_yaml(OmegaConf.create(mask_secrets(base)))
        retry_patiently(client.log_text, run.info.run_id, text, "sweep_base.yaml")
        self._context = SweepContext(
            parent_run_id=run.info.run_id,
            sweep_id=sweep_id,
            tracking_uri=uri,
            experiment_id=experiment_id,
            fixed_keys=_fixed_keys(task_overrides),
            continue_on_failure=self.continue_on_failure,
        )
        state_file = self._context.save(sweep_dir)
        self._owner_pid = os.getpid()
        atexit.register(self._abort_if_open)
        self._watch_interrupts()
        print(
            f"segexp: sweep {sweep_id}: MLflow parent run {run.info.run_id} in {redact(uri)} "
            f"(experiment {name!r}); state in {state_file}",
            flush=True,
        )

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if self._context is None:
            return
        from segexp.track.sweep_summary import close_parent

        close_parent(self._context, config, summary=self.summary)
        self._context = None

    def _watch_interrupts(self) -> None:
        """Remember Ctrl-C / SIGTERM (then act as before), so an interrupted sweep's parent run
        ends KILLED rather than FAILED."""
        import signal
        import threading

        if threading.current_thread() is not threading.main_thread():
            return
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous = signal.getsignal(signum)

            def handler(num: int, frame: Any, previous: Any = previous) -> None:
                if previous is signal.SIG_IGN:
                    return
                self._interrupted = True
                if callable(previous):
                    previous(num, frame)
                else:
                    raise KeyboardInterrupt(f"received {signal.Signals(num).name}")

            signal.signal(signum, handler)

    def _abort_if_open(self) -> None:
        """At exit: a sweep that never reached ``on_multirun_end`` ends its parent as KILLED
        (interrupted) or FAILED."""
        if self._context is None or os.getpid() != self._owner_pid:
            return
        try:
            client = client_for(self._context.tracking_uri)
            run_id = self._context.parent_run_id
            client.set_tag(run_id, "segexp.sweep.aborted", "true")
            client.set_terminated(run_id, "KILLED" if self._interrupted else "FAILED")
        except Exception:  # noqa: BLE001, S110 - best effort at interpreter exit
            pass

    # -- job process -------------------------------------------------------------------------
    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        from hydra.types import RunMode

        sweep_context.leave()
        if not self.enabled or OmegaConf.select(config, "hydra.mode", default=None) != (
            RunMode.MULTIRUN
        ):
            return
        redact_log_records()
        num = OmegaConf.select(config, "hydra.job.num", default=None)
        sweep_dir = Path(str(config.hydra.sweep.dir))
        sweep_context.enter(SweepContext.load(sweep_dir, None if num is None else int(num)))

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        from hydra.core.utils import JobStatus

        context = sweep_context.current()
        sweep_context.leave()
        if not self.enabled or job_return.status != JobStatus.FAILED or context is None:
            return
        error = job_return._return_value
        text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
        num = OmegaConf.select(config, "hydra.job.num", default=None)
        print(
            redact(f"segexp: sweep job {num} ({','.join(job_return.overrides or [])}) failed:")
            + f"\n{redact(text)}",
            file=sys.stderr,
            flush=True,
        )
        try:
            _mark_failed(context, job_return, error, num)
        except Exception as err:  # noqa: BLE001 - keep the sweep going
            print(f"segexp: could not record the failure in MLflow: {err}", file=sys.stderr)
        if self.continue_on_failure:
            job_return.return_value = math.nan
            job_return.status = JobStatus.COMPLETED


def _mark_failed(context: SweepContext, job_return: Any, error: BaseException, num: Any) -> None:
    """Mark the failed job's run FAILED with its error, or create such a child run when the job
    failed before its run existed."""
    client = client_for(context.tracking_uri)
    runs = retry_patiently(
        client.search_runs,
        [context.experiment_id],
        filter_string=f"tags.`segexp.sweep_id` = '{context.sweep_id}' "
        f"and tags.`segexp.sweep_job` = '{num}'",
    )
    message = redact(f"{type(error).__name__}: {error}")[:5000]
    if runs:
        for run in runs:
            if run.info.status not in ("FAILED", "KILLED"):
                log_tags(client, run.info.run_id, {"error": message})
                retry_patiently(client.set_terminated, run.info.run_id, "FAILED")
        return
    overrides = job_return.overrides or []
    try:
        name = child_run_name(job_return.cfg, overrides, context)
    except Exception:  # noqa: BLE001 - a broken config still gets a run
        name = " ".join(short_names(context.varied(overrides))) or f"job {num}"
    run = retry_patiently(
        client.create_run,
        context.experiment_id,
        run_name=redact(name),
        tags=safe_tags(
            {
                "mlflow.parentRunId": context.parent_run_id,
                "segexp.sweep_id": context.sweep_id,
                "segexp.sweep_job": str(num),
                "hydra_overrides": " ".join(job_return.overrides or []),
                "error": message,
            }
        ),
    )
    retry_patiently(client.set_terminated, run.info.run_id, "FAILED")
