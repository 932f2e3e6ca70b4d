"""segexp-compare: verdicts on hand-made run tables, intervals against scipy, the protocol,
selecting one sweep from an MLflow store, files and logging, and a real tiny sweep."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from omegaconf import OmegaConf

from segexp import compare
from segexp.analysis import summarize_history
from segexp.compare.stats import mean_interval, welch_interval
from segexp.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
PLAIN_HOLDS = re.compile(r"\bholds\b(?! under a modified protocol)")


def runs(rows: list[dict]) -> pd.DataFrame:
    """A run table as `select.runs_table` builds it: params as text, metrics as numbers."""
    out = []
    for i, row in enumerate(rows):
        entry = {"run_id": f"r{i}", "run_name": f"run{i}", "status": row.pop("status", "FINISHED")}
        entry.update({f"param:{k}": str(v) for k, v in row.pop("params", {}).items()})
        entry.update(row)
        out.append(entry)
    return pd.DataFrame(out)


def two_groups(on: list[float], off: list[float], metric: str = "gap") -> pd.DataFrame:
    rows = [{"params": {"model.batchnorm": True, "seed": i}, metric: v} for i, v in enumerate(on)]
    rows += [
        {"params": {"model.batchnorm": False, "seed": i}, metric: v} for i, v in enumerate(off)
    ]
    return runs(rows)


LESS = {"metric": "gap", "group": {"model.batchnorm": True}, "op": "<",
        "other": {"model.batchnorm": False}}  # fmt: skip


def judge(table: pd.DataFrame, *checks: dict, **kw) -> compare.ClaimResult:
    return compare.evaluate_claim({"text": "t", "checks": list(checks)}, table, **kw)


# -- intervals ---------------------------------------------------------------------------------
A, B = [0.31, 0.35, 0.29, 0.40, 0.33], [0.52, 0.47, 0.58]


def test_welch_interval_matches_scipy():
    from scipy import stats

    ref = stats.ttest_ind(A, B, equal_var=False)
    ci = ref.confidence_interval(0.95)
    got = welch_interval(A, B)
    assert got.estimate == pytest.approx(sum(A) / 5 - sum(B) / 3)
    assert (got.low, got.high) == pytest.approx((ci.low, ci.high))
    assert got.t == pytest.approx(ref.statistic)
    assert got.p == pytest.approx(ref.pvalue)
    assert got.df == pytest.approx(ref.df)


def test_mean_interval_matches_scipy():
    from scipy import stats

    ci = stats.ttest_1samp(A, 0.0).confidence_interval(0.95)
    got = mean_interval(A)
    assert (got.low, got.high) == pytest.approx((ci.low, ci.high))


# -- verdicts on run tables ----------------------------------------------------------------------
def test_comparative_verdict_comes_from_the_welch_interval():
    from scipy import stats

    clear = judge(two_groups(A, B), LESS).checks[0]  # on < off, interval entirely below 0
    ci = stats.ttest_ind(A, B, equal_var=False).confidence_interval(0.95)
    assert ci.high < 0 and clear.verdict == "holds"
    assert f"[{ci.low:.4g}, {ci.high:.4g}]" in clear.measured
    assert "Welch t=" in clear.measured and "(n=5) vs" in clear.measured
    reverse = judge(two_groups(B, A), LESS).checks[0]
    assert reverse.verdict == "does not hold"
    overlap = judge(two_groups([0.30, 0.50, 0.41], [0.35, 0.55, 0.44]), LESS).checks[0]
    ci = stats.ttest_ind([0.30, 0.50, 0.41], [0.35, 0.55, 0.44], equal_var=False)
    assert ci.confidence_interval().low < 0 < ci.confidence_interval().high
    assert overlap.verdict == "inconclusive" and "contains 0" in overlap.reason


def test_a_comparison_with_one_seed_in_a_group_is_inconclusive():
    result = judge(two_groups([0.1], [0.5, 0.6]), LESS)
    assert result.checks[0].verdict == "inconclusive"
    assert "fewer than 2 seeds in model.batchnorm=True (n=1)" in result.checks[0].reason
    assert result.verdict == "inconclusive"


def test_threshold_on_a_mean_uses_its_interval():
    from scipy import stats

    table = runs([{"acc": v} for v in (0.90, 0.93, 0.96)])
    ci = stats.ttest_1samp([0.90, 0.93, 0.96], 0).confidence_interval()  # about [0.855, 1.005]
    assert ci.low < 0.9 < ci.high and ci.high < 1.01
    check = {"metric": "acc", "op": ">", "value": 0.9}
    assert judge(table, check).checks[0].verdict == "inconclusive"
    assert judge(table, {**check, "value": 0.85}).checks[0].verdict == "holds"
    assert judge(table, {**check, "value": 1.01}).checks[0].verdict == "does not hold"
    # min / max / a single run: the value itself decides
    single = judge(runs([{"acc": 0.93}]), check).checks[0]
    assert single.verdict == "holds" and "single run" in single.reason
    assert judge(table, {**check, "stat": "min"}).checks[0].verdict == "does not hold"


def curve_runs(val: list[float], seeds: int = 2, **params) -> pd.DataFrame:
    train = [1.0 - 0.05 * i for i in range(len(val))]
    summary = summarize_history({"val_loss": val, "loss": train})
    return runs([{"params": {"seed": s, **params}, **summary} for s in range(seeds)])


OVERFIT_CHECKS = (
    {"metric": "best_epoch_fraction", "stat": "max", "op": "<=", "value": 0.75},
    {"metric": "overfitting_detected", "stat": "min", "op": ">=", "value": 1},
    {"metric": "test_accuracy", "stat": "min", "op": ">=", "value": 0},
)


def test_a_run_whose_best_epoch_is_its_last_is_inconclusive():
    still_falling = curve_runs([1.0, 0.8, 0.7, 0.6, 0.5, 0.45])  # best epoch 6 of 6
    still_falling["test_accuracy"] = 0.5
    result = judge(still_falling, *OVERFIT_CHECKS)
    assert [c.verdict for c in result.checks] == ["inconclusive", "inconclusive", "holds"]
    assert "best epoch 6 of 6, 0 after it < analysis.patience=3" in result.checks[0].reason
    assert result.checks[0].measured == "max 1 (n=2)"
    assert result.verdict == "inconclusive"
    # two epochs past the best are enough when the run's analysis.patience is 2
    short = curve_runs([1.0, 0.8, 0.5, 0.9, 1.0, 1.1], **{"analysis.patience": 2})
    assert short.loc[0, "epochs_after_best"] == 3
    assert judge(short, OVERFIT_CHECKS[0]).checks[0].verdict == "holds"
    cut = curve_runs([1.0, 0.8, 0.7, 0.5, 0.9, 1.0], **{"analysis.patience": 3})
    assert judge(cut, OVERFIT_CHECKS[0]).checks[0].verdict == "inconclusive"


PROTOCOL = {"model.name": "unet_original", "trainer.epochs": "200", "model.batchnorm": "False"}


def test_a_changed_protocol_is_not_comparable_unless_accepted():
    table = runs(
        [{"params": {"model.name": "unet_small", "trainer.epochs": 30, "model.batchnorm": False,
                     "seed": s}, "acc": 0.95} for s in (1, 2)]
    )  # fmt: skip
    claim = {
        "text": "t",
        "protocol": PROTOCOL,
        "checks": [{"metric": "acc", "op": ">", "value": 0}],
    }
    result = compare.evaluate_claim(claim, table)
    assert result.deviations == [
        "model.name=unet_small (claim: unet_original)",
        "trainer.epochs=30 (claim: 200)",
    ]
    assert result.evidence == "holds" and result.verdict == "not comparable"
    text = compare.format_claim(result)
    assert (
        "protocol changed: model.name=unet_small (claim: unet_original), trainer.epochs=30" in text
    )
    assert "verdict: not comparable" in text and not PLAIN_HOLDS.search(text)
    accepted = compare.evaluate_claim(claim, table, accept_deviation=True)
    assert accepted.verdict == "holds under a modified protocol"
    same = table.assign(**{"param:model.name": "unet_original", "param:trainer.epochs": "200.0"})
    assert compare.evaluate_claim(claim, same).verdict == "holds"


def test_the_protocol_comes_from_the_experiment_file_alone():
    claim = compare.claim_of(None, "cpu_overfitting")
    raw = OmegaConf.load(ROOT / "experiments" / "cpu_overfitting.yaml")
    assert claim["protocol"]["trainer.epochs"] == str(raw.trainer.epochs)
    assert claim["protocol"]["dataset.image_size"] == str(list(raw.dataset.image_size))
    assert claim["protocol"]["model.name"] == "unet_small"  # from the model preset it overrides
    with pytest.raises(ConfigError, match="model.batchnorm selects the groups"):
        compare.with_protocol({"protocol": ["model.batchnorm"], "checks": [LESS]}, "cpu_batchnorm")
    with pytest.raises(ConfigError, match="model.nosuch not in the config"):
        compare.with_protocol({"protocol": ["model.nosuch"], "checks": []}, "cpu_batchnorm")
    with pytest.raises(ConfigError, match="--claim segexp: no such experiment file"):
        compare.claim_of(None, "segexp")  # a folder of that name is no experiment file


def test_bad_checks_are_one_line_errors():
    table = runs([{"m": 1.0}])
    with pytest.raises(ConfigError, match="exactly one of"):
        judge(table, {"metric": "m", "op": ">"})
    with pytest.raises(ConfigError, match="op in"):
        judge(table, {"metric": "m", "op": "=", "value": 1})
    with pytest.raises(ConfigError, match="compares means"):
        judge(table, {**LESS, "stat": "max"})


def test_a_swept_config_group_groups_by_its_name():
    table = runs(
        [
            {"params": {"augmentation.name": n, "seed": s, **extra}, "gap": g}
            for n, s, g, extra in (
                ("none", 1, 0.5, {}),
                ("none", 2, 0.3, {}),
                ("flip", 1, 0.1, {"augmentation.p": "0.5"}),
                ("flip", 2, 0.2, {"augmentation.p": "0.5"}),
            )
        ]
    )  # fmt: skip
    assert compare.differing_params(table) == ["augmentation.name", "augmentation.p", "seed"]
    assert compare.grouping_keys(table, ["augmentation.p", "augmentation.name"]) == [
        "augmentation.name"
    ]
    check = {"metric": "gap", "group": {"augmentation": "flip"}, "op": "<",
             "other": {"augmentation": "none"}}  # fmt: skip
    result = judge(table, check)
    assert result.checks[0].measured.startswith("0.15 ± 0.071 (n=2) vs 0.4 ± 0.14 (n=2)")
    assert result.verdict == "inconclusive"  # two seeds each: the interval contains 0


EXPERIMENTS = sorted((ROOT / "experiments").glob("*.yaml"))


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.stem)
def test_experiment_files_compose_and_state_their_question_and_protocol(path, compose):
    text = path.read_text()
    assert text.startswith("# @package _global_\n")
    header = text.split("\ndefaults:")[0].lower()
    for word in ("claim", "data", "expected"):
        assert word in header, f"{path.name}: opening comment lacks '{word}'"
    cfg = compose([f"experiment={path.stem}"])
    assert cfg.tracking.experiment == path.stem
    if cfg.get("claim") is not None:
        claim = compare.claim_of(None, str(path))
        assert claim["text"] and len(claim["protocol"]) >= 5
        for key, value in claim["protocol"].items():
            expected = OmegaConf.select(cfg, key)
            assert ("null" if expected is None else str(expected)) == value, key
        result = compare.evaluate_claim(claim, pd.DataFrame())
        assert {c.verdict for c in result.checks} == {"inconclusive"}


# -- one sweep from an MLflow store --------------------------------------------------------------
CLAIM = {
    "text": "BatchNorm reduces the gap",
    "protocol": {"model.depth": "3"},
    "checks": [LESS | {"metric": "generalization_gap_final"}],
}
# (batchnorm, seed) -> val_loss curve; the training loss falls 0.1 per epoch from 0.9
CURVES = {
    ("True", 1): [0.9, 0.6, 0.5, 0.45, 0.44, 0.46, 0.47, 0.5],
    ("True", 2): [0.9, 0.6, 0.5, 0.46, 0.42, 0.43, 0.45, 0.46],
    ("False", 1): [0.9, 0.6, 0.5, 0.7, 0.8, 0.9, 1.0, 1.1],
    ("False", 2): [0.9, 0.6, 0.5, 0.55, 0.8, 0.95, 1.05, 1.2],
}


def make_sweep(client, exp: str, sweep_id: str, depth: int = 3) -> str:
    from mlflow.entities import Metric, Param

    tags = {"segexp.sweep_id": sweep_id, "segexp.sweep_role": "parent"}
    parent = client.create_run(exp, run_name=f"sweep {sweep_id}", tags=tags | {
        "segexp.claim": json.dumps(CLAIM)})  # fmt: skip
    pid = parent.info.run_id
    for (bn, seed), val in CURVES.items():
        run = client.create_run(
            exp, run_name=f"bn={bn} seed={seed}",
            tags={"mlflow.parentRunId": pid, "segexp.sweep_id": sweep_id},
        )  # fmt: skip
        train = [0.9 - 0.1 * i for i in range(len(val))]
        metrics = [Metric(k, v, 0, 0) for k, v in summarize_history(
            {"val_loss": val, "loss": train}).items()]  # fmt: skip
        for epoch, (v, t) in enumerate(zip(val, train, strict=True), 1):
            metrics += [Metric("val_loss", v, 0, epoch), Metric("loss", t, 0, epoch)]
        params = {"model.batchnorm": bn, "seed": seed, "model.depth": depth}
        client.log_batch(run.info.run_id, metrics, [Param(k, str(v)) for k, v in params.items()])
        client.set_terminated(run.info.run_id, "FINISHED")
    failed = client.create_run(exp, run_name="bn=False seed=3", tags={"mlflow.parentRunId": pid})
    client.log_param(failed.info.run_id, "model.batchnorm", "False")
    client.log_metric(failed.info.run_id, "generalization_gap_final", 100.0)
    client.set_terminated(failed.info.run_id, "FAILED")
    client.set_terminated(pid, "FINISHED")
    return pid


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path_factory.mktemp('cmp')}/mlflow.db"
    client = MlflowClient(tracking_uri=uri)
    old = make_sweep(client, client.create_experiment("cmp"), "S1", depth=2)
    new = make_sweep(client, client.create_experiment("segexp"), "S2")
    for exp in ("cmp", "single"):  # a single run after the sweep; an experiment without sweeps
        found = client.get_experiment_by_name(exp)
        exp_id = found.experiment_id if found else client.create_experiment(exp)
        client.log_metric(client.create_run(exp_id, run_name="one").info.run_id, "best_epoch", 4.0)
    return uri, client, old, new


def test_the_latest_sweep_by_default_and_one_sweep_per_selector(store):
    uri, client, old, new = store
    children, parent = compare.select_runs(client)
    assert parent.info.run_id == new and len(children) == 5
    assert compare.select_runs(client, experiment="cmp")[1].info.run_id == old  # not the single
    (single,), parent = compare.select_runs(client, experiment="single")
    assert parent is None and single.info.run_name == "one"
    children, parent = compare.select_runs(client, sweep_id="S1")
    assert parent.info.run_id == old and {r.data.params.get("model.depth") for r in children} == {
        "2",
        None,
    }
    children, _ = compare.select_runs(client, parent_run_id=old, filter_string="params.seed = '1'")
    assert sorted(r.info.run_name for r in children) == ["bn=False seed=1", "bn=True seed=1"]


def test_report_of_a_sweep_from_the_store(store):
    uri, client, old, new = store
    children, parent = compare.select_runs(client, parent_run_id=old)
    report = compare.build_report(compare.runs_table(children), claim=compare.claim_of(parent))
    groups = report.groups.set_index("group")
    assert groups.loc["model.batchnorm=False", "n"] == 2  # the FAILED run is left out
    assert groups.loc["model.batchnorm=True", "best_epoch mean"] == pytest.approx(5.0)  # 0.44, 0.42
    assert report.claim.deviations == ["model.depth=2 (claim: 3)"]
    assert report.claim.verdict == "not comparable"
    # gaps at epoch 8 (val minus train 0.2): on 0.3, 0.26; off 0.9, 1.0 -> the interval is < 0
    from scipy import stats

    ci = stats.ttest_ind([0.3, 0.26], [0.9, 1.0], equal_var=False).confidence_interval()
    assert f"[{ci.low:.4g}, {ci.high:.4g}]" in report.claim.checks[0].measured
    assert report.claim.evidence == ("holds" if ci.high < 0 else "inconclusive")


def test_cli_from_the_repository_root_writes_nothing_there_and_logs_to_the_parent(
    store, monkeypatch, capsys, tmp_path
):
    uri, client, old, new = store
    monkeypatch.chdir(ROOT)  # holds a folder named segexp: no file lookup may trip on it
    before = set(os.listdir(ROOT))
    assert compare.main(["--tracking-uri", uri, "--experiment", "segexp"]) == 0
    text = capsys.readouterr().out
    assert "claim: BatchNorm reduces the gap" in text and "protocol: as in the experiment" in text
    assert set(os.listdir(ROOT)) == before
    logged = {a.path for a in client.list_artifacts(new, "comparison")}
    assert {"comparison/comparison.md", "comparison/curves.png", "comparison/effects.png"} <= logged
    assert (
        client.get_run(new).data.tags["claim.verdict"]
        == compare.build_report(
            compare.runs_table(compare.select_runs(client, parent_run_id=new)[0]), claim=CLAIM
        ).claim.verdict
    )
    out = tmp_path / "out"
    argv = ["--tracking-uri", uri, "--sweep-id", "S1", "--no-log", "--output", str(out)]
    assert compare.main([*argv, "--accept-deviation"]) == 0
    assert "under a modified protocol" in capsys.readouterr().out
    names = {p.name for p in out.iterdir()}
    assert names == {"comparison.md", "runs.csv", "groups.csv", "curves.png", "effects.png"}
    assert len(pd.read_csv(out / "runs.csv")) == 5
    # A re-judged comparison does not overwrite the sweep's own on the parent run.
    verdict = client.get_run(new).data.tags["claim.verdict"]
    assert (
        compare.main(["--tracking-uri", uri, "--experiment", "segexp", "--accept-deviation"]) == 0
    )
    assert "not logged to parent run" in capsys.readouterr().out
    assert client.get_run(new).data.tags["claim.verdict"] == verdict


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--experiment", "nope"], "--experiment nope: no MLflow experiment of that name"),
        (["--sweep-id", "nope"], "--sweep-id nope: no sweep parent run with that id"),
        (["--parent", "0" * 32], "no run with that id"),
        (["--claim", "segexp"], "--claim segexp: no such experiment file"),
    ],
)
def test_bad_selectors_are_one_line_errors(store, capsys, argv, message):
    assert compare.main(["--tracking-uri", store[0], *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_an_empty_or_missing_store_is_a_one_line_error(tmp_path, capsys):
    assert compare.main(["--tracking-uri", f"sqlite:///{tmp_path}/none.db"]) == 2
    assert "no such SQLite store" in capsys.readouterr().err
    assert not (tmp_path / "none.db").exists()


def test_a_sweep_with_fewer_epochs_than_its_experiment_is_not_comparable(tmp_path):
    """`segexp-train experiment=cpu_overfitting trainer.epochs=2` (tiny), then `segexp-compare`."""
    from tests.conftest import TINY

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    cmd = [sys.executable, "-m", "segexp.train", "experiment=cpu_overfitting", *TINY, "seed=1",
           f"tracking.uri={uri}", "trainer.evaluate_test=false"]  # fmt: skip
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "protocol changed: " in proc.stdout  # the sweep's own summary
    result = subprocess.run(
        [sys.executable, "-m", "segexp.compare", "--tracking-uri", uri, "--no-log"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    changed = next(line for line in result.stdout.splitlines() if line.startswith("protocol"))
    assert "trainer.epochs=2 (claim: 60)" in changed
    assert "dataset.image_size=[32, 32] (claim: [64, 64])" in changed
    assert "verdict: not comparable" in result.stdout
    assert not PLAIN_HOLDS.search(result.stdout.split("## Claim")[1])
    assert "comparison" not in os.listdir(tmp_path)


def test_the_report_names_runs_that_early_stopping_cut_while_improving():
    from tests.test_analysis import DSB, EARLY

    table = runs([{"params": {"seed": 1}, **summarize_history(DSB, trainer=EARLY)}])
    markdown = compare.build_report(table).markdown
    notes = markdown.split("## Notes")[1]
    assert "run0: early stopping ended training after epoch 4 while the model was still" in notes
    assert "val_mean_iou 0.61 at the best epoch, 0.64 later" in notes
    full = runs([{"params": {"seed": 1}, **summarize_history(DSB, trainer={"epochs": 4})}])
    assert "## Notes" not in compare.build_report(full).markdown
