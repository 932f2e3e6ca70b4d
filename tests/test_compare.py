"""segexp-compare on hand-made runs: table, groups over seeds, claim verdicts, files, logging."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from segexp import compare

CLAIM = {
    "text": "BatchNorm reduces the gap",
    "source": "001",
    "checks": [
        # holds: 0.10 (mean of 0.08, 0.12) < 0.30 (mean of 0.25, 0.35)
        {
            "metric": "generalization_gap_at_best",
            "group": {"model.batchnorm": True},
            "op": "<",
            "other": {"model.batchnorm": False},
        },
        # does not hold: min best_epoch without BatchNorm is 3, not > 4
        {
            "metric": "best_epoch",
            "stat": "min",
            "group": {"model.batchnorm": False},
            "op": ">",
            "value": 4,
        },
        # undetermined: no such metric
        {"metric": "no_such_metric", "op": ">", "value": 0},
    ],
}
# (batchnorm, seed) -> (val_loss curve, train loss curve)
CURVES = {
    ("True", 1): ([0.9, 0.6, 0.5, 0.45, 0.44], [0.8, 0.5, 0.42, 0.37, 0.36]),
    ("True", 2): ([0.9, 0.6, 0.5, 0.46, 0.40], [0.8, 0.5, 0.40, 0.35, 0.28]),
    ("False", 1): ([0.9, 0.6, 0.5, 0.7, 0.8], [0.8, 0.5, 0.25, 0.2, 0.1]),
    ("False", 2): ([0.9, 0.6, 0.5, 0.4, 0.6], [0.8, 0.5, 0.3, 0.05, 0.02]),
}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return f"sqlite:///{tmp_path_factory.mktemp('cmp')}/mlflow.db"


@pytest.fixture(scope="module")
def sweep(store):
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param

    from segexp.analysis import summarize_history

    client = MlflowClient(tracking_uri=store)
    exp = client.create_experiment("cmp")
    parent = client.create_run(
        exp,
        run_name="sweep cmp",
        tags={
            "segexp.sweep_id": "S1",
            "segexp.sweep_role": "parent",
            "segexp.claim": json.dumps(CLAIM),
        },
    )
    pid = parent.info.run_id
    for (bn, seed), (val, train) in CURVES.items():
        run = client.create_run(
            exp,
            run_name=f"model.batchnorm={bn},seed={seed}",
            tags={"mlflow.parentRunId": pid, "segexp.sweep_id": "S1"},
        )
        rid = run.info.run_id
        params = {"model.batchnorm": bn, "seed": seed, "model.depth": 3, "tracking.uri": seed}
        history = {"val_loss": val, "loss": train}
        metrics = [Metric(k, v, 0, 0) for k, v in summarize_history(history).items()]
        for epoch, (v, t) in enumerate(zip(val, train, strict=True), 1):
            metrics += [Metric("val_loss", v, epoch, epoch), Metric("loss", t, epoch, epoch)]
        params = [Param(k, str(v)) for k, v in params.items()]
        client.log_batch(rid, metrics=metrics, params=params)
        client.set_terminated(rid, "FINISHED")
    # a failed run of the same sweep: listed, but not in the group statistics
    failed = client.create_run(
        exp, run_name="model.batchnorm=False,seed=3", tags={"mlflow.parentRunId": pid}
    )
    client.log_param(failed.info.run_id, "model.batchnorm", "False")
    client.log_param(failed.info.run_id, "seed", 3)
    client.log_metric(failed.info.run_id, "best_epoch", 100.0)
    client.set_terminated(failed.info.run_id, "FAILED")
    # a run of another sweep in the same experiment: never selected
    client.create_run(exp, run_name="other", tags={"segexp.sweep_id": "S0"})
    return client, pid


def test_report_table_groups_and_verdicts(sweep):
    client, pid = sweep
    runs, parent = compare.select_runs(client, sweep_id="S1")
    assert parent.info.run_id == pid
    assert len(runs) == 5
    report = compare.build_report(client, runs, claim=compare.claim_of(parent))
    assert report.group_by == ["model.batchnorm"]
    assert list(report.runs.columns[:4]) == ["run_name", "status", "model.batchnorm", "seed"]
    groups = report.groups.set_index("group")
    assert groups.loc["model.batchnorm=False", "n"] == 2  # the FAILED run is left out
    assert groups.loc["model.batchnorm=True", "generalization_gap_at_best mean"] == pytest.approx(
        0.10
    )
    assert groups.loc["model.batchnorm=False", "generalization_gap_at_best mean"] == pytest.approx(
        0.30
    )
    assert groups.loc["model.batchnorm=False", "generalization_gap_at_best std"] == pytest.approx(
        pd.Series([0.25, 0.35]).std()
    )
    assert groups.loc["model.batchnorm=False", "best_epoch mean"] == pytest.approx(3.5)
    assert groups.loc["model.batchnorm=True", "best_epoch mean"] == pytest.approx(5.0)
    verdicts = [c.verdict for c in report.claim.checks]
    assert verdicts == ["holds", "does not hold", "undetermined"]
    assert report.claim.verdict == "does not hold"
    assert report.claim.checks[0].measured == "0.1 ± 0.028 (n=2) vs 0.3 ± 0.071 (n=2)"
    assert "verdict: does not hold" in report.markdown


def test_claim_holds_when_every_check_holds(sweep):
    client, _ = sweep
    runs, _ = compare.select_runs(client, sweep_id="S1")
    claim = {"text": "t", "checks": [CLAIM["checks"][0]]}
    report = compare.build_report(client, runs, claim=claim)
    assert report.claim.verdict == "holds"


def test_cli_writes_files_and_logs_them_to_the_parent(sweep, store, tmp_path, capsys):
    client, pid = sweep
    out = tmp_path / "cmp"
    assert compare.main(["--tracking-uri", store, "--experiment", "cmp", "--output", str(out)]) == 0
    text = capsys.readouterr().out
    assert "claim: BatchNorm reduces the gap" in text
    assert "verdict: does not hold" in text
    assert {p.name for p in out.iterdir()} == {
        "comparison.md",
        "runs.csv",
        "groups.csv",
        "curves.png",
    }
    assert len(pd.read_csv(out / "runs.csv")) == 5
    logged = {a.path for a in client.list_artifacts(pid, "comparison")}
    assert "comparison/curves.png" in logged
    assert client.get_run(pid).data.tags["claim.verdict"] == "does not hold"


def test_bad_claims_and_empty_selections_are_one_line_errors(sweep, store, capsys):
    client, _ = sweep
    runs, _ = compare.select_runs(client, sweep_id="S1")
    table = compare.runs_table(runs)
    from segexp.errors import ConfigError

    with pytest.raises(ConfigError, match="exactly one of"):
        compare.evaluate_claim({"checks": [{"metric": "m", "op": ">"}]}, table)
    with pytest.raises(ConfigError, match="op in"):
        compare.evaluate_claim({"checks": [{"metric": "m", "op": "=", "value": 1}]}, table)
    assert compare.main(["--tracking-uri", store, "--sweep-id", "nope"]) == 2
    assert "no sweep parent run" in capsys.readouterr().err


EXPERIMENTS = sorted((Path(__file__).resolve().parents[1] / "experiments").glob("*.yaml"))


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.stem)
def test_experiment_files_compose_and_state_their_question(path, compose):
    text = path.read_text()
    assert text.startswith("# @package _global_\n")
    header = text.split("\ndefaults:")[0].lower()
    for word in ("claim", "data", "expected"):
        assert word in header, f"{path.name}: opening comment lacks '{word}'"
    cfg = compose([f"experiment={path.stem}"])
    assert cfg.tracking.experiment == path.stem
    if cfg.get("claim") is not None:
        from omegaconf import OmegaConf

        claim = OmegaConf.to_container(cfg.claim, resolve=True)
        result = compare.evaluate_claim(claim, pd.DataFrame())
        assert claim["text"] and {c.verdict for c in result.checks} == {"undetermined"}


def test_a_swept_config_group_groups_by_its_name():
    table = pd.DataFrame(
        {
            "status": ["FINISHED"] * 4,
            "param:augmentation.name": ["none", "none", "flip", "flip"],
            "param:augmentation.p": [None, None, "0.5", "0.5"],
            "param:seed": ["1", "2", "1", "2"],
            "gap": [0.5, 0.3, 0.1, 0.2],
        }
    )
    assert compare.differing_params(table) == ["augmentation.name", "augmentation.p", "seed"]
    assert compare.grouping_keys(table, ["augmentation.p", "augmentation.name"]) == [
        "augmentation.name"
    ]
    check = {
        "metric": "gap",
        "group": {"augmentation": "flip"},
        "op": "<",
        "other": {"augmentation": "none"},
    }
    result = compare.evaluate_claim({"text": "t", "checks": [check]}, table)
    assert result.verdict == "holds"
    assert result.checks[0].measured.startswith("0.15 ± 0.071 (n=2) vs 0.4 ± 0.14 (n=2)")
