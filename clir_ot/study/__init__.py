"""Studies: the toolkit's one experiment system (backbones x methods x languages x folds x seeds).

The scaling study (does a larger multilingual backbone change the gain of OT distillation?), the
distillation study and the dense students (a ``bi-encoder`` backbone) are all configs of it.

* :mod:`clir_ot.study.config` -- the YAML config, checked before any work (:func:`load_study_config`).
* :mod:`clir_ot.study.plan` / :mod:`clir_ot.study.runner` -- the typed plan (:class:`Step`, :class:`Cell`,
  :class:`Work`), keyed artifacts (:mod:`clir_ot.study.artifacts`), building, resuming, ``--dry-run``.
* :mod:`clir_ot.study.schedule` / :mod:`clir_ot.study.locks` -- where steps run (this process, ``--jobs``
  processes, submitit/Slurm jobs) and the lock per artifact that lets workers share one study folder.
* :mod:`clir_ot.study.evaluate` -- per-query scores of the finished runs, the methods side by side.
* :mod:`clir_ot.study.stats` -- paired randomization and t tests, Holm, bootstrap intervals, the
  answer statistic :func:`gain_difference`, and the language-bias measure :func:`max_rank_distance`.
* :mod:`clir_ot.study.report` -- the per-query record :class:`QueryScore`, ``results.csv``, and
  ``report.md`` with its tables (one function per section of one :class:`Report`), plots and answer;
  the control rule (:func:`alignment_verdicts`, :class:`AlignmentVerdict`) and the seed spread
  (:func:`seed_spreads`, :class:`SeedSpread`).
* :mod:`clir_ot.study.dense_students` -- ``clir-ot xquad-dense-students`` as an alias over a study.
"""
from clir_ot.study.report import (
    DEFAULT_RESOURCE_ORDER,
    AlignmentVerdict,
    ControlComparison,
    GainRow,
    QueryScore,
    Report,
    ScoreKey,
    SeedSpread,
    StepCost,
    alignment_verdicts,
    build_report,
    read_results_csv,
    seed_spreads,
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
    "AlignmentVerdict",
    "ControlComparison",
    "GainDifference",
    "GainRow",
    "QueryScore",
    "Report",
    "ScoreKey",
    "SeedSpread",
    "StepCost",
    "alignment_verdicts",
    "bootstrap_ci",
    "build_report",
    "gain_difference",
    "holm",
    "max_rank_distance",
    "paired_randomization_test",
    "paired_t_test",
    "read_results_csv",
    "seed_spreads",
    "write_report",
    "write_results_csv",
]
