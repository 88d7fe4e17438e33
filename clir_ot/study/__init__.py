"""The scaling study: does a larger multilingual backbone change the gain of OT distillation?

* :mod:`clir_ot.study.stats` -- paired randomization and t tests, Holm, bootstrap intervals, the
  answer statistic :func:`gain_difference`, and the language-bias measure :func:`max_rank_distance`.
* :mod:`clir_ot.study.report` -- the per-query record :class:`QueryScore`, ``results.csv``, and
  ``report.md`` with its tables, plots and one-sentence answer.
"""
from clir_ot.study.report import (
    DEFAULT_RESOURCE_ORDER,
    GainRow,
    QueryScore,
    Report,
    build_report,
    read_results_csv,
    write_report,
    write_results_csv,
)
from clir_ot.study.stats import (
    GainDifference,
    bootstrap_ci,
    gain_difference,
    holm,
    max_rank_distance,
    paired_randomization_test,
    paired_t_test,
)

__all__ = [
    "DEFAULT_RESOURCE_ORDER",
    "GainDifference",
    "GainRow",
    "QueryScore",
    "Report",
    "bootstrap_ci",
    "build_report",
    "gain_difference",
    "holm",
    "max_rank_distance",
    "paired_randomization_test",
    "paired_t_test",
    "read_results_csv",
    "write_report",
    "write_results_csv",
]
