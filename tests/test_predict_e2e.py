"""A model trained by `segexp-train` segments images of other sizes through `segexp-predict`."""

from __future__ import annotations

import numpy as np
from mlflow import MlflowClient
from PIL import Image

from segexp.predict.app import main as predict_main
from tests.conftest import TINY


def test_trained_model_segments_images_of_any_size(compose, store, tmp_path, capsys):
    from segexp.train.lifecycle import train

    cfg = compose(
        [
            *TINY,
            "dataset.mode=trimap",
            f"tracking.uri={store}",
            "tracking.registered_model_name=tiny_unet",
        ]
    )
    train(cfg)
    client = MlflowClient(store)
    (run,) = client.search_runs([client.get_experiment_by_name("segexp").experiment_id])

    rng = np.random.default_rng(0)
    inputs = tmp_path / "in"
    inputs.mkdir()
    sizes = {"big": (80, 80), "wide": (50, 70), "small": (20, 30)}  # (rows, cols); 80 = 2.5 x 32
    for name, (h, w) in sizes.items():
        Image.fromarray(rng.integers(0, 255, (h, w), dtype=np.uint8)).save(inputs / f"{name}.png")
    Image.fromarray(rng.integers(0, 255, (40, 40, 4), dtype=np.uint8), "RGBA").save(
        inputs / "rgba.png"
    )
    (inputs / "broken.png").write_bytes(b"not an image")

    for model_uri in (f"runs:/{run.info.run_id}/model", "models:/tiny_unet/1"):
        out = tmp_path / model_uri.split(":")[0]
        code = predict_main(
            [
                f"model={model_uri}",
                f"input={inputs}",
                f"output={out}",
                f"tracking_uri={store}",
                "overlay=true",
            ]
        )
        assert code == 1  # one corrupt file: reported, the others still segmented
        said = capsys.readouterr().out
        assert "mode=tile because the model was trained on 32x32 images at their native" in said
        for name, (h, w) in {**sizes, "rgba": (40, 40)}.items():
            mask = np.asarray(Image.open(out / f"{name}.png"))
            assert mask.shape == (h, w), name
            assert set(np.unique(mask)) <= {0, 1, 2}
            assert (out / f"{name}_overlay.png").exists()
        assert not (out / "broken.png").exists()
