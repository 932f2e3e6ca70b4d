"""Config composition, CLI start-up without TensorFlow, params flattening and run names."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from segexp.config import as_params, flatten, override_key, redact, run_name

GROUPS = ("model", "dataset", "optimizer", "augmentation", "loss", "trainer", "tracking")


def test_default_composition_has_every_group(compose):
    cfg = compose()
    for group in GROUPS:
        assert group in cfg, group
    assert cfg.dataset.name == "synthetic"
    assert cfg.model.name == "unet_small"
    assert cfg.tracking.uri.startswith("sqlite:///")
    assert isinstance(cfg.seed, int)


def test_overrides_apply(compose):
    cfg = compose(["trainer.epochs=3", "seed=7", "model.batchnorm=true"])
    assert (cfg.trainer.epochs, cfg.seed, cfg.model.batchnorm) == (3, 7, True)


def test_unknown_option_lists_what_exists(compose):
    with pytest.raises(ConfigCompositionException) as err:
        compose(["model=does_not_exist"])
    assert "unet_small" in str(err.value)


def test_unknown_key_is_rejected(compose):
    with pytest.raises(ConfigCompositionException, match="epochz"):
        compose(["trainer.epochz=3"])


def test_cfg_job_does_not_import_tensorflow():
    code = (
        "import sys\n"
        "sys.argv = ['segexp-train', '--cfg', 'job', 'trainer.epochs=5']\n"
        "from segexp.train.app import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "assert 'tensorflow' not in sys.modules, 'tensorflow imported'\n"
        "assert 'mlflow' not in sys.modules, 'mlflow imported'\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "epochs: 5" in out.stdout


def test_help_names_the_groups():
    out = subprocess.run(
        [sys.executable, "-m", "segexp.train", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "segexp-train" in out.stdout
    for group in GROUPS:
        assert f"{group}:" in out.stdout


def test_flatten_dotted_keys_and_redaction():
    cfg = OmegaConf.create(
        {
            "a": {"b": 1, "c": [1, 2]},
            "tracking": {"uri": "http://user:hunter2@host:5000", "password": "hunter2"},
        }
    )
    flat = flatten(cfg)
    assert flat["a.b"] == 1 and flat["a.c"] == [1, 2]
    assert "hunter2" not in str(flat)
    assert flat["tracking.uri"] == "http://user:***@host:5000"
    assert redact("sqlite:///x.db") == "sqlite:///x.db"


def test_long_param_values_are_shortened_with_marker():
    cfg = OmegaConf.create({"k": "x" * 7000})
    value = as_params(cfg)["k"]
    assert len(value) == 6000
    assert value.endswith("chars, see config.yaml]")


def test_run_name_from_overrides(compose):
    cfg = compose()
    assert run_name(cfg, []) == "unet_small-synthetic"
    assert run_name(cfg, ["model.batchnorm=true", "seed=2", "tracking.uri=sqlite:///a.db"]) == (
        "model.batchnorm=true,seed=2"
    )


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("trainer.epochs=abc", "trainer.epochs='abc': expected an integer >= 1"),
        ("trainer.epochs=0", "trainer.epochs=0: expected an integer >= 1"),
        ("trainer.batch_size=2.5", "trainer.batch_size=2.5: expected an integer >= 1"),
        ("dataset.train_size=0", "dataset.train_size=0: expected an integer >= 1 or null"),
        ("seed=null", "seed=None: expected an integer"),
    ],
)
def test_bad_counts_are_one_line_config_errors(compose, override, message):
    from segexp.config import check_integers
    from segexp.errors import ConfigError

    check_integers(compose())  # the defaults pass
    with pytest.raises(ConfigError) as err:
        check_integers(compose([override]))
    assert str(err.value) == message


# ------------------------------------------------------------------ keys checked before Hydra
def _refused(argv: list[str]) -> str:
    from segexp.cli import preflight
    from segexp.errors import ConfigError

    with pytest.raises(ConfigError) as err:
        preflight([*argv, "--cfg", "job"])
    return str(err.value)


@pytest.mark.parametrize("prefix", ["", "+", "++"])
def test_typo_key_is_refused_with_the_close_match_and_the_valid_keys(prefix):
    message = _refused([f"{prefix}model.batchnrm=true"])
    assert message.startswith(f"{prefix}model.batchnrm: model=unet_small has no key 'batchnrm'")
    assert "(did you mean 'batchnorm'?)" in message
    valid = message.split("valid keys: ", 1)[1].split(";")[0].split(", ")
    assert {"batchnorm", "filters", "depth", "dropout"} <= set(valid)
    assert ("'+' adds keys only below tracking.tags" in message) == bool(prefix)


def test_unknown_top_level_and_nested_keys_are_refused():
    assert "the top level has no key 'sead' (did you mean 'seed'?)" in _refused(["+sead=3"])
    message = _refused(["trainer.early_stopping.patiense=2"])
    assert "trainer.early_stopping has no key 'patiense' (did you mean 'patience'?)" in message


def test_each_swept_group_choice_is_checked():
    # unet_small has batchnorm, fcn8_vgg16 does not: the sweep's second job would not get it.
    message = _refused(["-m", "model=unet_small,fcn8_vgg16", "model.batchnorm=true"])
    assert "model=fcn8_vgg16 has no key 'batchnorm'" in message


def test_open_keys_and_valid_overrides_pass_unchanged():
    from segexp.cli import preflight

    argv = [
        "-m",
        "model.batchnorm=false,true",
        "+tracking.tags.owner=me",
        "optimizer.schedule.name=plateau",
        "+optimizer.schedule.patience=2",
        "dataset=folder",
        "+dataset.mask_values.128=1",
        "dataset.images=/x",
    ]
    assert preflight(argv) == argv


def test_mapping_override_replaces_the_presets_map(compose):
    from segexp.cli import preflight

    argv = preflight(["dataset=folder", "dataset.mask_values={0:0,1:1,2:2}", "--cfg", "job"])
    assert argv[:3] == [
        "dataset=folder",
        "dataset.mask_values=null",
        "dataset.mask_values={0:0,1:1,2:2}",
    ]
    cfg = compose(argv[:3])
    assert OmegaConf.to_container(cfg.dataset.mask_values) == {0: 0, 1: 1, 2: 2}  # 255 is gone
    # A single entry is added or changed with +key.<value>=<class>.
    cfg = compose(preflight(["dataset=folder", "+dataset.mask_values.128=1", "--cfg", "job"])[:2])
    assert {int(k): v for k, v in cfg.dataset.mask_values.items()} == {0: 0, 255: 1, 128: 1}


def test_plus_mapping_override_is_refused_instead_of_merged():
    message = _refused(["dataset=folder", "+dataset.mask_values={0:0,1:1,2:2}"])
    assert "'+' would merge into the preset's map {0: 0, 255: 1}" in message
    assert "replace it with 'dataset.mask_values=<map>' (no '+')" in message


def test_schema_check_names_the_close_match():
    from dataclasses import dataclass

    from segexp.config import typed
    from segexp.errors import ConfigError

    @dataclass
    class Plateau:
        patience: int = 5
        factor: float = 0.1

    with pytest.raises(ConfigError) as err:
        typed({"patiense": 2}, Plateau, "optimizer.schedule(plateau)")
    assert str(err.value) == (
        "optimizer.schedule(plateau): unknown key(s) ['patiense'] (did you mean 'patience'?); "
        "expected some of ['factor', 'patience']"
    )
    with pytest.raises(ConfigError) as err:
        typed({"patience": "two"}, Plateau, "optimizer.schedule(plateau)")
    assert str(err.value) == "optimizer.schedule.patience='two': expected an integer"
    assert typed({"patience": 2}, Plateau, "x") == Plateau(patience=2, factor=0.1)


def test_run_name_keeps_only_the_last_override_of_a_key(compose):
    overrides = [
        "dataset.mask_values=null",
        "dataset.mask_values={0:0,1:1}",
        "seed=2",
        "verbose=true",
    ]
    assert run_name(compose(), overrides) == "dataset.mask_values={0:0,1:1},seed=2"


def test_override_key_is_the_key_an_override_sets(compose):
    cases = {
        "model.dropout=0.1": "model.dropout",
        "+model.dropout=0.1": "model.dropout",
        "++tracking.tags.a=b=c": "tracking.tags.a",
        "~dataset.split": "dataset.split",
        "seed=": "seed",
        "experiment": "experiment",
    }
    assert {o: override_key(o) for o in cases} == cases
    # `+`/`~` prefixes name the same key for run names (a later override of it wins).
    assert run_name(compose(), ["+seed=1", "~seed", "++tracking.uri=x", "seed=3"]) == "seed=3"


def test_typo_key_cli_exits_2_with_one_line_before_tensorflow():
    code = (
        "import sys\n"
        "sys.argv = ['segexp-train', 'model.batchnrm=true']\n"
        "from segexp.train.app import main\n"
        "try:\n    main()\nexcept SystemExit as e:\n    print('exit', e.code)\n"
        "assert 'tensorflow' not in sys.modules, 'tensorflow imported'\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "exit 2"
    (line,) = out.stderr.strip().splitlines()
    assert line.startswith("segexp-train: error: model.batchnrm: ")
    assert "(did you mean 'batchnorm'?)" in line


def test_job_logging_writes_no_log_file():
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from segexp.config import CONF_DIR

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = hydra_compose("train", return_hydra_config=True)
    handlers = OmegaConf.to_container(cfg.hydra.job_logging.handlers)
    assert handlers and not [h for h in handlers.values() if "filename" in h]
