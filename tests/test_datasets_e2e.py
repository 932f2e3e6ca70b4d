"""Every dataset preset trains one epoch from files on disk, through the
real training path (`segexp.train.lifecycle.train` on a Hydra-composed config), and logs its lineage
(tags dataset.*, class_frequency_* metrics, the MLflow dataset input, the preview artifact).

Each case costs one real training run (~10-20 s on a loaded 2-core CPU); the default selection
keeps three of them (folder with pattern pairing and an ignore band, ISBI TIFF stacks, MNIST
with the autoencoder), the others are marked slow (`pytest -m slow`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from tests import fixtures_data as fx
from tests._e2e import ONE_EPOCH, assert_finite_epoch, dataset_input, train_run


@dataclass
class Case:
    """One preset: ``build(tmp) -> (overrides, expected data root)`` and what to expect."""

    build: Callable[[Path], tuple[list[str], str]]
    sizes: dict[str, int] | None  # exact split sizes, or None: only their total is checked
    total: int
    classes: list[str]
    # class name -> exact train-split pixel share, or (low, high) bounds; None: not computed.
    freqs: dict[str, float | tuple[float, float]] | None
    model: list[str] = field(default_factory=list)
    keys: tuple[str, ...] = ("loss", "val_loss", "lr", "val_accuracy", "val_mean_iou")


def _oxford_raw(tmp: Path) -> tuple[list[str], str]:
    root = fx.make_oxford_raw(tmp / "pets")
    return ["dataset=oxford_pets", f"dataset.root={root}"], str(root)


def _oxford_tfds(tmp: Path) -> tuple[list[str], str]:
    (tmp / "tfds").mkdir()
    return ["dataset=oxford_pets", "dataset.format=tfds", f"dataset.root={tmp / 'tfds'}"], str(
        tmp / "tfds"
    )


def _isbi_tiff(tmp: Path) -> tuple[list[str], str]:
    root = fx.write_isbi_tiff(tmp / "isbi", n=6, size=64)
    return [
        "dataset=isbi2012",
        f"dataset.root={root}",
        "dataset.tile=32",
        "dataset.split={train:0.66,val:0.17,test:0.17}",
    ], str(root)


def _isbi_slices(tmp: Path) -> tuple[list[str], str]:
    root = fx.write_isbi_slices(tmp / "isbi", n=4, size=32)
    return ["dataset=isbi2012", f"dataset.root={root}", "dataset.tile=null"], str(root)


def _dsb(tmp: Path) -> tuple[list[str], str]:
    stage1 = fx.make_dsb_tree(tmp / "dsb", n=4)
    return ["dataset=dsb2018", f"dataset.root={tmp / 'dsb'}"], str(stage1)


def _folder(tmp: Path) -> tuple[list[str], str]:
    fx.make_ignore_band_drive(tmp / "drive")
    return [
        "dataset=folder",
        f"dataset.images={tmp / 'drive' / 'images'}",
        f"dataset.masks={tmp / 'drive' / '1st_manual'}",
        r"dataset.image_pattern='(\d+)_training'",
        r"dataset.mask_pattern='(\d+)_manual1'",
        "dataset.mask_values=null",  # replace the preset's {0: 0, 255: 1}, not merge into it
        "dataset.mask_values={0:0,1:1}",
        "dataset.ignore_value=255",
        "dataset.class_names=[background,vessel]",
        "dataset.split={train:0.66,val:0.17,test:0.17}",
    ], str(tmp / "drive")  # no dataset.root: the common parent of images and masks


def _arrays(tmp: Path) -> tuple[list[str], str]:
    fx.make_onehot_arrays(tmp / "arrays", n=10, size=16)
    return ["dataset=arrays", f"dataset.root={tmp / 'arrays'}"], str(tmp / "arrays")


def _mnist(tmp: Path) -> tuple[list[str], str]:
    path = fx.make_mnist_npz(tmp / "mnist")
    return ["dataset=mnist", f"dataset.root={path.parent}"], str(path)


def _pet_share_bounds() -> dict[str, tuple[float, float]]:
    """Per-class pixel share of each fixture trimap: the train split's share lies between."""
    shares = []
    for i in range(5):
        t = fx.trimap(30 + i, 40 - i)
        shares.append(
            {n: float(np.mean(t == v)) for n, v in [("background", 2), ("pet", 1), ("border", 3)]}
        )
    return {n: (min(s[n] for s in shares), max(s[n] for s in shares)) for n in shares[0]}


def _nucleus_bounds() -> dict[str, tuple[float, float]]:
    nuclei = fx.DSB_NUCLEI * 4 * 6
    areas = [(24 + 4 * i) * 32 for i in range(4)]
    return {
        "nucleus": (nuclei / max(areas), nuclei / min(areas)),
        "background": (1 - nuclei / min(areas), 1 - nuclei / max(areas)),
    }


MNIST_MODEL = [
    "model=cae_mnist",
    "trainer.batch_size=8",
    "trainer.verbose=0",
    "trainer.num_sample_images=2",
    "trainer.epochs=1",
    "tracking.log_model=false",
    "dataset.limit=8",
]

CASES = {
    "oxford_pets-raw": Case(
        _oxford_raw,
        {"train": 3, "val": 1, "test": 1},
        5,
        ["background", "pet", "border"],
        _pet_share_bounds(),
    ),
    "oxford_pets-tfds": Case(_oxford_tfds, None, 13, ["background", "pet", "border"], None),
    "isbi2012-tiff": Case(
        _isbi_tiff,
        {"train": 16, "val": 4, "test": 4},
        24,
        ["cell", "membrane"],
        {"cell": 7 / 8, "membrane": 1 / 8},
    ),
    "isbi2012-slices": Case(
        _isbi_slices, None, 4, ["cell", "membrane"], {"cell": 7 / 8, "membrane": 1 / 8}
    ),
    "dsb2018": Case(_dsb, None, 4, ["background", "nucleus"], _nucleus_bounds()),
    "folder-pattern-ignore": Case(
        _folder, {"train": 4, "val": 1, "test": 1}, 6, ["background", "vessel"], fx.BAND_FREQ
    ),
    "arrays-onehot": Case(
        _arrays,
        {"train": 8, "val": 1, "test": 1},
        10,
        ["background", "object"],
        {"object": fx.ONEHOT_OBJECT_FREQ, "background": 1 - fx.ONEHOT_OBJECT_FREQ},
    ),
    "mnist-cae": Case(
        _mnist,
        {"train": 8, "val": 2, "test": 6},
        16,
        ["digit"],
        None,
        model=MNIST_MODEL,
        keys=("loss", "val_loss", "lr", "val_mae"),
    ),
}
FAST = {"isbi2012-tiff", "folder-pattern-ignore", "mnist-cae"}


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    """One SQLite store for the module (each case has its own experiment)."""
    return f"sqlite:///{tmp_path_factory.mktemp('store')}/m.db"


@pytest.mark.parametrize(
    "name",
    [pytest.param(n, marks=() if n in FAST else pytest.mark.slow) for n in CASES],
)
def test_preset_trains_one_epoch_and_logs_lineage(name, compose, tmp_path, store, monkeypatch):
    case = CASES[name]
    if name == "oxford_pets-tfds":  # a prepared TFDS directory, mocked (no tensorflow-datasets)
        calls: dict = {}
        fx.install_mock_tfds(monkeypatch, calls=calls)
    overrides, root = case.build(tmp_path)
    base = case.model or [*ONE_EPOCH, "dataset.image_size=[32,32]"]
    client, run = train_run(compose, tmp_path / "work", store, name, [*base, *overrides])

    assert_finite_epoch(client, run, case.keys)
    tags = run.data.tags
    dataset = overrides[0].split("=", 1)[1]
    assert tags["dataset"] == dataset
    assert tags["dataset.class_names"] == ",".join(case.classes)
    assert tags["dataset.num_classes"] == str(max(len(case.classes), 1))
    sizes = {k: int(tags[f"dataset.sizes.{k}"]) for k in ("train", "val", "test")}
    assert sum(sizes.values()) == case.total and sizes["train"] > 0, sizes
    if case.sizes is not None:
        assert sizes == case.sizes
    fingerprint = tags["dataset.fingerprint"]
    assert len(fingerprint) >= 8 and int(fingerprint, 16) >= 0
    assert run.data.params["dataset.name"] == dataset

    freqs = {
        k.removeprefix("class_frequency_"): v
        for k, v in run.data.metrics.items()
        if k.startswith("class_frequency_")
    }
    if case.freqs is None:
        assert freqs == {}
    else:
        assert set(freqs) == set(case.classes)
        assert sum(freqs.values()) == pytest.approx(1.0)
        for cls, want in case.freqs.items():
            if isinstance(want, tuple):
                assert want[0] - 1e-9 <= freqs[cls] <= want[1] + 1e-9, (cls, freqs[cls], want)
            else:
                assert freqs[cls] == pytest.approx(want), (cls, freqs)

    ds_name, digest, source = dataset_input(run)
    assert ds_name == dataset and digest == fingerprint[:36]
    assert Path(source["uri"]) == Path(root)
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert "preview.png" in artifacts, artifacts
    if name == "oxford_pets-tfds":
        assert calls["args"] == ("oxford_iiit_pet", str(tmp_path / "tfds"))
