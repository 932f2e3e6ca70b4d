"""Claims: their protocol, their checks and verdicts, judged on a table of runs (one sweep).

A claim lives in the experiment file (top-level ``claim:``) and is stored on the sweep's parent
run with its protocol resolved::

    claim:
      text: Without BatchNorm, validation loss rises after its minimum.
      source: "001"
      protocol: [model.name, dataset.name, trainer.epochs]   # keys whose values define it;
                                     # the values are those of the experiment file alone
      checks:                        # all must hold
        - metric: final_over_best_val_loss
          stat: mean                 # mean | median | min | max | std | count, over the group
          group: {model.batchnorm: false}   # optional: runs whose params match
          op: ">="                   # > >= < <=
          value: 1.1                 # a threshold, or ...
        - metric: generalization_gap_final
          group: {model.batchnorm: true}
          op: "<"
          other: {model.batchnorm: false}   # ... the mean of another group (Welch's interval)

Verdicts: ``holds``, ``does not hold`` or ``inconclusive`` per check, each with its reason; a
claim is ``not comparable`` when a run's config differs from the protocol, unless deviations
are accepted (then ``... under a modified protocol``).
"""

from __future__ import annotations

import math
import operator
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from segexp.analysis import CURVE_METRICS
from segexp.compare.protocol import deviations
from segexp.compare.protocol import norm as _norm
from segexp.compare.stats import Interval, mean_interval, welch_interval
from segexp.config.schema.run import AnalysisConf
from segexp.errors import ConfigError

OPS = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le}
STATS = ("mean", "median", "min", "max", "std", "count")
MODIFIED = "under a modified protocol"


@dataclass
class CheckResult:
    expected: str
    measured: str
    verdict: str  # holds | does not hold | inconclusive
    reason: str = ""


@dataclass
class ClaimResult:
    text: str
    checks: list[CheckResult]
    source: str = ""
    deviations: list[str] = field(default_factory=list)  # "key=value (claim: value)"
    accept_deviation: bool = False
    protocol_checked: bool = True

    @property
    def evidence(self) -> str:
        """The verdict of the checks alone, ignoring the protocol."""
        verdicts = {c.verdict for c in self.checks}
        if "does not hold" in verdicts:
            return "does not hold"
        return "holds" if verdicts == {"holds"} else "inconclusive"

    @property
    def verdict(self) -> str:
        if not self.deviations:
            return self.evidence
        return f"{self.evidence} {MODIFIED}" if self.accept_deviation else "not comparable"


# -- checks ----------------------------------------------------------------------------------
def matching_runs(table: pd.DataFrame, selector: Mapping[str, Any] | None) -> pd.DataFrame:
    if "status" not in table:
        return table
    done = table[table["status"] == "FINISHED"]
    for key, expected in (selector or {}).items():
        column = f"param:{key}"
        if column not in done and f"{column}.name" in done:
            column = f"{column}.name"  # a config group, e.g. {augmentation: flip}
        if column not in done:
            return done.iloc[0:0]
        done = done[done[column].map(_norm) == _norm(expected)]
    return done


def _values(table: pd.DataFrame, metric: str) -> pd.Series:
    if metric not in table:
        return pd.Series(dtype=float)
    return pd.to_numeric(table[metric], errors="coerce").dropna()


def _stat(values: pd.Series, stat: str) -> float:
    if stat == "count":
        return float(len(values))
    if not len(values) or (stat == "std" and len(values) < 2):
        return math.nan
    return float(getattr(values, stat)(**({"ddof": 1} if stat == "std" else {})))


def _label(selector: Mapping[str, Any] | None) -> str:
    return ", ".join(f"{k}={v}" for k, v in (selector or {}).items()) or "all runs"


def _spread(values: pd.Series) -> str:
    if len(values) > 1:
        return f"{values.mean():.4g} ± {values.std(ddof=1):.2g} (n={len(values)})"
    return f"{values.mean():.4g} (n={len(values)})" if len(values) else "no value (n=0)"


def _short_runs(group: pd.DataFrame) -> list[str]:
    """Runs that trained fewer than ``analysis.patience`` epochs after their best epoch."""
    short = []
    for _, run in group.iterrows():
        trained, best, patience = (
            pd.to_numeric(pd.Series([run.get(k)]), errors="coerce")[0]
            for k in ("epochs_trained", "best_epoch", "param:analysis.patience")
        )
        patience = AnalysisConf.patience if math.isnan(patience) else float(patience)
        if math.isnan(trained) or math.isnan(best):
            short.append(f"{run.get('run_name')} (no best epoch logged)")
        elif trained - best < patience:
            short.append(
                f"{run.get('run_name')} (best epoch {best:.0f} of {trained:.0f}, "
                f"{trained - best:.0f} after it < analysis.patience={patience:g})"
            )
    return short


def _decide(interval: Interval, op: str, threshold: float) -> str:
    low, high = OPS[op](interval.low, threshold), OPS[op](interval.high, threshold)
    return "holds" if low and high else "does not hold" if not (low or high) else "inconclusive"


def _check(i: int, check: Mapping[str, Any], table: pd.DataFrame) -> CheckResult:
    metric, stat, op = (
        check.get("metric"),
        str(check.get("stat", "mean")),
        str(check.get("op", ">")),
    )
    if not metric or op not in OPS or stat not in STATS:
        raise ConfigError(
            f"claim.checks[{i}]: expected metric, op in {sorted(OPS)} and stat in {STATS}, "
            f"got metric={metric!r} op={op!r} stat={stat!r}"
        )
    if ("value" in check) == ("other" in check):
        raise ConfigError(f"claim.checks[{i}]: give exactly one of `value` or `other`")
    comparative = "other" in check
    if comparative and stat != "mean":
        raise ConfigError(
            f"claim.checks[{i}]: a comparison with `other` compares means; got stat={stat!r}"
        )
    selectors = [check.get("group")] + ([check["other"]] if comparative else [])
    groups = [matching_runs(table, s) for s in selectors]
    values = [_values(g, metric) for g in groups]
    where = f" | {_label(check.get('group'))}" if check.get("group") else ""
    lhs = f"{stat}({metric}{where})"
    rhs = f"mean({metric} | {_label(check['other'])})" if comparative else f"{check['value']:g}"
    expected = f"{lhs} {op} {rhs}"
    measured = " vs ".join(_spread(v) for v in values)
    if not comparative and stat != "mean":
        measured = f"{stat} {_stat(values[0], stat):.4g} (n={len(values[0])})"

    def result(verdict: str, reason: str, shown: str = measured) -> CheckResult:
        return CheckResult(expected, shown, verdict, reason)

    if any(not len(v) for v in values):
        empty = [_label(s) for s, v in zip(selectors, values, strict=True) if not len(v)]
        return result("inconclusive", f"no finished run with {metric} in: {'; '.join(empty)}")
    if metric in CURVE_METRICS:
        short = [r for g in groups for r in _short_runs(g)]
        if short:
            return result(
                "inconclusive",
                "stopped too soon after the best epoch to see a rise: " + "; ".join(short),
            )
    if comparative:
        small = [
            f"{_label(s)} (n={len(v)})"
            for s, v in zip(selectors, values, strict=True)
            if len(v) < 2
        ]
        if small:
            return result("inconclusive", "fewer than 2 seeds in " + "; ".join(small))
        effect = welch_interval(values[0], values[1])
        verdict = _decide(effect, op, 0.0)
        shown = f"{measured}; difference {effect.text()}"
        reason = {
            "holds": f"the interval lies entirely {op} 0",
            "does not hold": f"the interval lies entirely on the other side of {op} 0",
            "inconclusive": "the interval contains 0",
        }[verdict]
        return result(verdict, reason, shown)
    threshold = float(check["value"])
    if stat == "mean" and len(values[0]) >= 2:
        interval = mean_interval(values[0])
        verdict = _decide(interval, op, threshold)
        shown = f"{measured}; mean {interval.text()}"
        reason = {
            "holds": f"the interval lies entirely {op} {threshold:g}",
            "does not hold": f"the interval lies entirely outside {op} {threshold:g}",
            "inconclusive": f"the interval contains the threshold {threshold:g}",
        }[verdict]
        return result(verdict, reason, shown)
    value = _stat(values[0], stat)
    if math.isnan(value):
        return result("inconclusive", f"{stat} needs more runs (n={len(values[0])})")
    ok = OPS[op](value, threshold)
    scope = "a single run, no interval" if len(values[0]) == 1 else f"{stat} over the runs"
    return result(
        "holds" if ok else "does not hold",
        f"{value:.4g} {op if ok else 'not ' + op} {threshold:g} ({scope})",
    )


def evaluate_claim(
    claim: Mapping[str, Any], table: pd.DataFrame, *, accept_deviation: bool = False
) -> ClaimResult:
    """Judge every ``claim.checks`` entry on the finished runs in ``table`` and compare the
    runs' params with ``claim.protocol``."""
    checks = claim.get("checks") or []
    if not checks:
        raise ConfigError("claim.checks: expected a non-empty list of checks")
    results = [_check(i, check, table) for i, check in enumerate(checks)]
    done = table[table["status"] == "FINISHED"] if "status" in table else table
    return ClaimResult(
        str(claim.get("text", "")),
        results,
        str(claim.get("source", "")),
        deviations(claim, done if len(done) else table),
        accept_deviation,
        isinstance(claim.get("protocol"), Mapping),
    )


def format_claim(result: ClaimResult) -> str:
    lines = [f"claim: {result.text}"]
    if result.source:
        lines.append(f"source: {result.source}")
    if result.deviations:
        lines.append("protocol changed: " + ", ".join(result.deviations))
    elif not result.protocol_checked:
        lines.append("protocol: not checked (the claim names no resolved `protocol`)")
    else:
        lines.append("protocol: as in the experiment file")
    suffix = f" {MODIFIED}" if result.deviations else ""
    for i, check in enumerate(result.checks, 1):
        lines.append(f"  check {i}: expected {check.expected}")
        lines.append(f"           measured {check.measured}")
        lines.append(f"           -> {check.verdict}{suffix}: {check.reason}")
    verdict = result.verdict
    if result.deviations and not result.accept_deviation:
        verdict += (
            f" (the runs' protocol differs from the claim's; with --accept-deviation: "
            f"{result.evidence} {MODIFIED})"
        )
    lines.append(f"verdict: {verdict}")
    return "\n".join(lines)
