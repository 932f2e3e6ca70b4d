"""Whether the two variants of a benchmark pair trained the same problem.

Whether the two variants of a pair trained the same problem: their final training losses
agree within a tolerance; a speed ratio of a pair that does not is not a result.
"""

from __future__ import annotations

import math
from typing import Any

from segexp.bench.timing import Result

#: (a)'s final training loss may differ from its baseline's by this fraction of the baseline's.
LOSS_TOLERANCE = 0.10


def loss_check(a: Result, base: Result, tolerance: float = LOSS_TOLERANCE) -> dict[str, Any]:
    """``{"ok", "difference", "why"}`` for (a) against its baseline (b) or (c): ``difference``
    is (a)'s final loss over the baseline's minus 1; ``why`` (None when ok) says what differs."""
    fa, fb = float(a.final_loss), float(base.final_loss)
    diff = fa / fb - 1.0 if math.isfinite(fa) and math.isfinite(fb) and fb > 0 else math.nan
    ok = math.isfinite(diff) and abs(diff) <= tolerance
    why = None
    if not ok:
        why = (
            f"{a.scenario} round {a.round}: final training loss {fa:.4f} ({a.variant}) against "
            f"{fb:.4f} ({base.variant}), {_pct(diff)}, beyond {tolerance:.0%}: the two did not "
            "train the same problem (inputs, targets, batches or steps differ), so their speed "
            "ratio is not a result"
        )
    return {"ok": ok, "difference": diff, "why": why}


def _pct(value: float) -> str:
    return "n/a" if not math.isfinite(value) else f"{value:+.1%}"


def cell(check: dict[str, Any] | None) -> str:
    """The table cell of a pair's check: ``ok (+3.1%)``, ``NOT COMPARABLE (+65.0%)`` or n/a."""
    if check is None:
        return "n/a"
    return f"{'ok' if check['ok'] else 'NOT COMPARABLE'} ({_pct(check['difference'])})"


def loss_target(rows: list[dict[str, Any]]) -> tuple[str, str, bool] | None:
    """The target row: (a) and (b) reach the same final loss in every round (None: no pair)."""
    checks = [
        row["loss_check"]
        for row in rows
        if row.get("loss_check") and row["result"].scenario == "none"
    ]
    if not checks:
        return None
    measured = ", ".join(_pct(c["difference"]) for c in checks)
    name = f"(a) and (b) final training loss within {LOSS_TOLERANCE:.0%} (no augmentation)"
    return (name, measured, all(c["ok"] for c in checks))
