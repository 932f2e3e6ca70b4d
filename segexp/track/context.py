"""The sweep context: what a Hydra multirun job knows of its sweep (parent run, store, job).

It reaches every job by one mechanism: ``<sweep dir>/segexp_sweep.json``, written by the sweep
callback where the sweep starts and read by it in whichever process runs a job (the same one,
a joblib worker, a submitit or SLURM job on another node).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from segexp.config.keys import override_key

STATE_FILE = "segexp_sweep.json"


def slurm_job_id() -> str:
    """This SLURM job's id as ``scancel`` and ``sacct`` take it (``<array id>_<task>``)."""
    array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    return f"{array}_{task}" if array and task else os.environ.get("SLURM_JOB_ID", "")


@dataclass(frozen=True)
class SweepContext:
    """A sweep's MLflow parent run and store; ``job_num`` is set inside one of its jobs."""

    parent_run_id: str
    sweep_id: str
    tracking_uri: str
    experiment_id: str
    fixed_keys: tuple[str, ...] = ()  # keys of the overrides every job shares
    continue_on_failure: bool = True  # the callback's setting of that name
    job_num: int | None = None

    def job_tags(self) -> dict[str, str]:
        """Tags that nest the job's run under the sweep's parent run."""
        tags = {"mlflow.parentRunId": self.parent_run_id, "segexp.sweep_id": self.sweep_id}
        if self.job_num is not None:
            tags["segexp.sweep_job"] = str(self.job_num)
        if os.environ.get("SLURM_JOB_ID"):
            tags["segexp.slurm_job_id"] = slurm_job_id()
        return tags

    def cancelled_job_goes_on(self) -> bool:
        """Whether a SLURM sweep job stopped by SIGTERM (``scancel``, preemption) returns a NaN
        objective, its run already KILLED, so that the other jobs' results are still collected:
        on SLURM with ``continue_on_failure`` (the launcher would otherwise fail the whole
        sweep on the job's missing result)."""
        return self.continue_on_failure and bool(os.environ.get("SLURM_JOB_ID"))

    def varied(self, overrides: Iterable[str]) -> list[str]:
        """The job's overrides without those shared by every job of the sweep."""
        return [o for o in overrides if override_key(o) not in self.fixed_keys]

    def save(self, sweep_dir: Path) -> Path:
        """Write the sweep's part (not the job number) to ``<sweep_dir>/segexp_sweep.json``."""
        state: dict[str, Any] = asdict(self)
        state.pop("job_num")
        state["fixed_keys"] = list(self.fixed_keys)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        path = sweep_dir / STATE_FILE
        path.write_text(json.dumps(state, indent=2))
        return path

    @classmethod
    def load(cls, sweep_dir: Path, job_num: int | None = None) -> SweepContext | None:
        """The context saved in ``sweep_dir`` for job ``job_num``; None when there is none."""
        path = sweep_dir / STATE_FILE
        if not path.is_file():
            return None
        state = json.loads(path.read_text())
        state["fixed_keys"] = tuple(state.get("fixed_keys") or ())
        return replace(cls(**state), job_num=job_num)


_current: SweepContext | None = None


def current() -> SweepContext | None:
    """The sweep of the multirun job running in this process; None outside one."""
    return _current


def enter(context: SweepContext | None) -> None:
    """Make ``context`` the current job's (the sweep callback's ``on_job_start``)."""
    global _current
    _current = context


def leave() -> None:
    """No job of a sweep runs in this process any more (``on_job_end``, a single run)."""
    enter(None)


def parent_tags() -> dict[str, str]:
    """Tags that nest a run (a job's, or a sweep's own parent run) under the parent run of the
    sweep running in this process; none outside a sweep."""
    context = current()
    return context.job_tags() if context is not None else {}
