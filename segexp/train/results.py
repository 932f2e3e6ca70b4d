"""What a run logs once: its set-up before training and its results after (tests, curves, model)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING

import keras
import mlflow
import numpy as np
from omegaconf import DictConfig, OmegaConf

from segexp import track
from segexp.analysis import summarize_history
from segexp.challenge import evaluate_split
from segexp.config import input_spec
from segexp.config.schema.run import PreviewConf
from segexp.data.decode import to_model_input
from segexp.data.source import DataSource
from segexp.models import input_range, model_summary
from segexp.plots import learning_curves, run_title
from segexp.train.build import Built, augment_fn
from segexp.train.checkpoint import fault_point
from segexp.train.lineage import log_lineage

if TYPE_CHECKING:
    from segexp.train.fit import Fitted
    from segexp.train.lifecycle import RunHandle


def trainable_params(model: keras.Model) -> int:
    return int(sum(np.prod(w.shape) for w in model.trainable_weights))


def figure_title(cfg: DictConfig, built: Built, run: RunHandle) -> str:
    """Title for the run's figures: its name (the varied values) and model on dataset."""
    name = track.retry(run.client.get_run, run.run_id).info.run_name
    return run_title(name, cfg.model.name, built.source.name)


def log_setup(cfg: DictConfig, built: Built, run: RunHandle, title: str) -> None:
    """What a run logs once, before training: params, config, model summary, data lineage."""
    cfg = cfg.copy()
    OmegaConf.update(cfg, "resume", None, force_add=True)
    client, run_id, model = run.client, run.run_id, built.model
    total = int(model.count_params())
    track.log_params(client, run_id, cfg)
    track.log_config(client, run_id, cfg, run.overrides)
    track.retry(client.log_text, run_id, model_summary(model), "model_summary.txt")
    track.log_metrics_once(
        client, run_id, {"num_params": trainable_params(model), "num_params_total": total}
    )
    log_lineage(client, run_id, built.source)
    _log_preview(cfg, built.source, run.output_dir, title)


def log_results(
    cfg: DictConfig, built: Built, run: RunHandle, fitted: Fitted, title: str, *, resumed: bool
) -> dict[str, float]:
    """Summary metrics, test evaluation, learning curves and the model, after training."""
    client, run_id, model, source = run.client, run.run_id, built.model, built.source
    task, head, test_ds, history = built.task, built.head, built.data["test"], fitted.history

    summary = summarize_history(history, cfg.analysis, cfg.trainer)
    summary.update(fitted.timing)
    summary["num_params"] = trainable_params(model)
    _use_evaluated_weights(cfg, model, run, history)
    if cfg.trainer.evaluate_test:
        scores = model.evaluate(test_ds, return_dict=True, verbose=0)
        summary.update({f"test_{k}": float(v) for k, v in scores.items()})
        summary.update(evaluate_split(model, test_ds, source, cfg.dataset, head))
        fault_point("test_evaluation")
    track.log_metrics_once(client, run_id, summary)  # once, however often it was resumed
    main_metric = "mae" if task == "reconstruction" else "accuracy"
    figure = learning_curves(history, main_metric, title=title)
    track.retry(mlflow.log_figure, figure, "learning_curves.png")
    if task == "reconstruction":
        _log_latent(model, source, input_range(cfg.model))
    if cfg.tracking.log_model:
        track.log_model(
            model,
            inference_meta(cfg, model, source, head, task),
            cfg.tracking.get("registered_model_name"),
            resumed_run=run_id if resumed else None,
        )
        fault_point("model_logging")
    buffer = io.StringIO()
    for key in sorted(summary):
        buffer.write(f"{key}: {summary[key]:.6g}\n")
    print("segexp: summary\n" + buffer.getvalue(), flush=True)
    return summary


def _use_evaluated_weights(
    cfg: DictConfig, model: keras.Model, run: RunHandle, history: dict[str, list[float]]
) -> None:
    """Put the weights ``trainer.evaluate_weights`` names into the model and tag the run."""
    from segexp.callbacks import load_evaluated_weights

    tags = load_evaluated_weights(model, cfg.trainer, run.output_dir, history)
    track.log_tags(run.client, run.run_id, tags)
    print(
        f"segexp: evaluating and logging the {tags['segexp.evaluate_weights']} weights "
        f"(epoch {tags['segexp.evaluated_epoch']})",
        flush=True,
    )


def inference_meta(
    cfg: DictConfig, model: keras.Model, source: DataSource, head: str, task: str
) -> dict:
    """What `segexp-predict` needs to preprocess new images like the training data."""
    from segexp.data.geometry import training_geometry
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


def _log_preview(cfg: DictConfig, source: DataSource, output_dir: Path, title: str = "") -> None:
    """The training samples the model will see (after augmentation), as an artifact."""
    from segexp.preview import render_preview

    aug = cfg.augmentation.name
    path = render_preview(
        source.splits["train"],
        source.class_names,
        PreviewConf.n,
        Path(output_dir) / "preview.png",
        augment=augment_fn(cfg),
        seed=int(cfg.seed),
        ignore_value=source.ignore_value,
        labels=(source.labels or {}).get("train"),
        title=f"{title}\ntraining samples, augmentation {aug}",
    )
    track.retry(mlflow.log_artifact, str(path))


def _log_latent(model: keras.Model, source: DataSource, input_scale: float = 1.0) -> None:
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
    codes = encoder.predict(to_model_input(images, input_scale), verbose=0).reshape(len(images), -1)
    labels = source.labels["val"]
    fig, ax = plt.subplots(figsize=(6, 5))
    points = ax.scatter(codes[:, 0], codes[:, 1], c=labels, cmap="tab10", s=6)
    fig.colorbar(points, ax=ax, label="digit")
    ax.set_xlabel("latent 1")
    ax.set_ylabel("latent 2")
    fig.tight_layout()
    mlflow.log_figure(fig, "latent_space.png")
    plt.close(fig)
