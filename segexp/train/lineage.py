"""Data lineage of a run: split sizes, class frequencies, skipped files, the MLflow dataset."""

from __future__ import annotations

from typing import Any

import mlflow
from mlflow import MlflowClient
from mlflow.data.dataset_source import DatasetSource
from mlflow.entities import Param

from segexp import track
from segexp.data.source import DataSource


def log_lineage(client: MlflowClient, run_id: str, source: DataSource) -> None:
    info = {
        "dataset.sizes.train": source.sizes.get("train"),
        "dataset.sizes.val": source.sizes.get("val"),
        "dataset.sizes.test": source.sizes.get("test"),
        "dataset.fingerprint": source.fingerprint,
        "dataset.num_classes": source.num_classes,
        "dataset.class_names": ",".join(source.class_names),
    }
    track.log_tags(client, run_id, {k: v for k, v in info.items() if v is not None})
    # The realised split sizes beside the configured fractions (params dataset.split.*).
    sizes = [Param(f"dataset.split_sizes.{k}", str(v)) for k, v in source.sizes.items()]
    track.retry(client.log_batch, run_id, params=sizes)
    freqs = source.extra.get("class_frequencies") or {}
    counts = {k: source.extra.get(k) for k in ("num_skipped", "ignore_fraction")}
    track.log_metrics_once(
        client,
        run_id,
        {
            **{f"class_frequency_{k}": v for k, v in freqs.items()},
            **{f"dataset_{k}": v for k, v in counts.items() if v is not None},
        },
    )
    if source.extra.get("skipped"):
        text = "\n".join(str(s) for s in source.extra["skipped"]) + "\n"
        track.retry(client.log_text, run_id, text, "dataset_skipped.txt")
    from mlflow.data.meta_dataset import MetaDataset

    dataset = MetaDataset(
        _LocalSource(source.root or f"segexp://{source.name}"),
        name=source.name,
        digest=source.fingerprint[:36] or None,
    )
    track.retry(mlflow.log_input, dataset, context="training")


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
