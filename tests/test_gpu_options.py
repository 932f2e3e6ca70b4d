"""GPU options (segexp/train/devices.py) on CPU: strategies, mixed precision, XLA, start-up."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from segexp.errors import ConfigError
from segexp.train import devices
from tests.conftest import TINY

UNET = {
    "name": "unet_small",
    "builder": "unet",
    "depth": 2,
    "filters": 4,
    "padding": "same",
    "head": "auto",
}


@pytest.fixture(autouse=True)
def _float32_policy():
    import keras

    yield
    keras.mixed_precision.set_global_policy("float32")


def _data(n: int = 8, size: int = 16) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (n, size, size, 1)).astype("float32")
    y = (x > 0.5).astype("int32")
    return x, y


def _train(
    options: devices.GpuOptions, epochs: int = 1, depth: int = 2
) -> tuple[object, list[float]]:
    import keras

    from segexp.models import build_model

    x, y = _data()
    with options.scope():
        model = build_model({**UNET, "depth": depth}, (16, 16, 1), 2)
        model.compile(
            optimizer=keras.optimizers.Adam(1e-3),
            loss="binary_crossentropy",
            jit_compile=options.jit_compile,
        )
    history = model.fit(x, y, batch_size=options.batch_size, epochs=epochs, verbose=0)
    return model, history.history["loss"]


def test_one_device_strategy_trains_with_finite_loss():
    import tensorflow as tf

    options = devices.setup({"distribute": "one_device", "batch_size": 4})
    assert isinstance(options.strategy, tf.distribute.OneDeviceStrategy)
    assert options.replicas == 1 and options.batch_size == 4
    model, losses = _train(options, epochs=2)
    assert all(np.isfinite(losses)) and losses[-1] < 1.0
    assert model.distribute_strategy is options.strategy


def test_mirrored_strategy_scales_the_batch_by_replicas():
    import tensorflow as tf

    options = devices.setup({"distribute": "mirrored", "batch_size": 4})
    assert isinstance(options.strategy, tf.distribute.MirroredStrategy)
    gpus = len(tf.config.list_logical_devices("GPU"))
    assert options.replicas == max(1, gpus)
    assert options.batch_size == 4 * options.replicas
    assert devices.global_batch_size({"batch_size": 4}, 3) == 12
    assert devices.global_batch_size({"batch_size": 4, "scale_batch_size": False}, 3) == 4
    _, losses = _train(options)
    assert np.isfinite(losses[-1])


@pytest.mark.parametrize(
    ("policy", "compute"), [("mixed_float16", "float16"), ("mixed_bfloat16", "bfloat16")]
)
def test_mixed_precision_computes_low_precision_with_float32_outputs(policy, compute):
    import keras

    options = devices.setup({"precision": policy, "batch_size": 4})
    assert options.precision == policy
    assert keras.mixed_precision.global_policy().name == policy
    model, losses = _train(options)
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    hidden, head = convs[0], convs[-1]
    assert hidden.compute_dtype == compute
    assert hidden.kernel.dtype == "float32"  # variables stay float32
    out = model(np.zeros((1, 16, 16, 1), "float32"))
    assert str(out.dtype) == "<dtype: 'float32'>" or "float32" in str(out.dtype)
    assert head.compute_dtype in ("float32", compute)
    assert np.isfinite(losses[-1])
    if policy == "mixed_float16":
        assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)


def test_loss_is_float32_under_mixed_precision():
    import keras

    from segexp.losses import build_loss
    from segexp.models import build_model

    with devices.precision_policy("mixed_float16"):
        model = build_model(UNET, (16, 16, 1), 3)
        x, _ = _data(2)
        y = np.zeros((2, 16, 16, 1), "int32")
        loss = build_loss({"name": "auto"}, head="softmax", num_classes=3, ignore_value=None)
        value = loss(y, model(x))
    assert "float32" in str(value.dtype)
    assert np.isfinite(float(value))
    assert keras.mixed_precision.global_policy().name == "float32"  # restored


def test_jit_compile_true_trains():
    options = devices.setup({"jit_compile": True, "batch_size": 4})
    assert options.jit_compile is True
    model, losses = _train(options, epochs=2, depth=1)
    assert model.jit_compile is True
    assert all(np.isfinite(losses))


@pytest.mark.parametrize(
    ("cfg", "key"),
    [
        ({"precision": "float8"}, "trainer.precision"),
        ({"distribute": "tpu"}, "trainer.distribute"),
        ({"jit_compile": "maybe"}, "trainer.jit_compile"),
    ],
)
def test_bad_gpu_options_are_one_line_config_errors(cfg, key):
    with pytest.raises(ConfigError, match=key) as err:
        devices.setup(cfg)
    assert "\n" not in str(err.value)


@pytest.mark.slow
def test_train_applies_the_options_end_to_end(compose, store):
    from mlflow import MlflowClient

    from segexp.train.lifecycle import train

    cfg = compose(
        [
            *TINY,
            "trainer.epochs=1",
            "trainer.distribute=one_device",
            "trainer.precision=mixed_float16",
            "trainer.evaluate_test=false",
            "tracking.log_model=false",
            f"tracking.uri={store}",
            "tracking.experiment=gpu",
        ]
    )
    train(cfg)
    client = MlflowClient(store)
    run = client.search_runs([client.get_experiment_by_name("gpu").experiment_id])[0]
    assert run.info.status == "FINISHED"
    assert np.isfinite(run.data.metrics["loss"])
    assert run.data.params["trainer.precision"] == "mixed_float16"


@pytest.mark.parametrize("args", [["--help"], ["--cfg", "job"]])
def test_cli_startup_imports_no_tensorflow(args):
    code = (
        "import sys, io, contextlib\n"
        f"sys.argv = ['segexp-train', *{args!r}]\n"
        "from segexp.train.app import main\n"
        "buf = io.StringIO()\n"
        "with contextlib.redirect_stdout(buf):\n"
        "    try:\n"
        "        main()\n"
        "    except SystemExit:\n"
        "        pass\n"
        "heavy = [m for m in ('tensorflow', 'keras', 'mlflow') if m in sys.modules]\n"
        "print(len(buf.getvalue()), ','.join(heavy) or '-')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    size, heavy = out.stdout.split()
    assert int(size) > 100  # help / config was printed
    assert heavy == "-"


def test_a_partial_trainer_section_takes_the_schema_defaults(compose):
    """batch_size 8 and scale_batch_size true come from TrainerConf, as in a composed config."""
    from segexp.config.schema.run import TrainerConf

    assert devices.global_batch_size({}, 2) == TrainerConf.batch_size * 2 == 16
    assert devices.global_batch_size({"scale_batch_size": False}, 2) == TrainerConf.batch_size
    assert devices.global_batch_size(compose().trainer, 3) == 3 * compose().trainer.batch_size
    with pytest.raises(ConfigError, match="trainer: unknown key"):
        devices.global_batch_size({"batch_sise": 4}, 1)
