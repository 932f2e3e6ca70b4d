"""Config composition, CLI start-up without TensorFlow, params flattening and run names."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from segexp.config import as_params, flatten, redact, run_name

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
        "from segexp.train import main\n"
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
