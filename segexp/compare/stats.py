"""Seed statistics of claims: t and Welch intervals, Welch's test.

A t interval for one group's mean, Welch's interval and test for the difference of two groups'
means (scipy.stats distributions, formulas written out)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

CONFIDENCE = 0.95


@dataclass(frozen=True)
class Interval:
    """An estimate with its two-sided ``CONFIDENCE`` interval (and a test when there is one)."""

    estimate: float
    low: float
    high: float
    t: float = math.nan
    df: float = math.nan
    p: float = math.nan

    def text(self) -> str:
        ci = f"{self.estimate:.4g}, {CONFIDENCE:.0%} CI [{self.low:.4g}, {self.high:.4g}]"
        if math.isnan(self.p):
            return ci
        return f"{ci}, Welch t={self.t:.3g} (df={self.df:.3g}), p={self.p:.3g}"


def mean_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> Interval:
    """Mean of ``values`` with its Student-t interval (needs at least 2 values)."""
    from scipy import stats

    x = np.asarray(values, dtype=float)
    if x.size < 2:
        raise ValueError("a confidence interval needs at least 2 values")
    mean, se = float(x.mean()), float(x.std(ddof=1) / math.sqrt(x.size))
    half = float(stats.t.ppf(0.5 + confidence / 2, x.size - 1)) * se
    return Interval(mean, mean - half, mean + half)


def welch_interval(
    a: Sequence[float], b: Sequence[float], confidence: float = CONFIDENCE
) -> Interval:
    """``mean(a) - mean(b)`` with Welch's interval (Welch-Satterthwaite degrees of freedom) and
    the two-sided Welch t-test p value (needs at least 2 values in each group)."""
    from scipy import stats

    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.size < 2 or y.size < 2:
        raise ValueError("Welch's interval needs at least 2 values per group")
    vx, vy = x.var(ddof=1) / x.size, y.var(ddof=1) / y.size
    diff, se = float(x.mean() - y.mean()), math.sqrt(vx + vy)
    if se == 0:  # no spread at all: the difference is exact
        return Interval(
            diff,
            diff,
            diff,
            math.copysign(math.inf, diff) if diff else 0.0,
            math.nan,
            0.0 if diff else 1.0,
        )
    df = (vx + vy) ** 2 / (vx**2 / (x.size - 1) + vy**2 / (y.size - 1))
    half = float(stats.t.ppf(0.5 + confidence / 2, df)) * se
    t = diff / se
    p = float(2 * stats.t.sf(abs(t), df))
    return Interval(diff, diff - half, diff + half, t, df, p)
