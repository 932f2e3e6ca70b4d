"""Multirun tracking: one MLflow parent run per Hydra sweep, every job a nested child run.

Registered in ``conf/train.yaml`` under ``hydra.callbacks.mlflow_sweep``. Works with any launcher
(basic, joblib, submitit local/SLURM) and sweeper (basic, Optuna) because it only relies on
Hydra's callback hooks:

- ``on_multirun_start`` (main process, before any job is launched) creates the parent run, writes
  ``<sweep dir>/segexp_sweep.json`` (parent run id, sweep id, tracking URI) and exports the same
  as environment variables, which worker processes started later inherit.
- ``on_job_start`` (in the process that runs the job) reads that file, so jobs on other machines
  (SLURM) find the parent even when the environment is not passed on.
- the runner adds :func:`job_tags` to the child run (``mlflow.parentRunId``, ``segexp.sweep_id``,
  ``segexp.sweep_job``) and names it from :func:`job_overrides` (only what the sweep varies).
- ``on_job_end`` marks a job that raised as FAILED in MLflow (creating a FAILED child run when it
  failed before its run existed) and, with ``continue_on_failure``, turns the failure into a NaN
  objective so the sweeper carries on (Hydra's basic sweeper would otherwise abort the sweep).
- ``on_multirun_end`` counts the children, logs the comparison (see :func:`log_summary`) to
  the parent and ends it: FAILED when every job failed, else FINISHED with ``segexp.sweep.failed``.
  If the sweep aborts, an exit handler ends the parent as FAILED.
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

ENV_PARENT = "SEGEXP_SWEEP_PARENT_RUN_ID"
ENV_SWEEP = "SEGEXP_SWEEP_ID"
ENV_FIXED = "SEGEXP_SWEEP_FIXED_KEYS"
ENV_URI = "SEGEXP_SWEEP_TRACKING_URI"
ENV_EXPERIMENT = "SEGEXP_SWEEP_EXPERIMENT_ID"
STATE_FILE = "segexp_sweep.json"
_ENV_KEYS = {
    "parent_run_id": ENV_PARENT,
    "sweep_id": ENV_SWEEP,
    "fixed_keys": ENV_FIXED,
    "tracking_uri": ENV_URI,
    "experiment_id": ENV_EXPERIMENT,
}


def _multirun_job() -> tuple[bool, int | None]:
    """Whether a Hydra multirun job is running in this process, and its job number."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return False, None
    hc = HydraConfig.get()
    if hc.mode != RunMode.MULTIRUN:
        return False, None
    num = OmegaConf.select(hc, "job.num", default=None)
    return True, None if num is None else int(num)


def job_tags() -> dict[str, str]:
    """Tags that nest the current job's run under its sweep's parent (empty outside a sweep)."""
    in_sweep, num = _multirun_job()
    parent = os.environ.get(ENV_PARENT)
    if not in_sweep or not parent:
        return {}
    tags = {"mlflow.parentRunId": parent, "segexp.sweep_id": os.environ.get(ENV_SWEEP, "")}
    if num is not None:
        tags["segexp.sweep_job"] = str(num)
    if os.environ.get("SLURM_JOB_ID"):
        tags["segexp.slurm_job_id"] = slurm_job_id()
    return tags


def slurm_job_id() -> str:
    """This SLURM job's id as ``scancel`` and ``sacct`` take it (``<array id>_<task>``)."""
    array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    return f"{array}_{task}" if array and task else os.environ.get("SLURM_JOB_ID", "")


def cancelled_job_goes_on() -> bool:
    """Whether a SLURM sweep job stopped by SIGTERM (``scancel``, preemption) returns a NaN
    objective, its run already KILLED, so that the other jobs' results are still collected:
    in a multirun on SLURM with ``continue_on_failure`` (the launcher would otherwise fail the
    whole sweep on the job's missing result)."""
    from hydra.core.hydra_config import HydraConfig

    in_sweep, _ = _multirun_job()
    if not in_sweep or not os.environ.get("SLURM_JOB_ID"):
        return False
    keep_going = OmegaConf.select(
        HydraConfig.get(), "callbacks.mlflow_sweep.continue_on_failure", default=True
    )
    return bool(keep_going)


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def job_overrides(overrides: list[str] | Any) -> list[str]:
    """The job's overrides without those shared by every job of the sweep (for its run name)."""
    overrides = list(overrides)
    in_sweep, _ = _multirun_job()
    if not in_sweep or not os.environ.get(ENV_PARENT):
        return overrides
    fixed = set(json.loads(os.environ.get(ENV_FIXED) or "[]"))
    return [o for o in overrides if _key(o) not in fixed]


def short_names(overrides: list[str]) -> list[str]:
    """``model.batchnorm=true`` -> ``batchnorm=true``: each key cut to its last component, or
    to as many trailing components as keep it distinct from the other keys (``a.dropout=0.1``
    beside ``b.dropout=0.2`` stay whole); long floats shortened (:func:`_short_value`)."""
    keys = [_key(o).split(".") for o in overrides]

    names = []
    for override, parts in zip(overrides, keys, strict=True):
        if "=" not in override:
            names.append(override)
            continue
        n = 1
        while n < len(parts) and any(
            other[-n:] == parts[-n:] for other in keys if other is not parts
        ):
            n += 1
        names.append(".".join(parts[-n:]) + "=" + _short_value(override.split("=", 1)[1]))
    return names


def _short_value(value: str) -> str:
    """Long floats (an Optuna trial's ``0.0012345678901``) to 4 significant digits; the run's
    params keep the exact value."""
    try:
        number = float(value)
    except ValueError:
        return value
    return f"{number:.4g}" if len(value) > 8 and "." in value else value


def child_run_name(cfg: DictConfig, overrides: list[str] | Any) -> str:
    """A run's name: in a sweep, what the job varies with short keys (``batchnorm=true
    seed=2``), so the MLflow UI shows children uncut and distinct; else
    :func:`segexp.config.run_name`."""
    from segexp.config import RUN_NAME_EXCLUDED_PREFIXES, run_name

    varied = job_overrides(overrides)
    in_sweep = _multirun_job()[0] and bool(os.environ.get(ENV_PARENT))
    kept = [o for o in varied if not _key(o).startswith(RUN_NAME_EXCLUDED_PREFIXES)]
    if not in_sweep or not kept or cfg.tracking.get("run_name"):
        return run_name(cfg, varied)
    return " ".join(short_names(kept))


def _fixed_keys(task_overrides: list[str]) -> list[str]:
    """Keys of the sweep's command-line overrides that are not sweeps (same in every job)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(task_overrides)
    return sorted({_key(o.input_line) for o in parsed if not o.is_sweep_override()})


def _sweep_params(config: DictConfig) -> list[str]:
    params = OmegaConf.select(config, "hydra.sweeper.params", default=None)
    if not params:
        return []
    return [f"{k}={v}" for k, v in OmegaConf.to_container(params, resolve=False).items()]


def _client(uri: str):
    import mlflow
    from mlflow import MlflowClient

    mlflow.set_tracking_uri(uri)
    return MlflowClient(tracking_uri=uri)


def _retry(fn, *args: Any, **kwargs: Any) -> Any:
    from segexp.tracking import retry

    return retry(fn, *args, attempts=6, **kwargs)


def headline_metrics(children: list[Any], objective: str, direction: str) -> dict[str, float]:
    """The parent's few metrics: the best child's objective and the number of finished jobs."""
    done = [r for r in children if r.info.status == "FINISHED"]
    values = [
        r.data.metrics[objective]
        for r in done
        if objective in r.data.metrics and not math.isnan(r.data.metrics[objective])
    ]
    best = max if direction == "maximize" else min
    headline = {"sweep_jobs_finished": float(len(done))}
    if values:
        headline[f"sweep_best_{objective.removeprefix('best_')}"] = best(values)
    return headline


def log_summary(client: Any, parent_id: str, children: list[Any], config: DictConfig) -> None:
    """The comparison (see :mod:`segexp.compare`) on the parent run: its files under
    ``comparison/``, the group and run tables via ``mlflow.log_table`` (the UI's artifact
    viewer shows them as tables) and a few headline metrics, so the chart view holds only the
    children's curves; the comparison is printed too."""
    from segexp import compare
    from segexp.tracking import log_metrics

    compare.summarize_sweep(client, parent_id, children)
    objective = str(config.get("objective", "best_val_loss"))
    direction = str(OmegaConf.select(config, "hydra.sweeper.direction", default="minimize"))
    log_metrics(client, parent_id, headline_metrics(children, objective, direction))


def ui_url(tracking_uri: str, experiment_id: str) -> str:
    """The experiment's training-runs page in the MLflow UI (its model-training view, which the
    experiment kind tag alone does not select in MLflow 3.17); a local store gets the URL of
    ``mlflow ui`` on its default port."""
    base = (
        tracking_uri.rstrip("/")
        if tracking_uri.startswith(("http://", "https://"))
        else ("http://127.0.0.1:5000")
    )
    return f"{base}/#/experiments/{experiment_id}?workflowType=machine_learning"


def redact_log_records() -> None:
    """Mask secrets in every log record from now on (Hydra's launchers log each job's
    overrides, and they reconfigure logging's handlers per job, so a handler filter would not
    last): a log-record factory, installed once per process."""
    previous = logging.getLogRecordFactory()
    if getattr(previous, "segexp_redacts", False):
        return
    from segexp.config import redact

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


class MlflowSweepCallback(Callback):
    """Hydra callback: a parent MLflow run per multirun, nested child runs, failure handling."""

    def __init__(
        self, enabled: bool = True, continue_on_failure: bool = True, summary: bool = True
    ) -> None:
        self.enabled = enabled
        self.continue_on_failure = continue_on_failure
        self.summary = summary
        self._state: dict[str, Any] | None = None
        self._owner_pid: int | None = None
        self._interrupted = False

    # -- main process ------------------------------------------------------------------------
    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        if not self.enabled or OmegaConf.select(config, "tracking.uri") is None:
            return
        from segexp import tracking
        from segexp.config import redact

        redact_log_records()
        # Credentials move to MLflow's environment variables (the jobs inherit them), so no
        # URI the parent saves or MLflow prints carries them.
        uri = tracking.credentials_to_env(str(config.tracking.uri))
        tracking.check_store(uri)
        client = _client(uri)
        name = str(config.tracking.experiment)
        experiment_id = tracking.get_or_create_experiment(client, name)
        choices = OmegaConf.select(config, "hydra.runtime.choices", default={}) or {}
        task_overrides = list(OmegaConf.select(config, "hydra.overrides.task", default=[]) or [])
        sweep_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
        sweep_dir = Path(str(config.hydra.sweep.dir)).resolve()
        label = choices.get("experiment") or f"{config.model.name}-{config.dataset.name}"
        claim = OmegaConf.select(config, "claim", default=None)
        tags = {
            "segexp.sweep_id": sweep_id,
            "segexp.sweep_role": "parent",
            "segexp.sweep_dir": str(sweep_dir),
            "segexp.sweeper": choices.get("hydra/sweeper", ""),
            "segexp.launcher": choices.get("hydra/launcher", ""),
            "segexp.experiment_file": choices.get("experiment") or "",
            "sweep_overrides": " ".join(task_overrides),
            "sweep_params": " ".join(_sweep_params(config)),
            "objective": str(config.get("objective", "best_val_loss")),
            "objective_direction": str(
                OmegaConf.select(config, "hydra.sweeper.direction", default="minimize")
            ),
            "git_commit": tracking.git_commit(),
            **(
                {"mlflow.parentRunId": config.tracking.parent_run_id}
                if config.tracking.get("parent_run_id")
                else {}
            ),
        }
        if claim is not None:
            from segexp.compare.protocol import with_protocol

            claim = with_protocol(
                OmegaConf.to_container(claim, resolve=True), choices.get("experiment")
            )
            tags["segexp.claim"] = json.dumps(tracking.mask_secrets(claim))
        run = _retry(
            client.create_run,
            experiment_id,
            run_name=tracking.redact(f"sweep {label} {sweep_id}"),
            tags=tracking.safe_tags(tags),
        )
        base = OmegaConf.to_container(config, resolve=False)
        base.pop("hydra", None)
        text = OmegaConf.to_yaml(OmegaConf.create(tracking.mask_secrets(base)))
        _retry(client.log_text, run.info.run_id, text, "sweep_base.yaml")
        self._state = {
            "parent_run_id": run.info.run_id,
            "sweep_id": sweep_id,
            "fixed_keys": json.dumps(_fixed_keys(task_overrides)),
            "tracking_uri": uri,
            "experiment_id": experiment_id,
        }
        sweep_dir.mkdir(parents=True, exist_ok=True)
        (sweep_dir / STATE_FILE).write_text(json.dumps(self._state, indent=2))
        for key, env in _ENV_KEYS.items():
            os.environ[env] = str(self._state[key])
        self._owner_pid = os.getpid()
        atexit.register(self._abort_if_open)
        self._watch_interrupts()
        print(
            f"segexp: sweep {sweep_id}: MLflow parent run {run.info.run_id} in {redact(uri)} "
            f"(experiment {name!r}); state in {sweep_dir / STATE_FILE}",
            flush=True,
        )

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        state = self._state
        if state is None:
            return
        client = _client(state["tracking_uri"])
        parent_id = state["parent_run_id"]
        children = _retry(
            client.search_runs,
            [state["experiment_id"]],
            filter_string=f"tags.`segexp.sweep_id` = '{state['sweep_id']}'",
            max_results=10000,
        )
        children = [r for r in children if r.info.run_id != parent_id]
        counts: dict[str, int] = {}
        for run in children:
            counts[run.info.status] = counts.get(run.info.status, 0) + 1
        failed = counts.get("FAILED", 0)
        from segexp.tracking import log_tags

        log_tags(
            client,
            parent_id,
            {
                "segexp.sweep.jobs": len(children),
                "segexp.sweep.failed": failed,
                "segexp.sweep.finished": counts.get("FINISHED", 0),
                "segexp.sweep.killed": counts.get("KILLED", 0),
            },
        )
        optuna_results = Path(str(config.hydra.sweep.dir)) / "optimization_results.yaml"
        if optuna_results.exists():
            _retry(client.log_artifact, parent_id, str(optuna_results))
        if self.summary and len(children) > failed:
            try:
                log_summary(client, parent_id, children, config)
            except Exception as err:  # noqa: BLE001 - a summary must never fail the sweep
                print(f"segexp: sweep summary failed: {type(err).__name__}: {err}", flush=True)
        status = "FAILED" if children and failed == len(children) else "FINISHED"
        _retry(client.set_terminated, parent_id, status)
        print(
            f"segexp: sweep {state['sweep_id']} {status}: {len(children)} jobs, {failed} failed; "
            f"parent run {parent_id}; compare its runs in the MLflow UI at "
            f"{ui_url(state['tracking_uri'], state['experiment_id'])}",
            flush=True,
        )
        self._state = None
        for env in _ENV_KEYS.values():
            os.environ.pop(env, None)

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
        if self._state is None or os.getpid() != self._owner_pid:
            return
        try:
            client = _client(self._state["tracking_uri"])
            run_id = self._state["parent_run_id"]
            client.set_tag(run_id, "segexp.sweep.aborted", "true")
            client.set_terminated(run_id, "KILLED" if self._interrupted else "FAILED")
        except Exception:  # noqa: BLE001, S110 - best effort at interpreter exit
            pass

    # -- job process -------------------------------------------------------------------------
    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        if not self.enabled:
            return
        from hydra.types import RunMode

        if OmegaConf.select(config, "hydra.mode", default=None) != RunMode.MULTIRUN:
            for env in _ENV_KEYS.values():
                os.environ.pop(env, None)
            return
        redact_log_records()
        state_file = Path(str(config.hydra.sweep.dir)) / STATE_FILE
        if state_file.exists():
            state = json.loads(state_file.read_text())
            for key, env in _ENV_KEYS.items():
                if key in state:
                    os.environ[env] = str(state[key])

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        from hydra.core.utils import JobStatus

        if not self.enabled or job_return.status != JobStatus.FAILED:
            return
        if not os.environ.get(ENV_PARENT):
            return
        error = job_return._return_value
        text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
        num = OmegaConf.select(config, "hydra.job.num", default=None)
        from segexp.config import redact

        print(
            redact(f"segexp: sweep job {num} ({','.join(job_return.overrides or [])}) failed:")
            + f"\n{redact(text)}",
            file=sys.stderr,
            flush=True,
        )
        try:
            self._mark_failed(config, job_return, error, num)
        except Exception as err:  # noqa: BLE001 - keep the sweep going
            print(f"segexp: could not record the failure in MLflow: {err}", file=sys.stderr)
        if self.continue_on_failure:
            job_return.return_value = math.nan
            job_return.status = JobStatus.COMPLETED

    @staticmethod
    def _mark_failed(config: DictConfig, job_return: Any, error: BaseException, num: Any) -> None:
        from segexp import tracking
        from segexp.tracking import log_tags

        client = _client(os.environ[ENV_URI])
        sweep_id = os.environ.get(ENV_SWEEP, "")
        runs = _retry(
            client.search_runs,
            [os.environ[ENV_EXPERIMENT]],
            filter_string=f"tags.`segexp.sweep_id` = '{sweep_id}' "
            f"and tags.`segexp.sweep_job` = '{num}'",
        )
        message = tracking.redact(f"{type(error).__name__}: {error}")[:5000]
        if runs:
            for run in runs:
                if run.info.status not in ("FAILED", "KILLED"):
                    log_tags(client, run.info.run_id, {"error": message})
                    _retry(client.set_terminated, run.info.run_id, "FAILED")
            return
        overrides = job_return.overrides or []
        try:
            name = child_run_name(job_return.cfg, overrides)
        except Exception:  # noqa: BLE001 - a broken config still gets a run
            name = " ".join(short_names(job_overrides(overrides))) or f"job {num}"
        run = _retry(
            client.create_run,
            os.environ[ENV_EXPERIMENT],
            run_name=tracking.redact(name),
            tags=tracking.safe_tags(
                {
                    "mlflow.parentRunId": os.environ[ENV_PARENT],
                    "segexp.sweep_id": sweep_id,
                    "segexp.sweep_job": str(num),
                    "hydra_overrides": " ".join(job_return.overrides or []),
                    "error": message,
                }
            ),
        )
        _retry(client.set_terminated, run.info.run_id, "FAILED")
