"""`segexp-compare`: judge one sweep's runs against its claim (package of the comparison).

- :mod:`segexp.compare.select`: which runs (one sweep, or one single run) and their table;
- :mod:`segexp.compare.protocol`: a claim (from its experiment file or the sweep's parent), its
  protocol keys and the runs that deviate from it;
- :mod:`segexp.compare.claims`: checks and verdicts on a table of runs;
- :mod:`segexp.compare.stats`: intervals over seeds (t interval, Welch);
- :mod:`segexp.compare.report`: tables, Markdown and figures from a table of runs;
- :mod:`segexp.compare.cli`: the command line (the end-of-sweep summary is
  :mod:`segexp.track.sweep_summary`, which passes the sweep's runs in).
"""

from segexp.compare.claims import (
    CheckResult,
    ClaimResult,
    evaluate_claim,
    format_claim,
)
from segexp.compare.cli import main, parse_args
from segexp.compare.protocol import claim_of, deviations, with_protocol
from segexp.compare.report import (
    Report,
    build_report,
    differing_params,
    group_table,
    grouping_keys,
    write_report,
)
from segexp.compare.select import metric_history, runs_table, select_runs

__all__ = [
    "CheckResult",
    "ClaimResult",
    "Report",
    "build_report",
    "claim_of",
    "deviations",
    "differing_params",
    "evaluate_claim",
    "format_claim",
    "group_table",
    "grouping_keys",
    "main",
    "metric_history",
    "parse_args",
    "runs_table",
    "select_runs",
    "with_protocol",
    "write_report",
]
