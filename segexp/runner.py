"""One training job: data, model, ``model.fit`` with callbacks, and everything logged to MLflow."""

from __future__ import annotations

import contextlib
import io
import math
import traceback
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import mlflow
import numpy as np
import tensorflow as tf
from mlflow import MlflowClient
from mlflow.data.dataset_source import DatasetSource
from mlflow.entities import Param
from omegaconf import DictConfig, OmegaConf

from segexp import checkpoint
from segexp import track as tracking
from segexp.analysis import summarize_history
from segexp.challenge import evaluate_split
from segexp.config import check_integers, input_spec, redact
from segexp.data import load_source
from segexp.data.pipeline import make_dataset
from segexp.data.source import DataSource
from segexp.epoch_logger import EpochLogger
from segexp.models import model_summary, output_crop
from segexp.plots import learning_curves, run_title
from segexp.track.context import current, parent_tags
from segexp.track.names import child_run_name


@dataclass
class Job:
    """What one training job works with, built once by :func:`train`."""

    cfg: DictConfig
    client: MlflowClient
    run_id: str
    output_dir: Path
    overrides: list[str]
    source: DataSource
    model: keras.Model
    task: str  # segmentation | reconstruction
    head: str  # sigmoid | softmax | linear
    steps: int  # batches per epoch
    data: dict[str, tf.data.Dataset]  # batched train / val / test streams
    samples: tuple[np.ndarray, np.ndarray]  # fixed validation images and targets for panels
    resume: checkpoint.Resume | None = None


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


def seed_everything(seed: int, deterministic: bool) -> None:
    keras.utils.set_random_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()


def head_of(model: keras.Model, task: str) -> str:
    if task == "reconstruction":
        return "linear"
    return "sigmoid" if model.output_shape[-1] == 1 else "softmax"


def _take(ds: tf.data.Dataset, n: int) -> tuple[np.ndarray, np.ndarray]:
    images, masks = next(iter(ds.take(n).batch(n)))
    return images.numpy(), masks.numpy()


def _objective(cfg: DictConfig, summary: dict[str, float]) -> float | None:
    name = cfg.get("objective", "best_val_loss")
    value = summary.get(name)
    return None if value is None else float(value)


def _check_weights_choice(cfg: DictConfig) -> None:
    """``trainer.evaluate_weights`` and EarlyStopping's ``restore_best_weights`` agree (a
    one-line ConfigError before any MLflow run exists)."""
    from segexp.callbacks import restore_best_weights

    restore_best_weights(cfg.trainer)


def train(cfg: DictConfig) -> float | None:
    """Run one job described by ``cfg``; returns the configured objective metric."""
    output_dir, overrides = _hydra_context()
    _mask_hydra_files()
    check_integers(cfg)
    _check_weights_choice(cfg)
    tracking.check_store(str(cfg.tracking.uri))
    resume: checkpoint.Resume | None = None
    if cfg.get("resume"):
        cfg, resume = checkpoint.prepare(cfg, overrides)
        output_dir = resume.output_dir
        tracking.check_store(str(cfg.tracking.uri))
    cfg = _credentials_to_env(cfg)
    start_epoch = resume.epoch if resume else 0
    from segexp import devices

    # GPU options first: a multi-worker strategy must exist before any TensorFlow op runs.
    gpu = devices.setup(cfg.trainer)
    if not gpu.chief:  # only the chief tracks and checkpoints; the others train alongside
        cfg, output_dir = devices.worker_sandbox(cfg, gpu.task)
    mlflow.set_tracking_uri(str(cfg.tracking.uri))
    client = MlflowClient()
    experiment_id = tracking.get_or_create_experiment(client, str(cfg.tracking.experiment))
    mlflow.set_experiment(experiment_id=experiment_id)

    seed = int(cfg.seed)
    seed_everything(seed, bool(cfg.trainer.get("deterministic", False)))
    shape = input_spec(cfg)
    source = load_source(cfg.dataset, shape[:2], shape[2], seed)

    from segexp.models import build_model

    # Build + compile in the strategy scope (the dtype policy is already set).
    task = str(cfg.model.get("task", "segmentation"))
    epochs = int(cfg.trainer.epochs)
    batch_size = gpu.batch_size  # global: per-replica batch_size * replicas
    steps = cfg.trainer.get("steps_per_epoch") or max(
        1, math.ceil(source.sizes["train"] / batch_size)
    )
    with gpu.scope():
        model = build_model(cfg.model, shape, source.num_classes)
        head = head_of(model, task)
        model.compile(**compile_args(cfg, head, source, task, steps, epochs))

    crop = output_crop(model)
    data = build_datasets(
        cfg, source, model, batch_size=batch_size, epochs=epochs, initial_epoch=start_epoch
    )
    sample_x, sample_y = _take(source.splits["val"], int(cfg.trainer.num_sample_images))
    if any(crop):
        sample_y = sample_y[
            :, crop[0] : sample_y.shape[1] - crop[0], crop[1] : sample_y.shape[2] - crop[1]
        ]

    tags = {
        "model": cfg.model.name,
        "dataset": source.name,
        "task": task,
        "hydra_overrides": " ".join(overrides),
        "git_commit": tracking.git_commit(),
        "output_dir": str(output_dir),
        **parent_tags(cfg),
        **OmegaConf.to_container(cfg.tracking.get("tags") or OmegaConf.create({}), resolve=True),
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
    job = Job(
        cfg=cfg,
        client=client,
        run_id=run_id,
        output_dir=output_dir,
        overrides=overrides,
        source=source,
        model=model,
        task=task,
        head=head,
        steps=steps,
        data=data,
        samples=(sample_x, sample_y),
        resume=resume,
    )
    try:
        with _run_status(client, run_id, output_dir):
            summary = _fit_and_log(job)
    except KeyboardInterrupt:
        sweep_job = current()
        if sweep_job is None or not sweep_job.cancelled_job_goes_on():
            raise
        return math.nan  # the run is KILLED with its resume checkpoint; the sweep goes on
    return _objective(cfg, summary)


def _credentials_to_env(cfg: DictConfig) -> DictConfig:
    """The config with the tracking URI's credentials moved to MLflow's environment variables."""
    uri = str(cfg.tracking.uri)
    clean = tracking.credentials_to_env(uri)
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
    resume: checkpoint.Resume | None,
) -> str:
    """Create the MLflow run (what resume needs is on disk first) or reopen the resumed one.

    A resume of a launch that was killed before ``run.json`` got its run id finds the run by its
    launch tag, or creates it when the kill came before the run existed."""
    if resume is not None and not resume.run_id:
        launch = str(resume.record.get("launch") or "")
        found = launch and checkpoint.find_launched_run(client, experiment_id, launch)
        if found:
            resume.run_id = found
            checkpoint.write_run_file(output_dir, found, cfg, launch)
        else:
            print("segexp: the interrupted launch never created its MLflow run; creating it")
    if resume is not None and resume.run_id:
        checkpoint.reopen(client, resume, cfg)
        return resume.run_id
    launch = str(resume.record.get("launch") or "") if resume else ""
    launch = launch or uuid.uuid4().hex
    checkpoint.write_run_file(output_dir, None, cfg, launch)
    run = tracking.retry(
        client.create_run,
        experiment_id,
        run_name=redact(child_run_name(cfg, overrides, current())),
        tags=tracking.safe_tags({**tags, checkpoint.LAUNCH_TAG: launch}),
    )
    checkpoint.fault_point("run_created")
    checkpoint.write_run_file(output_dir, run.info.run_id, cfg, launch)
    if resume is not None:
        resume.run_id = run.info.run_id
    return run.info.run_id


def build_datasets(
    cfg: DictConfig,
    source: DataSource,
    model: keras.Model,
    *,
    batch_size: int,
    epochs: int,
    initial_epoch: int = 0,
    augmentation: DictConfig | None = None,
) -> dict[str, tf.data.Dataset]:
    """The batched train / val / test streams ``model.fit`` and ``evaluate`` consume.

    The training stream holds the epochs ``initial_epoch .. epochs-1`` (order and augmentation a
    function of ``(seed, epoch)``); ``augmentation`` overrides ``cfg.augmentation``.
    """
    from segexp.augment import build_augment
    from segexp.models import input_range

    task = str(cfg.model.get("task", "segmentation"))
    augment = build_augment(cfg.augmentation if augmentation is None else augmentation)
    weights = weight_fn(cfg, source)
    return {
        split: make_dataset(
            # Known sizes let Keras count validation/test steps (tiled or file-based splits
            # otherwise have an unknown cardinality).
            source.splits[split].apply(
                tf.data.experimental.assert_cardinality(source.sizes[split])
            ),
            batch_size=batch_size,
            training=split == "train",
            seed=int(cfg.seed),
            augment=augment if split == "train" else None,
            sample_weight_fn=weights,
            cache=cfg.dataset.get("cache", True),
            shuffle_buffer=cfg.dataset.get("shuffle_buffer"),
            input_scale=input_range(cfg.model),
            mask_crop=output_crop(model),
            target="image" if task == "reconstruction" else "mask",
            epochs=epochs,
            initial_epoch=initial_epoch,
            steps_per_epoch=cfg.trainer.get("steps_per_epoch"),
        )
        for split in ("train", "val", "test")
    }


@contextlib.contextmanager
def _run_status(client: MlflowClient, run_id: str, output_dir: Path):
    """Run the job inside the (re)opened MLflow run and end it with an honest status.

    Success: FINISHED. Ctrl-C or SIGTERM (turned into KeyboardInterrupt): KILLED, with the tags
    ``segexp.status_reason`` and ``segexp.resume_checkpoint`` (the checkpoint of the last
    completed epoch is already on disk, and every epoch it holds is logged to the run first).
    Any other exception, a NaN loss included: FAILED, with the tag ``error`` (one line) and the
    artifact ``error.txt`` (traceback). Secrets are redacted.
    """
    status = "FAILED"
    try:
        tracking.retry(mlflow.start_run, run_id=run_id)
        with checkpoint.sigterm_as_interrupt():
            yield
        status = "FINISHED"
    except KeyboardInterrupt as err:
        status = "KILLED"
        folder = checkpoint.resume_dir(output_dir)
        with contextlib.suppress(Exception):
            # The signal may land between an epoch's checkpoint and its logging: every epoch
            # the checkpoint holds is in the run before it is marked KILLED.
            history = checkpoint.saved_history(output_dir)
            tracking.log_missing_epochs(client, run_id, history)
        with contextlib.suppress(Exception):
            tracking.log_tags(
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
        tracking.log_error(client, run_id, err, traceback.format_exc())
        raise
    finally:
        tracking.set_status(client, run_id, status)
        with contextlib.suppress(Exception):
            mlflow.end_run(status)


def compile_args(
    cfg: DictConfig, head: str, source, task: str, steps: int, epochs: int
) -> dict[str, Any]:
    """Optimizer, loss and metrics for ``model.compile``."""
    from segexp.metrics import build_metrics
    from segexp.optim import build_optimizer

    optimizer = build_optimizer(cfg.optimizer, steps_per_epoch=steps, epochs=epochs)
    if task == "reconstruction":
        return {"optimizer": optimizer, "loss": "mse", "metrics": ["mae"]}
    from segexp.losses import build_loss

    loss = build_loss(
        cfg.loss, head=head, num_classes=source.num_classes, ignore_value=source.ignore_value
    )
    metrics = build_metrics(
        head=head,
        num_classes=source.num_classes,
        class_names=source.class_names,
        ignore_value=source.ignore_value,
    )
    return {
        "optimizer": optimizer,
        "loss": loss,
        "metrics": metrics,
        "jit_compile": cfg.trainer.get("jit_compile", "auto"),
    }


def augment_fn(cfg: DictConfig):
    from segexp.augment import build_augment

    return build_augment(cfg.augmentation)


def weight_fn(cfg: DictConfig, source):
    if str(cfg.model.get("task", "segmentation")) == "reconstruction":
        return None
    from segexp.losses import sample_weight_fn

    return sample_weight_fn(
        cfg.loss,
        num_classes=source.num_classes,
        ignore_value=source.ignore_value,
        class_names=list(source.class_names),
    )


def _log_lineage(client: MlflowClient, run_id: str, source) -> None:
    info = {
        "dataset.sizes.train": source.sizes.get("train"),
        "dataset.sizes.val": source.sizes.get("val"),
        "dataset.sizes.test": source.sizes.get("test"),
        "dataset.fingerprint": source.fingerprint,
        "dataset.num_classes": source.num_classes,
        "dataset.class_names": ",".join(source.class_names),
    }
    tracking.log_tags(client, run_id, {k: v for k, v in info.items() if v is not None})
    # The realised split sizes beside the configured fractions (params dataset.split.*).
    sizes = [Param(f"dataset.split_sizes.{k}", str(v)) for k, v in source.sizes.items()]
    tracking.retry(client.log_batch, run_id, params=sizes)
    freqs = source.extra.get("class_frequencies") or {}
    counts = {k: source.extra.get(k) for k in ("num_skipped", "ignore_fraction")}
    tracking.log_metrics_once(
        client,
        run_id,
        {
            **{f"class_frequency_{k}": v for k, v in freqs.items()},
            **{f"dataset_{k}": v for k, v in counts.items() if v is not None},
        },
    )
    if source.extra.get("skipped"):
        text = "\n".join(str(s) for s in source.extra["skipped"]) + "\n"
        tracking.retry(client.log_text, run_id, text, "dataset_skipped.txt")
    from mlflow.data.meta_dataset import MetaDataset

    dataset = MetaDataset(
        _LocalSource(source.root or f"segexp://{source.name}"),
        name=source.name,
        digest=source.fingerprint[:36] or None,
    )
    tracking.retry(mlflow.log_input, dataset, context="training")


class _LocalSource(DatasetSource):
    """A dataset source that is just a path or name; nothing is ever downloaded from it."""

    def __init__(self, uri: str) -> None:
        self.uri = uri

    @staticmethod
    def _get_source_type() -> str:
        return "local"

    def load(self, **kwargs: Any) -> str:
        return self.uri

    @staticmethod
    def _can_resolve(raw_source: Any) -> bool:
        return False

    @classmethod
    def _resolve(cls, raw_source: Any) -> _LocalSource:
        return cls(str(raw_source))

    def to_dict(self) -> dict[str, Any]:
        return {"uri": self.uri}

    @classmethod
    def from_dict(cls, source_dict: dict[Any, Any]) -> _LocalSource:
        return cls(source_dict["uri"])


def _fit_and_log(job: Job) -> dict[str, float]:
    """Set-up logging (new runs only), training with per-epoch checkpoints, result logging."""
    trainable = int(sum(np.prod(w.shape) for w in job.model.trainable_weights))
    if job.resume is None or job.resume.state is None:
        # New run, or one killed before its first checkpoint (set-up logging may be partial;
        # logging the same params and artifacts again is idempotent).
        _log_setup(job, trainable)
    history, logger = _train_epochs(job)
    return _log_results(job, history, logger, trainable)


def _log_setup(job: Job, trainable: int) -> None:
    """What a run logs once, before training: params, config, model summary, data lineage."""
    cfg = job.cfg.copy()
    OmegaConf.update(cfg, "resume", None, force_add=True)
    client, run_id = job.client, job.run_id
    total = int(job.model.count_params())
    tracking.log_params(client, run_id, cfg)
    tracking.log_config(client, run_id, cfg, job.overrides)
    tracking.retry(client.log_text, run_id, model_summary(job.model), "model_summary.txt")
    tracking.log_metrics_once(client, run_id, {"num_params": trainable, "num_params_total": total})
    _log_lineage(client, run_id, job.source)
    _log_preview(cfg, job.source, job.output_dir, figure_title(job))


def _train_epochs(job: Job) -> tuple[dict[str, list[float]], EpochLogger]:
    """``model.fit`` from the first epoch not yet completed; returns the whole run's history.

    A resumed run first gets its weights and optimizer state back and logs whatever the crash
    kept from MLflow (see segexp/checkpoint.py); a NaN loss raises ``NaNLossError``.
    """
    from segexp import devices
    from segexp.callbacks import build_callbacks
    from segexp.models import input_range

    cfg, model, resume = job.cfg, job.model, job.resume
    epochs = int(cfg.trainer.epochs)
    built = build_callbacks(cfg.trainer, cfg.optimizer, output_dir=job.output_dir)
    ckpt = checkpoint.ResumeCheckpoint(
        job.output_dir,
        job.run_id,
        watch=built,
        state=resume.state if resume else None,
        stop_on_nan=bool(cfg.trainer.get("terminate_on_nan", True)),
    )
    logger = EpochLogger(
        job.client,
        job.run_id,
        sample_images=job.samples[0],
        sample_targets=job.samples[1],
        images_every=int(cfg.trainer.log_images_every),
        epochs=epochs,
        batch_size=devices.global_batch_size(
            cfg.trainer, model.distribute_strategy.num_replicas_in_sync
        ),
        # One pass over the training split per epoch unless steps_per_epoch says otherwise.
        images_per_epoch=None if cfg.trainer.get("steps_per_epoch") else job.source.sizes["train"],
        task=job.task,
        head=job.head,
        ignore_value=job.source.ignore_value,
        input_scale=input_range(cfg.model),
        before_log=ckpt.before_log,
        class_names=list(job.source.class_names),
        title=figure_title(job),
    )
    ckpt.attach(logger)
    if resume is not None:
        with model.distribute_strategy.scope():  # the optimizer may create its variables here
            checkpoint.load_weights(model, resume)
        _catch_up(job.client, job.run_id, model, ckpt, logger)
    model.fit(
        job.data["train"],
        validation_data=job.data["val"],
        epochs=epochs,
        initial_epoch=ckpt.epoch,
        steps_per_epoch=job.steps,
        shuffle=False,  # the tf.data stream is already shuffled, per epoch, from the seed
        callbacks=[*built, ckpt, logger],
        verbose=int(cfg.trainer.verbose),
    )
    if ckpt.nan_epoch is not None:
        raise checkpoint.NaNLossError(f"NaN loss at epoch {ckpt.nan_epoch}")
    if logger.failed_steps:
        _catch_up(job.client, job.run_id, model, ckpt, logger, panels=False)
    return ckpt.history, logger


def _catch_up(client, run_id, model, ckpt, logger, *, panels: bool = True) -> None:
    """Log the checkpointed epochs the run lacks (each (metric, epoch) exactly once) and the
    last epoch's prediction panel if it is missing; warn instead of failing."""
    try:
        added = tracking.log_missing_epochs(client, run_id, ckpt.history)
        if added:
            print(f"segexp: logged {added} per-epoch values missing from the run", flush=True)
        last = ckpt.epoch
        if (
            panels
            and last
            and logger.wants_panel(last)
            and last not in tracking.logged_image_steps(client, run_id)
        ):
            logger.set_model(model)
            logger.log_predictions(last)
    except Exception as err:  # noqa: BLE001 - the run's own status reports real failures
        import warnings

        warnings.warn(
            f"segexp: could not log missing epochs to MLflow ({err})", RuntimeWarning, stacklevel=2
        )


def _log_results(
    job: Job, history: dict[str, list[float]], logger: EpochLogger, trainable: int
) -> dict[str, float]:
    """Summary metrics, test evaluation, learning curves and the model, after training."""
    from segexp.models import input_range

    cfg, client, run_id, model, source = job.cfg, job.client, job.run_id, job.model, job.source
    task, head, test_ds = job.task, job.head, job.data["test"]

    summary = summarize_history(history, cfg.get("analysis"), cfg.get("trainer"))
    summary.update(logger.summary())
    summary["num_params"] = trainable
    _use_evaluated_weights(job, history)
    if cfg.trainer.get("evaluate_test", True):
        results = model.evaluate(test_ds, return_dict=True, verbose=0)
        summary.update({f"test_{k}": float(v) for k, v in results.items()})
        summary.update(evaluate_split(model, test_ds, source, cfg.dataset, head))
        checkpoint.fault_point("test_evaluation")
    tracking.log_metrics_once(client, run_id, summary)  # once, however often it was resumed
    main_metric = "mae" if task == "reconstruction" else "accuracy"
    figure = learning_curves(history, main_metric, title=figure_title(job))
    tracking.retry(mlflow.log_figure, figure, "learning_curves.png")
    if task == "reconstruction":
        _log_latent(model, source, input_range(cfg.model))
    if cfg.tracking.get("log_model", True):
        tracking.log_model(
            model,
            inference_meta(cfg, model, source, head, task),
            cfg.tracking.get("registered_model_name"),
            resumed_run=run_id if job.resume is not None else None,
        )
        checkpoint.fault_point("model_logging")
    buffer = io.StringIO()
    for key in sorted(summary):
        buffer.write(f"{key}: {summary[key]:.6g}\n")
    print("segexp: summary\n" + buffer.getvalue(), flush=True)
    return summary


def _use_evaluated_weights(job: Job, history: dict[str, list[float]]) -> None:
    """Put the weights ``trainer.evaluate_weights`` names into the model and tag the run."""
    from segexp.callbacks import load_evaluated_weights

    tags = load_evaluated_weights(job.model, job.cfg.trainer, job.output_dir, history)
    tracking.log_tags(job.client, job.run_id, tags)
    print(
        f"segexp: evaluating and logging the {tags['segexp.evaluate_weights']} weights "
        f"(epoch {tags['segexp.evaluated_epoch']})",
        flush=True,
    )


def figure_title(job: Job) -> str:
    """Title for the run's figures: its name (the varied values) and model on dataset."""
    name = tracking.retry(job.client.get_run, job.run_id).info.run_name
    return run_title(name, job.cfg.model.name, job.source.name)


def inference_meta(cfg: DictConfig, model: keras.Model, source, head: str, task: str) -> dict:
    """What `segexp-predict` needs to preprocess new images like the training data."""
    from segexp.data.geometry import training_geometry
    from segexp.models import input_range
    from segexp.predict.contract import inference_meta as meta_for
    from segexp.predict.scores import dataset_meta

    h, w, c = input_spec(cfg)
    meta = meta_for(
        model,
        input_size=(h, w),
        channels=c,
        num_classes=source.num_classes,
        class_names=list(source.class_names),
        head=head,
        task=task,
        input_range=input_range(cfg.model),
        geometry=training_geometry(cfg.dataset, (h, w)),
    )
    meta["ignore_value"] = source.ignore_value
    meta.update(dataset_meta(cfg.dataset))  # mask map and challenge metrics, for masks=
    return meta


def _log_preview(cfg: DictConfig, source, output_dir: Path, title: str = "") -> None:
    """The training samples the model will see (after augmentation), as an artifact."""
    from segexp.preview import render_preview

    aug = OmegaConf.select(cfg, "augmentation.name", default="none")
    path = render_preview(
        source.splits["train"],
        source.class_names,
        8,
        Path(output_dir) / "preview.png",
        augment=augment_fn(cfg),
        seed=int(cfg.seed),
        ignore_value=source.ignore_value,
        labels=(source.labels or {}).get("train"),
        title=f"{title}\ntraining samples, augmentation {aug}",
    )
    tracking.retry(mlflow.log_artifact, str(path))


def _log_latent(model: keras.Model, source, input_scale: float = 1.0) -> None:
    """For an autoencoder with a 2-D latent layer, a scatter plot of the latent space."""
    try:
        latent = model.get_layer("latent")
    except ValueError:
        return
    if latent.output.shape[-1] != 2 or not source.labels or "val" not in source.labels:
        return
    import matplotlib.pyplot as plt

    encoder = keras.Model(model.inputs, latent.output)
    images = np.concatenate([x for x, _ in source.splits["val"].batch(256).as_numpy_iterator()])
    codes = encoder.predict(images * input_scale, verbose=0).reshape(len(images), -1)
    labels = source.labels["val"]
    fig, ax = plt.subplots(figsize=(6, 5))
    points = ax.scatter(codes[:, 0], codes[:, 1], c=labels, cmap="tab10", s=6)
    fig.colorbar(points, ax=ax, label="digit")
    ax.set_xlabel("latent 1")
    ax.set_ylabel("latent 2")
    fig.tight_layout()
    mlflow.log_figure(fig, "latent_space.png")
