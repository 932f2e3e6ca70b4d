"""Every bad input (root missing, unpaired files, a corrupt
file, mask values outside the class map, image/mask size mismatch) stops `segexp-train` with
exit code 2 and one last stderr line ``segexp-train: error: ...`` naming the file/value, and
no traceback; ``dataset.skip_bad=true`` instead trains and counts the skipped samples.

Every case (plus a config trap: ignore_value mapped to a class) runs through the Hydra app
`segexp.train.app.main` in-process (the CLI code path without the ~5-8 s TensorFlow start of a new
interpreter); the same cases run as real subprocesses too, one by default, the rest slow.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests import fixtures_data as fx
from tests._e2e import ONE_EPOCH
from tests._runs import free_port

ROOT = Path(__file__).resolve().parents[1]


def _root_missing(tmp: Path) -> tuple[list[str], list[str]]:
    absent = tmp / "absent"
    return (
        ["dataset=isbi2012", f"dataset.root={absent}"],
        [f"dataset.root={absent} does not exist", "train-volume.tif", "ISBI 2012"],
    )


def _unpaired(tmp: Path) -> tuple[list[str], list[str]]:
    img_dir, mask_dir = fx.make_pairs(tmp / "data", n=5)
    (mask_dir / "s00.png").unlink()
    (mask_dir / "s01.png").unlink()
    Image.fromarray(np.zeros((20, 24), np.uint8)).save(mask_dir / "extra.png")
    return (
        ["dataset=folder", f"dataset.images={img_dir}", f"dataset.masks={mask_dir}"],
        ["2 image(s) without masks", "s00.jpg, s01.jpg", "1 mask(s) without images", "extra.png"],
    )


def _corrupt(tmp: Path) -> tuple[list[str], list[str]]:
    root = fx.make_oxford_raw(tmp / "pets")
    bad = root / "images" / "Abyssinian_2.jpg"
    bad.write_bytes(b"\xff\xd8 not really a jpeg")
    return (["dataset=oxford_pets", f"dataset.root={root}"], ["cannot read", str(bad)])


def _bad_values(tmp: Path) -> tuple[list[str], list[str]]:
    root = fx.make_oxford_raw(tmp / "pets")
    bad = root / "annotations" / "trimaps" / "Abyssinian_3.png"
    t = fx.trimap(32, 38)
    t[0, :5] = 9
    t[1, :3] = 7
    Image.fromarray(t).save(bad)
    return (
        ["dataset=oxford_pets", f"dataset.root={root}"],
        ["Abyssinian_3.png", "has values [7, 9]", "[1, 2, 3]"],
    )


def _size_mismatch(tmp: Path) -> tuple[list[str], list[str]]:
    img_dir, mask_dir = fx.make_pairs(tmp / "data", n=4)
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(mask_dir / "s02.png")
    return (
        ["dataset=folder", f"dataset.images={img_dir}", f"dataset.masks={mask_dir}"],
        [f"{img_dir / 's02.jpg'} (20x24)", f"{mask_dir / 's02.png'} (10x10)"],
    )


def _ignore_mapped_to_class(tmp: Path) -> tuple[list[str], list[str]]:
    """Not in point 3, but a trap: the folder preset maps 255 to class 1, so an ignore band
    of 255 would silently become foreground."""
    img_dir, mask_dir = fx.make_pairs(tmp / "data", n=4)
    return (
        [
            "dataset=folder",
            f"dataset.images={img_dir}",
            f"dataset.masks={mask_dir}",
            "dataset.ignore_value=255",
        ],
        [
            "dataset.mask_values maps 255 (dataset.ignore_value) to class 1",
            "'dataset.mask_values={0:0,1:1}' (a plain override replaces the preset's map)",
        ],
    )


BAD: dict[str, Callable[[Path], tuple[list[str], list[str]]]] = {
    "root_missing": _root_missing,
    "unpaired": _unpaired,
    "corrupt": _corrupt,
    "mask_values": _bad_values,
    "size_mismatch": _size_mismatch,
    "ignore_mapped_to_class": _ignore_mapped_to_class,
    "evaluate_weights": lambda _tmp: (
        ["trainer.evaluate_weights=bogus"],
        ["trainer.evaluate_weights='bogus': expected best or last"],
    ),
    "restore_contradicts_evaluate": lambda _tmp: (
        ["trainer.evaluate_weights=last", "trainer.early_stopping.restore_best_weights=true"],
        ["restore_best_weights=true contradicts trainer.evaluate_weights=last"],
    ),
    "wrong_type": lambda _tmp: (
        ["optimizer.learning_rate=fast"],
        ["optimizer.learning_rate: Value 'fast'", "converted to Float", "AdamConf"],
    ),
}


def _args(tmp: Path, overrides: list[str], uri: str | None = None) -> list[str]:
    return [
        *ONE_EPOCH,
        "dataset.image_size=[32,32]",
        *overrides,
        f"hydra.run.dir={tmp / 'out'}",
        f"tracking.uri={uri or f'sqlite:///{tmp}/m.db'}",
    ]


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    """One SQLite store for the in-process error cases (creating one costs seconds)."""
    return f"sqlite:///{tmp_path_factory.mktemp('store')}/m.db"


def _leave_logging_alone(monkeypatch) -> None:
    """Hydra's logging set-up (logging.config.dictConfig) closes every existing handler, among
    them TensorFlow's absl handler bound to an earlier test's captured stderr (which breaks
    pytest's capture); in-process, leave logging alone (warnings still reach stderr through
    logging's last-resort handler)."""
    monkeypatch.setattr("hydra.core.utils.configure_log", lambda *a, **k: None)
    monkeypatch.setattr("hydra._internal.hydra.configure_log", lambda *a, **k: None)


def _run_app(main, prog: str, args: list[str], monkeypatch, capsys) -> tuple[int, str, str]:
    """Run a Hydra app's console entry point in-process; (exit code, stdout, stderr)."""
    from hydra.core.global_hydra import GlobalHydra

    monkeypatch.setattr(sys, "argv", [prog, *args])
    _leave_logging_alone(monkeypatch)
    code = 0
    try:
        main()
    except SystemExit as err:
        code = int(err.code or 0)
    finally:
        GlobalHydra.instance().clear()
    out, err = capsys.readouterr()
    return code, out, err


def run_main(args: list[str], monkeypatch, capsys) -> tuple[int, str, str]:
    """Run the `segexp-train` Hydra app in-process; (exit code, stdout, stderr)."""
    from segexp.train.app import main

    return _run_app(main, "segexp-train", args, monkeypatch, capsys)


def assert_one_line_error(code: int, stderr: str, expected: list[str]) -> None:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert code == 2, stderr[-2000:]
    assert lines, "no error line on stderr"
    last = lines[-1]
    assert last.startswith("segexp-train: error: "), last
    for part in expected:
        assert part in last, (part, last)
    assert "Traceback" not in stderr


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_in_process(case, tmp_path, monkeypatch, capsys, store):
    from mlflow import MlflowClient

    overrides, expected = BAD[case](tmp_path)
    code, _, err = run_main(_args(tmp_path, overrides, store), monkeypatch, capsys)
    assert_one_line_error(code, err, expected)
    # The error stops the job before a run is created; its output folder is removed.
    assert not (tmp_path / "out").exists()
    exp = MlflowClient(store).get_experiment_by_name("segexp")
    assert exp is None or not MlflowClient(store).search_runs([exp.experiment_id])


def test_a_swept_value_of_the_wrong_type_stops_the_sweep_before_it_starts(
    tmp_path, monkeypatch, capsys
):
    uri = f"sqlite:///{tmp_path}/m.db"
    args = ["-m", *_args(tmp_path, ["model.depth=2,deep"], uri)]
    code, _, err = run_main(args, monkeypatch, capsys)
    assert_one_line_error(code, err, ["model.depth: Value 'deep'", "Integer", "UNetConf"])
    assert not (tmp_path / "m.db").exists()  # no parent run, no store


@pytest.mark.parametrize(
    "case",
    [pytest.param(c, marks=() if c == "root_missing" else pytest.mark.slow) for c in BAD],
)
def test_bad_input_subprocess(case, tmp_path):
    overrides, expected = BAD[case](tmp_path)
    proc = subprocess.run(
        [sys.executable, "-m", "segexp.train", *_args(tmp_path, overrides)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert_one_line_error(proc.returncode, proc.stderr, expected)


@pytest.mark.slow
def test_skip_bad_trains_and_counts_skipped(tmp_path, monkeypatch, capsys, caplog):
    from mlflow import MlflowClient

    img_dir, mask_dir = fx.make_pairs(tmp_path / "data", n=6)
    (img_dir / "s01.jpg").write_bytes(b"garbage")
    overrides = [
        "dataset=folder",
        f"dataset.images={img_dir}",
        f"dataset.masks={mask_dir}",
        "dataset.skip_bad=true",
    ]
    code, out, err = run_main(_args(tmp_path, overrides), monkeypatch, capsys)
    assert code == 0, err[-3000:]
    log = caplog.text + out + err
    assert "folder: skipped 1 bad sample(s) (dataset.skip_bad=true)" in log
    assert "skipping sample s01" in log and "s01.jpg" in log
    client = MlflowClient(f"sqlite:///{tmp_path}/m.db")
    (run,) = client.search_runs([client.get_experiment_by_name("segexp").experiment_id])
    assert run.info.status == "FINISHED"
    assert run.data.params["dataset.skip_bad"] == "True"
    sizes = [int(run.data.tags[f"dataset.sizes.{k}"]) for k in ("train", "val", "test")]
    assert sum(sizes) == 5  # six pairs, one skipped
    assert run.data.metrics["dataset_num_skipped"] == 1
    skipped = client.download_artifacts(run.info.run_id, "dataset_skipped.txt")
    assert "s01" in Path(skipped).read_text()


# ------------------------------------------------------------ checks before TensorFlow starts
def _main_without_tensorflow(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """`segexp-train <args>` in a fresh interpreter that reports whether TensorFlow (or MLflow)
    was imported: ``exit <code> tf=<bool> mlflow=<bool>`` on stdout."""
    code = (
        "import sys\n"
        f"sys.argv = ['segexp-train', *{args!r}]\n"
        "from segexp.train.app import main\n"
        "try:\n    main()\nexcept SystemExit as e:\n"
        "    print('exit', e.code, 'tf=' + str('tensorflow' in sys.modules),"
        " 'mlflow=' + str('mlflow' in sys.modules))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    return subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=120, env=env
    )


def test_unreachable_server_fails_with_one_line_before_tensorflow_and_mlflow(tmp_path):
    uri = f"http://127.0.0.1:{free_port()}"
    proc = _main_without_tensorflow([f"tracking.uri={uri}"], tmp_path)
    assert proc.stdout.strip() == "exit 2 tf=False mlflow=False", proc.stderr[-2000:]
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith(f"segexp-train: error: tracking.uri={uri}: MLflow server not reachable")
    assert list(tmp_path.iterdir()) == []  # no output folder, no store


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["trainer.epochs=0"], "segexp-train: error: trainer.epochs=0: expected an integer >= 1"),
        (
            ["dataset=folder", "dataset.images=img", "dataset.masks=gt"],
            "segexp-train: error: image folder img does not exist (dataset.images=img)",
        ),
        (
            ["dataset.split={train:0.7,val:0.3,test:0.2}"],
            "segexp-train: error: dataset.split={train: 0.7, val: 0.3, test: 0.2} sums to 1.2",
        ),
        (
            ["dataset.challenge_metrics=[image_dice,bogus]"],
            "segexp-train: error: dataset.challenge_metrics",
        ),
    ],
)
def test_refused_config_leaves_nothing_behind(tmp_path, args, expected):
    proc = _main_without_tensorflow(args, tmp_path)
    assert proc.stdout.strip() == "exit 2 tf=False mlflow=False", proc.stderr[-2000:]
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith(expected), line
    assert list(tmp_path.iterdir()) == []


def test_sqlite_store_check_leaves_no_lock_file(tmp_path):
    from mlflow import MlflowClient

    from segexp.track import check_store

    uri = f"sqlite:///{tmp_path}/store/m.db"
    check_store(uri)
    assert sorted(p.name for p in (tmp_path / "store").iterdir()) == ["m.db"]
    assert MlflowClient(uri).get_experiment_by_name("Default") is not None  # schema created


def test_startup_lines_are_filtered_and_other_stderr_kept(tmp_path):
    """Fault injection: TensorFlow's start-up lines (as printed by TF 2.21 on a CPU machine)
    and two real messages written to file descriptor 2; only the real ones come through."""
    noise = [
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
        "I0000 00:00:1796347541.380028    7009 port.cc:153] oneDNN custom operations are on.",
        "I0000 00:00:1796347541.380916    7009 cudart_stub.cc:31] Could not find cuda drivers",
        "E0000 00:00:1796347571.066134    7223 cuda_platform.cc:52] failed call to cuInit: (303)",
        "To enable the following instructions: AVX2 FMA, in other operations, rebuild TensorFlow",
    ]
    real = ["E0000 00:00:1796347571.066134    7223 op_kernel.cc:1] a real error", "plain line"]
    code = (
        "import os\n"
        "from segexp.cli import _without_startup_lines\n"
        "with _without_startup_lines():\n"
        f"    for line in {[*noise, *real]!r}:\n"
        "        os.write(2, (line + '\\n').encode())\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.splitlines() == real


@pytest.mark.parametrize("verbose", [False, True])
def test_tensorflow_start_up_is_quiet_unless_verbose(verbose):
    code = f"from segexp.cli import import_tensorflow; import_tensorflow({verbose})"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    from segexp.cli import _STARTUP_LINE

    shown = [line for line in proc.stderr.splitlines() if _STARTUP_LINE.match(line)]
    if verbose:
        assert any("absl::InitializeLog" in line for line in shown), proc.stderr
    else:
        assert proc.stderr.strip() == "", proc.stderr


def _preview(args: list[str], monkeypatch, capsys, cwd: Path) -> tuple[int, str, str]:
    from segexp.preview import main

    monkeypatch.chdir(cwd)
    return _run_app(main, "segexp-preview", args, monkeypatch, capsys)


TINY_PREVIEW = ["dataset.num_images=12", "dataset.image_size=[16,16]", "preview.n=2"]


def test_preview_writes_into_its_output_folder_not_the_cwd(tmp_path, monkeypatch, capsys):
    code, out, err = _preview(TINY_PREVIEW, monkeypatch, capsys, tmp_path)
    assert code == 0, err[-2000:]
    (written,) = tmp_path.glob("outputs/preview/*/*/preview.png")
    assert out.strip().splitlines()[-1] == f"wrote {written}"
    assert [p.name for p in tmp_path.iterdir()] == ["outputs"]


def test_preview_out_writes_only_that_file(tmp_path, monkeypatch, capsys):
    code, out, err = _preview(
        [*TINY_PREVIEW, "preview.out=look.png"], monkeypatch, capsys, tmp_path
    )
    assert code == 0, err[-2000:]
    assert [p.name for p in tmp_path.iterdir()] == ["look.png"]  # no empty output folder


def test_preview_refused_leaves_nothing_behind(tmp_path, monkeypatch, capsys):
    code, _, err = _preview([*TINY_PREVIEW, "preview.split=bogus"], monkeypatch, capsys, tmp_path)
    assert code == 1
    assert err.strip().splitlines()[-1] == (
        "error: preview.split='bogus': expected one of ['test', 'train', 'val']"
    )
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("preset", "extra", "keys"),
    [
        (
            "isbi2012",
            [],
            ["(dataset.images= under dataset.root=", "dataset.volume=", "dataset.labels="],
        ),
        ("oxford_pets", [], ["(dataset.images= under dataset.root="]),
        ("dsb2018", [], ["(dataset.root=, dataset.subset=stage1_train)"]),
        ("mnist", [], ["(set with dataset.root=, dataset.file=)"]),
        (
            "arrays",
            ["dataset.images=x.npy", "dataset.masks=y.npy"],
            ["dataset.root=, dataset.images=)"],
        ),
        (
            "folder",
            ["dataset.images=.", "dataset.masks=gt"],
            ["mask folder", "(dataset.masks=gt under dataset.root="],
        ),
    ],
)
def test_missing_data_errors_name_the_keys(tmp_path, compose, preset, extra, keys):
    from segexp.data import load_source
    from segexp.errors import DataError

    cfg = compose([f"dataset={preset}", f"dataset.root={tmp_path}", *extra])
    with pytest.raises(DataError) as err:
        load_source(cfg.dataset, (16, 16), 1, 0)
    for key in keys:
        assert key in str(err.value), (key, str(err.value))
    assert str(tmp_path) in str(err.value)
