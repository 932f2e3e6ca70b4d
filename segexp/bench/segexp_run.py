"""Variant (a): the function ``segexp-train`` runs, timed from what its MLflow run logs.

The function ``segexp-train`` runs, called in-process with tracking to a store in the
benchmark's work folder, and measured from what its MLflow run logs."""

from __future__ import annotations

import contextlib
import uuid
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from segexp.bench.measure import peak_rss_mb, reset_peak_rss
from segexp.bench.timing import Result, median, pipeline_rate
from segexp.errors import SegexpError

EXPERIMENT = "segexp-bench"
TAG = "segexp.bench_run"


def run_config(
    cfg: DictConfig, aug_cfg: DictConfig, workdir: Path, epochs: int, key: str
) -> DictConfig:
    """The run's config: the command's without its ``bench`` section, with ``aug_cfg`` as
    augmentation, ``epochs`` epochs, no progress bar, and tracking to ``workdir/mlflow.db``
    (experiment segexp-bench, tag ``segexp.bench_run=key`` to find the run again)."""
    cfg = cfg.copy()
    with open_dict(cfg):
        cfg.pop("bench", None)
        cfg.augmentation = aug_cfg
        cfg.trainer.epochs = int(epochs)
        cfg.trainer.verbose = 0
        cfg.tracking.uri = f"sqlite:///{workdir / 'mlflow.db'}"
        cfg.tracking.experiment = EXPERIMENT
        tags = OmegaConf.to_container(cfg.tracking.tags)
        cfg.tracking.tags = {**tags, TAG: key}
        cfg.resume = None
    return cfg


def run_segexp(bench: Any, scenario: str, aug_cfg: DictConfig, round_: int) -> Result:
    """(a): ``train(cfg)`` as segexp-train runs it, then its logged figures: images/s is the
    run's ``train_images_per_sec``, the final loss its last ``loss``, the MLflow logging share
    its ``mlflow_logging_share``; epoch time is the median interval between the timed epochs'
    logged metrics (every epoch after ``bench.warmup_epochs``: training, validation, callbacks
    and logging)."""
    from mlflow import MlflowClient

    from segexp.train.build import build
    from segexp.train.lifecycle import train

    key = f"{scenario}-{round_}-{uuid.uuid4().hex[:8]}"
    folder = bench.workdir / key
    folder.mkdir(parents=True)
    cfg = run_config(bench.cfg, aug_cfg, bench.workdir, bench.warmup + bench.epochs, key)
    reset_peak_rss()
    # Outside a Hydra app the job writes its outputs (checkpoints) to the working directory.
    with contextlib.chdir(folder):
        train(cfg)
    peak = peak_rss_mb()
    client = MlflowClient(str(cfg.tracking.uri))
    result = result_from_run(client, logged_run(client, key), scenario, bench, peak)
    # The same training stream (same config) over many epochs, without a model.
    stream = build(run_config(bench.cfg, aug_cfg, bench.workdir, 10**6, key)).data["train"]
    result.pipeline_images_per_sec = pipeline_rate(iter(stream), bench.steps, bench.n_train)
    return result


def logged_run(client: Any, key: str) -> Any:
    """The benchmark's run tagged ``key`` (exactly one)."""
    exp = client.get_experiment_by_name(EXPERIMENT)
    runs = client.search_runs([exp.experiment_id], filter_string=f"tags.`{TAG}` = '{key}'")
    if len(runs) != 1:
        raise SegexpError(f"bench: expected one MLflow run tagged {TAG}={key}, found {len(runs)}")
    return runs[0]


def result_from_run(client: Any, run: Any, scenario: str, bench: Any, peak: float) -> Result:
    """(a)'s Result from its MLflow run (see :func:`run_segexp`)."""
    if run.info.status != "FINISHED":
        raise SegexpError(f"bench: the segexp run {run.info.run_id} ended {run.info.status}")
    metrics = run.data.metrics
    history = sorted(client.get_metric_history(run.info.run_id, "loss"), key=lambda m: m.step)
    steps = [m.step for m in history]
    total = bench.warmup + bench.epochs
    if steps != list(range(1, total + 1)):
        raise SegexpError(
            f"bench: the segexp run logged loss at epochs {steps}; expected 1..{total}"
        )
    stamps = [m.timestamp / 1000.0 for m in history]
    intervals = [b - a for a, b in zip(stamps, stamps[1:], strict=False)][bench.warmup - 1 :]
    return Result(
        scenario=scenario,
        variant="a: segexp",
        images_per_epoch=bench.n_train,
        steps=bench.steps,
        epoch_seconds=median(intervals),
        val_seconds=None,  # not in the run
        images_per_sec=float(metrics["train_images_per_sec"]),
        peak_rss_mb=peak,
        logging_share=float(metrics["mlflow_logging_share"]),
        final_loss=float(history[-1].value),
        extra={"run_id": run.info.run_id},
    )
