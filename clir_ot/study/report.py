"""The scaling study's report: per-query results in, tables, tests, plots and one answer sentence out.

Research question: does scaling the multilingual backbone change the gain that a method (OT
distillation, ``ot``) brings over a baseline (the zero-shot teacher, ``none``) on low-resource
languages of XQuAD, measured by P@5?

Input is a flat list of :class:`QueryScore` records, one per (backbone, method, document language,
setting, metric, query). Settings: ``cross`` (English query, documents of one language, one
relevant document per query) and ``pool`` (documents of all languages). The metric ``bias`` is the
per-query language bias of :func:`clir_ot.study.stats.max_rank_distance` (lower is better).

* :func:`write_results_csv` / :func:`read_results_csv` -- the flat results file (means first).
* :func:`build_report` -- computes every table, the per-language tests and the answer.
* :func:`alignment_verdicts` -- per language, whether a method's gain counts as alignment: it beats
  both controls (shuffled bitext, no bitext) with p < 0.05, paired and Holm-corrected
  (:class:`AlignmentVerdict`).
* :func:`seed_spreads` -- the spread of a method's mean over its training seeds (:class:`SeedSpread`).
* :func:`write_report` -- writes ``report.md``, ``results.csv`` and the two PNG plots.
"""
from __future__ import annotations

import csv
import logging
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterable, Mapping, NamedTuple, Sequence

import numpy as np

from clir_ot.errors import ConfigError, ConsistencyError, InputFormatError
from clir_ot.formats import atomic_open
from clir_ot.study.stats import GainDifference, bootstrap_ci, gain_difference, holm, paired_randomization_test

logger = logging.getLogger(__name__)

__all__ = [
    "ALPHA",
    "AlignmentVerdict",
    "CSV_COLUMNS",
    "ControlComparison",
    "DEFAULT_RESOURCE_ORDER",
    "GainInterval",
    "GainRow",
    "PLOT_METHOD_GAINS",
    "QueryScore",
    "Report",
    "ScoreKey",
    "SeedScores",
    "SeedSpread",
    "StepCost",
    "alignment_verdicts",
    "build_report",
    "gain_intervals",
    "paired_values",
    "plot_method_gains",
    "render_markdown",
    "read_results_csv",
    "seed_spreads",
    "write_report",
    "write_results_csv",
]

CSV_COLUMNS = ("backbone", "method", "language", "setting", "metric", "qid", "value")
SUMMARY_QID = "all"
BIAS_METRIC = "bias"
CROSS, POOL = "cross", "pool"

#: XQuAD languages from most to least pre-training data, as given by the study design. It follows
#: Wikipedia sizes (mBERT's corpus) more than CC-100 (XLM-R's, hence e5's), where e.g. ``ru``,
#: ``vi`` and ``th`` are far larger; pass the order that fits the backbones compared.
DEFAULT_RESOURCE_ORDER = ("en", "de", "ru", "es", "zh", "vi", "tr", "ar", "el", "th", "hi")

_METRIC_ORDER = ("P@5", "Success@5", "RR@10")
_METHOD_NAMES = {"ot": "OT distillation"}
#: The level of the control rule: a gain counts as alignment where it beats both controls at p < ALPHA.
ALPHA = 0.05
PLOT_METRIC = "metric_by_language.png"
PLOT_GAIN = "gain_by_language.png"
#: A one-backbone study's plot: every method's gain over the baseline per language, with its interval.
PLOT_METHOD_GAINS = "gains_by_method.png"


# --------------------------------------------------------------------------------------------------
# Records and the results file


@dataclass(frozen=True)
class QueryScore:
    """One per-query value of the study.

    ``language`` is the document language (``en`` for English); ``setting`` is ``cross`` or
    ``pool``; ``metric`` an ir_measures display name (``P@5``, ``Success@5``, ``RR@10``) or
    ``bias`` (lower is better).
    """

    backbone: str
    method: str
    language: str
    setting: str
    metric: str
    qid: str
    value: float


class ScoreKey(NamedTuple):
    """What a per-query value is of: everything of a :class:`QueryScore` but the query."""

    backbone: str
    method: str
    language: str
    setting: str
    metric: str


Key = ScoreKey

#: Per-seed values: :class:`ScoreKey` -> {training seed: {qid: value}} (the seeds of one method's students).
SeedScores = Mapping[ScoreKey, Mapping[int, Mapping[str, float]]]


def _key(score: QueryScore) -> ScoreKey:
    return ScoreKey(score.backbone, score.method, score.language, score.setting, score.metric)


def _group(scores: Iterable[QueryScore]) -> dict[Key, dict[str, float]]:
    """(backbone, method, language, setting, metric) -> {qid: value}, refusing duplicates and 'all'."""
    grouped: dict[Key, dict[str, float]] = {}
    for score in scores:
        if score.qid == SUMMARY_QID:
            raise ConsistencyError(
                f"qid {SUMMARY_QID!r} is reserved for the means in results.csv; found it as a query of {_key(score)}"
            )
        values = grouped.setdefault(_key(score), {})
        if score.qid in values:
            raise ConsistencyError(f"two values for query {score.qid!r} of {_key(score)}")
        values[score.qid] = float(score.value)
    return grouped


def _format_float(value: float) -> str:
    return repr(float(value))  # shortest text that reads back to the same float


def write_results_csv(path: str | Path, scores: Iterable[QueryScore]) -> Path:
    """Write ``scores`` as CSV (columns :data:`CSV_COLUMNS`), atomically.

    First one row per (backbone, method, language, setting, metric) with qid ``all`` and the mean
    over its queries, in order of first appearance; then the per-query rows in input order.
    Values are written at full precision.

    Raises:
        ConsistencyError: a query id is ``all``, or a query has two values for the same key.
    """
    scores = list(scores)
    grouped = _group(scores)
    path = Path(path)
    with atomic_open(path) as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        for key, values in grouped.items():
            writer.writerow([*key, SUMMARY_QID, _format_float(np.mean(list(values.values())))])
        for s in scores:
            writer.writerow([s.backbone, s.method, s.language, s.setting, s.metric, s.qid, _format_float(s.value)])
    logger.info("wrote %d per-query values (%d means) to %s", len(scores), len(grouped), path)
    return path


def read_results_csv(path: str | Path) -> list[QueryScore]:
    """Read a file of :func:`write_results_csv`; returns the per-query records (in file order).

    The ``all`` rows are checked against the mean of their per-query rows (relative tolerance
    1e-9) and not returned.

    Raises:
        InputFormatError: wrong header, wrong number of fields, or a value that is not a number.
        ConsistencyError: an ``all`` row disagrees with its queries, or names a key without queries.
    """
    path = Path(path)
    records: list[QueryScore] = []
    summaries: dict[Key, tuple[int, float]] = {}
    with open(path, encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None or tuple(header) != CSV_COLUMNS:
            raise InputFormatError(path, 1, f"expected the header {','.join(CSV_COLUMNS)}; got {header!r}")
        for row in reader:
            line = reader.line_num
            if not row:
                continue
            if len(row) != len(CSV_COLUMNS):
                raise InputFormatError(path, line, f"expected {len(CSV_COLUMNS)} fields; got {len(row)}")
            backbone, method, language, setting, metric, qid, text = row
            try:
                value = float(text)
            except ValueError:
                raise InputFormatError(path, line, f"value {text!r} is not a number") from None
            if qid == SUMMARY_QID:
                summaries[ScoreKey(backbone, method, language, setting, metric)] = (line, value)
            else:
                records.append(QueryScore(backbone, method, language, setting, metric, qid, value))
    grouped = _group(records)
    for key, (line, mean) in summaries.items():
        if key not in grouped:
            raise ConsistencyError(f"{path}:{line}: mean row for {key} has no per-query rows")
        actual = float(np.mean(list(grouped[key].values())))
        if not math.isclose(actual, mean, rel_tol=1e-9, abs_tol=1e-12):
            raise ConsistencyError(f"{path}:{line}: mean row for {key} says {mean!r}, its queries give {actual!r}")
    return records


# --------------------------------------------------------------------------------------------------
# The report


@dataclass(frozen=True)
class GainRow:
    """Gain of the method over the baseline for one backbone and one language (setting ``cross``).

    ``gain`` = mean over queries of (method - baseline); ``p_randomization`` of
    :func:`~clir_ot.study.stats.paired_randomization_test`; ``p_holm`` Holm-adjusted across the
    languages of the backbone.
    """

    language: str
    gain: float
    p_randomization: float
    p_holm: float
    n_queries: int


@dataclass(frozen=True)
class StepCost:
    """What one study step cost: wall seconds, a throughput (``rate`` in ``rate_unit``, e.g.
    ``examples/s`` for training, ``pairs/s`` for reranking) and a note (e.g. where it was reused from)."""

    wall_s: float | None
    rate: float | None = None
    rate_unit: str | None = None
    note: str | None = None

    def cells(self) -> list[tuple[str, object]]:
        """(column, value) of the cost table, in column order: wall seconds, the rate, the note."""
        out: list[tuple[str, object]] = [("wall_s", self.wall_s)]
        if self.rate_unit is not None:
            out.append((self.rate_unit, self.rate))
        if self.note is not None:
            out.append(("note", self.note))
        return out


@dataclass(frozen=True)
class Report:
    """Everything :func:`build_report` computed, and the markdown text of ``report.md``.

    ``grouped`` maps each :class:`ScoreKey` to its per-query values and ``means`` to their mean;
    ``gains[backbone]`` holds one :class:`GainRow` per language of the ``cross`` setting;
    ``answer`` is the study's statistic and ``sentence`` its one-sentence reading.
    """

    title: str
    markdown: str
    sentence: str
    answer: GainDifference
    means: dict[ScoreKey, float]
    gains: dict[str, tuple[GainRow, ...]]
    group_gains: dict[str, float]
    backbones: tuple[str, ...]
    methods: tuple[str, ...]
    languages: tuple[str, ...]
    low_resource: tuple[str, ...]
    resource_order: tuple[str, ...]
    metric: str
    method: str
    baseline: str
    grouped: dict[ScoreKey, dict[str, float]] = field(default_factory=dict)
    costs: dict[str, StepCost] = field(default_factory=dict)
    n_resamples: int = 10000
    seed: int = 0
    verdicts: tuple["AlignmentVerdict", ...] = ()
    spreads: tuple["SeedSpread", ...] = ()


def _order_languages(present: Iterable[str], resource_order: Sequence[str]) -> tuple[str, ...]:
    present = set(present)
    known = [lang for lang in resource_order if lang in present]
    return tuple(known + sorted(present - set(known)))


def _order_metrics(present: Iterable[str]) -> tuple[str, ...]:
    present = set(present)
    known = [m for m in _METRIC_ORDER if m in present]
    return tuple(known + sorted(present - set(known)))


def _signed(value: float, digits: int = 4) -> str:
    return f"{value:+.{digits}f}"


def _plain(value: float, digits: int = 4) -> str:
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    def row(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(cell).replace("|", "\\|") for cell in cells) + " |"

    return [row(header), "|:--" + "|--:" * (len(header) - 1) + "|", *(row(r) for r in rows)]


def _method_name(method: str) -> str:
    return _METHOD_NAMES.get(method, f"method `{method}`")


def _metric_table(
    means: Mapping[ScoreKey, float],
    setting: str,
    metric: str,
    columns: Sequence[tuple[str, str]],
    languages: Sequence[str],
) -> list[str]:
    header = ["language", *(f"{b} · {m}" for b, m in columns)]
    rows = []
    for language in languages:
        cells = [means.get(ScoreKey(b, m, language, setting, metric), math.nan) for b, m in columns]
        if all(math.isnan(c) for c in cells):
            continue
        rows.append([language, *(_plain(c) for c in cells)])
    return _table(header, rows)


def _fmt_cost(value: object) -> str:
    if isinstance(value, bool) or value is None:
        return "—" if value is None else str(value)
    if isinstance(value, (int, float)):
        return f"{value:,.1f}" if abs(value) >= 1 else f"{value:.4g}"
    return str(value)


# --------------------------------------------------------------------------------------------------
# Controls and seeds


@dataclass(frozen=True)
class ControlComparison:
    """A method against one of its controls on one language: ``difference`` = mean over queries of
    (method − control), its paired randomization p-value and the p-value Holm-adjusted across the
    languages (of that backbone, method and control)."""

    kind: str
    control: str
    difference: float
    p_randomization: float
    p_holm: float

    @property
    def beaten(self) -> bool:
        """The method is better than the control, and significantly so (Holm-adjusted p < :data:`ALPHA`)."""
        return self.difference > 0 and self.p_holm < ALPHA


@dataclass(frozen=True)
class AlignmentVerdict:
    """Whether a method's gain on one backbone and language counts as alignment: it beats *both*
    controls (``required``: shuffled bitext and no bitext) with Holm-adjusted p < :data:`ALPHA`.
    A control without results on that language (not in the grid, or not finished) is listed in
    ``missing``; the verdict is then not alignment."""

    backbone: str
    method: str
    language: str
    metric: str
    gain: float | None
    comparisons: tuple[ControlComparison, ...]
    missing: tuple[str, ...] = ()

    @property
    def alignment(self) -> bool:
        return not self.missing and bool(self.comparisons) and all(c.beaten for c in self.comparisons)

    def reading(self) -> str:
        """One phrase: ``alignment``, or what it fails."""
        if self.alignment:
            return "alignment"
        failed = [f"not above {c.control}" for c in self.comparisons if not c.beaten]
        failed += [f"no {kind} control results" for kind in self.missing]
        return "not alignment: " + "; ".join(failed)


def paired_values(treated: Mapping[str, float], control: Mapping[str, float], what: str) -> tuple[np.ndarray, np.ndarray]:
    """Two methods' per-query values as aligned arrays (sorted by qid); ``ConsistencyError`` naming
    ``what`` when they cover different queries, since a paired test needs the same ones."""
    if set(treated) != set(control):
        raise ConsistencyError(f"{what}: the two cover different queries ({len(set(treated) ^ set(control))} differ); "
                               "a paired test needs the same queries")
    qids = sorted(treated)
    return np.array([treated[q] for q in qids], dtype=float), np.array([control[q] for q in qids], dtype=float)


def alignment_verdicts(grouped: Mapping[ScoreKey, Mapping[str, float]], controls: Mapping[str, Mapping[str, str]], *,
                       required: Sequence[str] = ("shuffled", "no-bitext"), baseline: str = "none",
                       metric: str = "P@5", n_resamples: int = 10000, seed: int = 0) -> tuple[AlignmentVerdict, ...]:
    r"""The control rule, per backbone, method and language (setting ``cross``).

    For each method of ``controls`` (method -> {control kind: control method}) and each control, the
    paired randomization test of (method − control) over the queries of every language where both have
    results, Holm-adjusted across those languages. The method's gain there counts as alignment iff for
    every kind in ``required`` it is above that control with adjusted :math:`p <` :data:`ALPHA`.

    Args:
        grouped: :class:`ScoreKey` -> {qid: value} (seed-averaged per query).
        controls: method -> {kind: control method name}, e.g. ``{"ot": {"shuffled": "ot-shuffled",
            "no-bitext": "no-bitext"}}``.
        required: the control kinds a gain must beat.
        baseline: the method the ``gain`` is measured against (``None`` in a verdict without it).
        metric, n_resamples, seed: of the tests.

    Returns:
        One :class:`AlignmentVerdict` per backbone, method and language with results, in that order.
    """
    cross = {k: v for k, v in grouped.items() if k.setting == CROSS and k.metric == metric}
    backbones = list(dict.fromkeys(k.backbone for k in cross))
    out: list[AlignmentVerdict] = []
    for backbone in backbones:
        for method, its_controls in controls.items():
            languages = [k.language for k in cross if k.backbone == backbone and k.method == method]
            if not languages:
                continue
            tested: dict[str, dict[str, ControlComparison]] = {lang: {} for lang in languages}
            for kind, control in its_controls.items():
                raw = {}
                for lang in languages:
                    other = cross.get(ScoreKey(backbone, control, lang, CROSS, metric))
                    if other is None:
                        continue
                    a, b = paired_values(cross[ScoreKey(backbone, method, lang, CROSS, metric)], other,
                                   f"{metric} of {backbone!r}/{lang!r}: {method!r} and its control {control!r}")
                    raw[lang] = (float((a - b).mean()), paired_randomization_test(a, b, n_resamples=n_resamples,
                                                                                   seed=seed))
                adjusted = holm({lang: p for lang, (_, p) in raw.items()}) if raw else {}
                for lang, (difference, p) in raw.items():
                    tested[lang][kind] = ControlComparison(kind, control, difference, p, adjusted[lang])
            for lang in languages:
                base = cross.get(ScoreKey(backbone, baseline, lang, CROSS, metric))
                gain = None
                if base is not None:
                    a, b = paired_values(cross[ScoreKey(backbone, method, lang, CROSS, metric)], base,
                                   f"{metric} of {backbone!r}/{lang!r}: {method!r} and {baseline!r}")
                    gain = float((a - b).mean())
                found = tested[lang]
                out.append(AlignmentVerdict(backbone, method, lang, metric, gain,
                                            tuple(found[k] for k in required if k in found) +
                                            tuple(c for k, c in found.items() if k not in required),
                                            tuple(k for k in required if k not in found)))
    return tuple(out)


@dataclass(frozen=True)
class SeedSpread:
    """A method's mean ``metric`` on one backbone and language for each of its training seeds."""

    backbone: str
    method: str
    language: str
    metric: str
    seeds: tuple[int, ...]
    means: tuple[float, ...]

    @property
    def sd(self) -> float:
        """Sample standard deviation over seeds (0 for one seed)."""
        return float(np.std(self.means, ddof=1)) if len(self.means) > 1 else 0.0

    @property
    def range(self) -> float:
        return float(max(self.means) - min(self.means))


def seed_spreads(seed_scores: SeedScores, *, metric: str = "P@5", setting: str = CROSS) -> tuple[SeedSpread, ...]:
    """One :class:`SeedSpread` per (backbone, method, language) of ``seed_scores`` with at least two seeds."""
    out = []
    for key, by_seed in seed_scores.items():
        if key.setting != setting or key.metric != metric or len(by_seed) < 2:
            continue
        seeds = tuple(sorted(by_seed))
        out.append(SeedSpread(key.backbone, key.method, key.language, metric, seeds,
                              tuple(float(np.mean(list(by_seed[s].values()))) for s in seeds)))
    return tuple(out)


def controls_markdown(verdicts: Sequence[AlignmentVerdict], baseline: str = "none") -> list[str]:
    """The report's control-rule section: per backbone, method and language, the gain, the difference
    to each control with its Holm-adjusted p, and the reading."""
    if not verdicts:
        return []
    metric = verdicts[0].metric
    kinds = list(dict.fromkeys(c.kind for v in verdicts for c in v.comparisons)) or ["shuffled", "no-bitext"]
    out = [f"## Does a gain count as alignment? (the control rule, {metric}, setting `{CROSS}`)", "",
           f"A method's gain over `{baseline}` counts as alignment on a language only where it beats *both* controls "
           f"-- the same objective on shuffled bitext, and the same steps of the ranking term alone (no bitext) -- "
           f"with p < {ALPHA} (paired randomization test over questions, Holm-adjusted across the languages of each "
           "backbone, method and control)."
           + (f" Without a ranking term the no-bitext control trains nothing, so it is `{baseline}` itself: the gain "
              "must then be significant on its own." if any(c.control == baseline for v in verdicts
                                                              for c in v.comparisons) else ""), ""]
    header = ["backbone", "method", "language", f"gain over {baseline}", *(f"− {k} (p Holm)" for k in kinds), "reading"]
    rows = []
    for v in verdicts:
        by_kind = {c.kind: c for c in v.comparisons}
        cells = [f"{_signed(by_kind[k].difference)} ({by_kind[k].p_holm:.3f})" if k in by_kind else "—" for k in kinds]
        rows.append([v.backbone, v.method, v.language, "—" if v.gain is None else _signed(v.gain), *cells,
                     ("**alignment**" if v.alignment else v.reading())])
    return out + _table(header, rows) + [""]


def seed_spread_markdown(spreads: Sequence[SeedSpread]) -> list[str]:
    """The report's seed section: each method's mean per seed, their standard deviation and range."""
    if not spreads:
        return []
    metric = spreads[0].metric
    out = [f"## Seed spread ({metric}, setting `{CROSS}`)", "",
           "Each student trained once per seed; the tables above average a question's value over the seeds. "
           "sd: sample standard deviation of the per-seed means.", ""]
    rows = [[s.backbone, s.method, s.language, ", ".join(f"{seed}: {m:.4f}" for seed, m in zip(s.seeds, s.means)),
             f"{s.sd:.4f}", f"{s.range:.4f}"] for s in spreads]
    return out + _table(["backbone", "method", "language", "mean per seed", "sd", "range"], rows) + [""]


# --------------------------------------------------------------------------------------------------
# Computing the report: checks, per-language gains, the answer


def _check_report_inputs(grouped: Mapping[ScoreKey, Mapping[str, float]], backbones: Sequence[str],
                         low_resource: Sequence[str], baseline: str, method: str,
                         metric: str) -> tuple[tuple[str, ...], tuple[str, ...], set[str]]:
    """The chosen backbones, the low-resource group and the languages with ``cross`` results, or a
    :class:`ConfigError` naming what the results lack."""
    if not grouped:
        raise ConfigError("no scores: the report needs per-query results")
    chosen = tuple(dict.fromkeys(backbones))
    if len(chosen) < 2:
        raise ConfigError(f"backbones must name at least two backbones, smaller to larger; got {tuple(backbones)!r}")
    group = tuple(dict.fromkeys(low_resource))
    if not group:
        raise ConfigError("low_resource is empty: name the low-resource languages, e.g. ('th', 'hi', 'el')")
    cross = [k for k in grouped if k.setting == CROSS]
    present_backbones = {k.backbone for k in cross}
    for backbone in chosen:
        if backbone not in present_backbones:
            raise ConfigError(
                f"backbone {backbone!r} has no '{CROSS}' results; available: {', '.join(sorted(present_backbones)) or 'none'}"
            )
    for needed in (baseline, method):
        for backbone in chosen:
            if not any(k.backbone == backbone and k.method == needed and k.metric == metric for k in cross):
                raise ConfigError(f"no '{CROSS}' {metric} results for method {needed!r} of backbone {backbone!r}")
    cross_languages = {k.language for k in cross if k.metric == metric}
    for language in group:
        if language not in cross_languages:
            raise ConfigError(
                f"low-resource language {language!r} has no '{CROSS}' {metric} results; "
                f"available: {', '.join(sorted(cross_languages))}"
            )
    return chosen, group, cross_languages


def _language_gains(grouped: Mapping[ScoreKey, Mapping[str, float]], backbone: str, languages: Sequence[str], *,
                    method: str, baseline: str, metric: str, n_resamples: int, seed: int) -> tuple[GainRow, ...]:
    """Per-language gains of ``method`` over ``baseline`` on one backbone, Holm across its languages."""
    raw: dict[str, tuple[float, float, int]] = {}
    for language in languages:
        treated = grouped.get(ScoreKey(backbone, method, language, CROSS, metric))
        control = grouped.get(ScoreKey(backbone, baseline, language, CROSS, metric))
        if treated is None or control is None:
            continue
        if set(treated) != set(control):
            raise ConsistencyError(
                f"{metric} of {backbone!r}/{language!r}: methods {method!r} and {baseline!r} cover different "
                f"queries ({len(set(treated) ^ set(control))} differ); a paired test needs the same queries"
            )
        qids = sorted(treated)
        a = np.array([treated[q] for q in qids], dtype=float)
        b = np.array([control[q] for q in qids], dtype=float)
        p = paired_randomization_test(a, b, n_resamples=n_resamples, seed=seed)
        raw[language] = (float((a - b).mean()), p, len(qids))
    adjusted = holm({language: p for language, (_, p, _) in raw.items()})
    return tuple(GainRow(language, gain, p, adjusted[language], n) for language, (gain, p, n) in raw.items())


def _group_gain(rows: Sequence[GainRow], group: Sequence[str], backbone: str, method: str, baseline: str,
                metric: str) -> float:
    """Mean gain over the low-resource group (every language of it must have a gain)."""
    by_language = {row.language: row.gain for row in rows}
    missing = [language for language in group if language not in by_language]
    if missing:
        raise ConsistencyError(f"backbone {backbone!r} lacks {method!r}/{baseline!r} {metric} results for {missing}")
    return float(np.mean([by_language[language] for language in group]))


def build_report(
    scores: Iterable[QueryScore],
    *,
    low_resource: Sequence[str],
    backbones: Sequence[str],
    baseline: str = "none",
    method: str = "ot",
    metric: str = "P@5",
    seed: int = 0,
    n_resamples: int = 10000,
    confidence: float = 0.95,
    costs: Mapping[str, StepCost] | None = None,
    resource_order: Sequence[str] = DEFAULT_RESOURCE_ORDER,
    title: str = "Scaling study: does a larger backbone change the OT-distillation gain on low-resource languages?",
    controls: Mapping[str, Mapping[str, str]] | None = None,
    seed_scores: SeedScores | None = None,
) -> Report:
    r"""Compute the study's tables, tests and answer from per-query results.

    All effectiveness numbers use the ``cross`` setting unless stated. For each backbone and
    language the gain is :math:`\frac{1}{|Q|}\sum_q (x_{\text{method},q} - x_{\text{baseline},q})`
    with a paired randomization test (:func:`~clir_ot.study.stats.paired_randomization_test`) and
    Holm's correction over that backbone's languages. The answer is
    :func:`~clir_ot.study.stats.gain_difference` for the smallest and the largest backbone (first
    and last of ``backbones``) on ``low_resource``; it is called *distinguishable from zero* iff
    its bootstrap interval excludes 0.

    Args:
        scores: per-query records (both settings, any metrics).
        low_resource: the low-resource language group, e.g. ``("th", "hi", "el")``.
        backbones: backbone names ordered from smaller to larger (at least two).
        baseline, method: the compared methods (``none`` = zero-shot teacher, ``ot``).
        metric: the metric of the answer and the gain tables.
        seed, n_resamples, confidence: of the randomization tests and of the bootstrap.
        costs: optional step name -> :class:`StepCost`.
        resource_order: languages from most to least pre-training data (table rows, plot x axis).
        title: heading of ``report.md``.
        controls: method -> {control kind: control method}: the control rule of
            :func:`alignment_verdicts`, stated per language in the report and, for ``method`` on the
            largest backbone, in the answer sentence.
        seed_scores: per-seed values (:data:`SeedScores`); with several seeds the report gives their
            spread and the answer's bootstrap resamples seeds as well as questions.

    Raises:
        ConfigError: fewer than two backbones, or a backbone, method, metric or low-resource
            language that the ``cross`` results do not have.
        ConsistencyError: method and baseline do not cover the same queries of a language.
    """
    grouped = _group(scores)
    chosen, group, cross_languages = _check_report_inputs(grouped, backbones, low_resource, baseline, method, metric)
    languages = _order_languages(cross_languages, resource_order)
    gains = {backbone: _language_gains(grouped, backbone, languages, method=method, baseline=baseline, metric=metric,
                                       n_resamples=n_resamples, seed=seed) for backbone in chosen}
    group_gains = {backbone: _group_gain(gains[backbone], group, backbone, method, baseline, metric)
                   for backbone in chosen}
    answer_scores = {
        (backbone, m, language): grouped[ScoreKey(backbone, m, language, CROSS, metric)]
        for backbone in (chosen[0], chosen[-1])
        for m in (baseline, method)
        for language in group
    }
    answer_seeds = None
    if seed_scores:
        answer_seeds = {(k.backbone, k.method, k.language): v for k, v in seed_scores.items()
                        if k.setting == CROSS and k.metric == metric and k.method == method}
    answer = gain_difference(answer_scores, backbones=(chosen[0], chosen[-1]), languages=group, method=method,
                             baseline=baseline, n_resamples=n_resamples, seed=seed, confidence=confidence,
                             seed_scores=answer_seeds)
    verdicts = alignment_verdicts(grouped, controls, baseline=baseline, metric=metric, n_resamples=n_resamples,
                                  seed=seed) if controls else ()
    seen_methods = list(dict.fromkeys(k.method for k in grouped))
    sentence = _answer_sentence(answer, group_gains, chosen, metric)
    if verdicts:
        sentence += " " + _control_sentence(verdicts, chosen[-1], method, group)
    report = Report(
        title=title,
        markdown="",
        sentence=sentence,
        answer=answer,
        means={k: float(np.mean(list(v.values()))) for k, v in grouped.items()},
        gains=gains,
        group_gains=group_gains,
        backbones=chosen + tuple(sorted({k.backbone for k in grouped} - set(chosen))),
        methods=tuple([baseline] + [m for m in seen_methods if m != baseline]),
        languages=languages,
        low_resource=group,
        resource_order=tuple(resource_order),
        metric=metric,
        method=method,
        baseline=baseline,
        grouped=grouped,
        costs=dict(costs or {}),
        n_resamples=n_resamples,
        seed=seed,
        verdicts=verdicts,
        spreads=seed_spreads(seed_scores, metric=metric) if seed_scores else (),
    )
    return replace(report, markdown=render_markdown(report))


def _control_sentence(verdicts: Sequence[AlignmentVerdict], backbone: str, method: str, group: Sequence[str]) -> str:
    """Where ``method``'s gain on ``backbone`` counts as alignment by the control rule, on ``group``."""
    mine = {v.language: v for v in verdicts if v.backbone == backbone and v.method == method and v.language in group}
    if not mine:
        return f"The control rule has no results for `{method}` on {backbone}."
    aligned = [lang for lang in group if lang in mine and mine[lang].alignment]
    missing = sorted({kind for v in mine.values() for kind in v.missing})
    if missing:
        return (f"Whether {_method_name(method)}'s gain is alignment cannot be decided: there are no results of "
                f"the {' and '.join(missing)} control.")
    where = ", ".join(aligned) if aligned else "none"
    no_bitext = {c.control for v in mine.values() for c in v.comparisons if c.kind == "no-bitext"}
    rule = ("beating the shuffled-bitext control and `none` itself, the no-bitext control of a student without a "
            "ranking term" if no_bitext == {"none"} else "beating the shuffled-bitext and no-bitext controls")
    return (f"By the control rule ({rule}, p < {ALPHA}, Holm), "
            f"{_method_name(method)}'s gain on {backbone} counts as alignment on {len(aligned)} of "
            f"{len(mine)} low-resource languages ({where}).")


def _answer_sentence(answer: GainDifference, group_gains: Mapping[str, float], backbones: Sequence[str], metric: str) -> str:
    small, large = answer.backbones
    parts = [f"{_signed(group_gains[b])} for {b}" for b in backbones]
    per_backbone = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    verdict = "which is distinguishable from zero" if answer.distinguishable_from_zero else (
        "which is not distinguishable from zero"
    )
    return (
        f"On the low-resource group ({', '.join(answer.languages)}), {_method_name(answer.method)} changes {metric} "
        f"relative to `{answer.baseline}` by {per_backbone}; the difference ({large} − {small}) is "
        f"{_signed(answer.difference)} ({round(answer.confidence * 100):d}% bootstrap CI {_signed(answer.low)} to "
        f"{_signed(answer.high)} over {answer.n_queries} queries), {verdict}."
    )


# --------------------------------------------------------------------------------------------------
# report.md: one function per section, each reading the one Report


def _columns_for(report: Report, setting: str, metric: str) -> list[tuple[str, str]]:
    return [
        (b, m)
        for b in report.backbones
        for m in report.methods
        if any(k.backbone == b and k.method == m and k.setting == setting and k.metric == metric for k in report.grouped)
    ]


def _answer_section(report: Report) -> list[str]:
    return [f"# {report.title}", "", "## Answer", "", report.sentence, "",
            f"Gain of a backbone = mean over the low-resource languages of the mean over queries of "
            f"({report.method} − {report.baseline}) {report.metric}, setting `{CROSS}`. The interval is a percentile "
            f"bootstrap ({report.answer.n_resamples} resamples, seed {report.seed}) that resamples query ids once for "
            f"all languages and both backbones, since the same question is asked in every language"
            + (f"; and, hierarchically, each backbone's training seeds of `{report.method}` "
               f"({', '.join(f'{b}: {n}' for b, n in report.answer.n_seeds.items())}), so that seeds that disagree "
               "widen it." if report.answer.resamples_seeds else "."),
            ""]


def _cross_tables(report: Report) -> list[str]:
    """One table per ``cross`` metric: languages x (backbone, method)."""
    metrics = _order_metrics(k.metric for k in report.grouped if k.setting == CROSS and k.metric != BIAS_METRIC)
    out = [f"## Cross-lingual retrieval (setting `{CROSS}`: English queries, documents of one language)", "",
           f"Low-resource group: {', '.join(report.low_resource)}. Rows ordered by `resource_order`: "
           f"{', '.join(report.resource_order)}.", ""]
    for metric in metrics:
        out += [f"### {metric}", ""]
        out += _metric_table(report.means, CROSS, metric, _columns_for(report, CROSS, metric), report.languages)
        out.append("")
    return out


def _gap_table(report: Report) -> list[str]:
    """Each language's metric minus English's, when English was evaluated."""
    metric = report.metric
    if not any(k.language == "en" and k.setting == CROSS and k.metric == metric for k in report.grouped):
        return []
    columns = _columns_for(report, CROSS, metric)
    rows = []
    for language in report.languages:
        if language == "en":
            continue
        cells = []
        for b, m in columns:
            here = report.means.get(ScoreKey(b, m, language, CROSS, metric))
            english = report.means.get(ScoreKey(b, m, "en", CROSS, metric))
            cells.append("—" if here is None or english is None else _signed(here - english))
        rows.append([language, *cells])
    out = [f"### Gap to English ({metric} of the language − {metric} of `en`)", ""]
    return out + _table(["language", *(f"{b} · {m}" for b, m in columns)], rows) + [""]


def _gain_tables(report: Report) -> list[str]:
    """Per backbone: the method's gain per language with its tests, and the low-resource mean."""
    out = [f"### Gain of `{report.method}` over `{report.baseline}` ({report.metric}, setting `{CROSS}`)", "",
           f"Paired randomization test (sign flips, {report.n_resamples} resamples or exact enumeration, two-sided); "
           "Holm-adjusted across the languages of each backbone.", ""]
    group = ", ".join(report.low_resource)
    for backbone, rows in report.gains.items():
        out += [f"**{backbone}**", ""]
        body = [[r.language, _signed(r.gain), f"{r.p_randomization:.4f}", f"{r.p_holm:.4f}", str(r.n_queries)] for r in rows]
        body.append([f"low-resource mean ({group})", _signed(report.group_gains[backbone]), "", "", ""])
        out += _table(["language", "gain", "p (randomization)", "p (Holm)", "queries"], body)
        out.append("")
    return out


def _pool_tables(report: Report) -> list[str]:
    """One table per ``pool`` metric (documents of all languages together)."""
    metrics = _order_metrics(k.metric for k in report.grouped if k.setting == POOL and k.metric != BIAS_METRIC)
    if not metrics:
        return []
    languages = _order_languages({k.language for k in report.grouped if k.setting == POOL}, report.resource_order)
    out = [f"## Multilingual pool (setting `{POOL}`: documents of all languages)", ""]
    for metric in metrics:
        out += [f"### {metric}", ""]
        out += _metric_table(report.means, POOL, metric, _columns_for(report, POOL, metric), languages)
        out.append("")
    return out


def _bias_tables(report: Report) -> list[str]:
    """The language bias (maximum rank distance) per setting that has it."""
    out: list[str] = []
    for setting in sorted({k.setting for k in report.grouped if k.metric == BIAS_METRIC}):
        languages = _order_languages({k.language for k in report.grouped
                                      if k.setting == setting and k.metric == BIAS_METRIC}, report.resource_order)
        out += [
            f"### Language bias (setting `{setting}`; mean over queries of the maximum rank distance between a "
            "query's parallel relevant documents; lower is better)",
            "",
        ]
        out += _metric_table(report.means, setting, BIAS_METRIC, _columns_for(report, setting, BIAS_METRIC), languages)
        out.append("")
    return out


def _cost_section(report: Report) -> list[str]:
    if not report.costs:
        return []
    names = list(dict.fromkeys(name for cost in report.costs.values() for name, _ in cost.cells()))
    rows = []
    for step, cost in report.costs.items():
        values = dict(cost.cells())
        rows.append([step, *(_fmt_cost(values.get(n)) for n in names)])
    return ["## Cost", ""] + _table(["step", *names], rows) + [""]


def _plots_section(report: Report) -> list[str]:
    return ["## Plots", "", f"![{report.metric} by language, method and backbone]({PLOT_METRIC})", "",
            f"![Gain of {report.method} over {report.baseline} by language]({PLOT_GAIN})", ""]


def _controls_section(report: Report) -> list[str]:
    return controls_markdown(report.verdicts, report.baseline)


def _seed_section(report: Report) -> list[str]:
    return seed_spread_markdown(report.spreads)


SECTIONS = (_answer_section, _cross_tables, _gap_table, _gain_tables, _controls_section, _seed_section,
            _pool_tables, _bias_tables, _cost_section, _plots_section)


def render_markdown(report: Report) -> str:
    """``report.md``: every section of :data:`SECTIONS`, in order, from the one report."""
    return "\n".join(line for section in SECTIONS for line in section(report))


# --------------------------------------------------------------------------------------------------
# Writing


def _save(figure, path: Path) -> None:
    with atomic_open(path, "wb") as handle:
        figure.savefig(handle, format="png", dpi=120, bbox_inches="tight")


def _plot(report: Report, folder: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    shown = [k for k in report.means if k.setting == CROSS and k.metric == report.metric]
    cross_methods = [m for m in report.methods if any(k.method == m for k in shown)]
    panels = [b for b in report.backbones if any(k.backbone == b for k in shown)]
    languages = list(report.languages)
    x = np.arange(len(languages))
    width = 0.8 / max(1, len(cross_methods))
    size = (max(6.0, 0.6 * len(languages) * len(panels) + 2), 4)
    figure, axes = plt.subplots(1, len(panels), figsize=size, sharey=True, squeeze=False)
    for axis, backbone in zip(axes[0], panels):
        for i, m in enumerate(cross_methods):
            heights = [report.means.get(ScoreKey(backbone, m, lang, CROSS, report.metric), math.nan) for lang in languages]
            axis.bar(x + (i - (len(cross_methods) - 1) / 2) * width, heights, width, label=m)
        axis.set_title(backbone)
        axis.set_xticks(x, languages)
        axis.set_xlabel("document language")
        for tick, lang in zip(axis.get_xticklabels(), languages):
            if lang in report.low_resource:
                tick.set_fontweight("bold")
    axes[0][0].set_ylabel(f"{report.metric} ({CROSS})")
    axes[0][-1].legend(title="method", fontsize="small")
    figure.suptitle(f"{report.metric} by language (bold: low-resource group)")
    _save(figure, folder / PLOT_METRIC)
    plt.close(figure)
    written.append(folder / PLOT_METRIC)

    order = [lang for lang in report.resource_order if lang in languages] + [
        lang for lang in languages if lang not in report.resource_order
    ]
    figure, axis = plt.subplots(figsize=(max(6.0, 0.6 * len(order) + 2), 4))
    positions = np.arange(len(order))
    for backbone, rows in report.gains.items():
        by_language = {r.language: r.gain for r in rows}
        axis.plot(positions, [by_language.get(lang, math.nan) for lang in order], marker="o", label=backbone)
    axis.axhline(0.0, color="grey", linewidth=0.8)
    for i, lang in enumerate(order):
        if lang in report.low_resource:
            axis.axvspan(i - 0.5, i + 0.5, color="0.9", zorder=0)
    axis.set_xticks(positions, order)
    axis.set_xlabel("document language (more → less pre-training data; shaded: low-resource group)")
    axis.set_ylabel(f"{report.metric}: {report.method} − {report.baseline}")
    axis.legend(title="backbone", fontsize="small")
    _save(figure, folder / PLOT_GAIN)
    plt.close(figure)
    written.append(folder / PLOT_GAIN)
    return written


@dataclass(frozen=True)
class GainInterval:
    """A method's mean gain over the baseline on one backbone, language and metric (mean over the
    language's queries of method − baseline) with its percentile-bootstrap interval over the queries."""

    backbone: str
    method: str
    language: str
    metric: str
    gain: float
    low: float
    high: float


def gain_intervals(grouped: Mapping[ScoreKey, Mapping[str, float]], *, backbone: str, metric: str,
                   methods: Sequence[str], languages: Sequence[str], baseline: str = "none",
                   n_resamples: int = 10000, seed: int = 0, confidence: float = 0.95) -> list[GainInterval]:
    """:class:`GainInterval` of every method of ``methods`` on every language where it and the baseline
    have results (setting ``cross``)."""
    out = []
    for lang in languages:
        base = grouped.get(ScoreKey(backbone, baseline, lang, CROSS, metric))
        for method in methods:
            treated = grouped.get(ScoreKey(backbone, method, lang, CROSS, metric))
            if not (base and treated):
                continue
            a, b = paired_values(treated, base, f"{metric} of {backbone!r}/{lang!r}: {method!r} and {baseline!r}")
            difference = a - b
            gain, low, high = bootstrap_ci(lambda idx: difference[idx].mean(axis=-1), len(difference),
                                           n_resamples=n_resamples, seed=seed, confidence=confidence, vectorized=True)
            out.append(GainInterval(backbone, method, lang, metric, gain, low, high))
    return out


def plot_method_gains(intervals: Sequence[GainInterval], path: Path, *, groups: Mapping[str, Sequence[str]],
                      baseline: str = "none", confidence: float = 0.95) -> Path:
    """One point per method and language: the gain over ``baseline`` with its interval as an error bar;
    languages grouped by resource level (``groups``: name -> languages, separated by dashed lines);
    controls (``*-shuffled``) drawn hollow beside their methods."""
    import matplotlib  # the plots are the only user of matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_place = {(g.method, g.language): g for g in intervals}
    methods = list(dict.fromkeys(g.method for g in intervals))
    order = [lang for langs in groups.values() for lang in langs if any(g.language == lang for g in intervals)]
    x = np.arange(len(order))
    width = 0.8 / max(1, len(methods))
    figure, axis = plt.subplots(figsize=(max(6.0, 0.45 * len(order) * max(1, len(methods)) / 2 + 2), 4))
    for i, method in enumerate(methods):
        shown = [(k, by_place[(method, lang)]) for k, lang in enumerate(order) if (method, lang) in by_place]
        if not shown:
            continue
        positions = np.array([k for k, _ in shown]) + (i - (len(methods) - 1) / 2) * width
        gains = np.array([g.gain for _, g in shown])
        errors = np.array([[g.gain - g.low for _, g in shown], [g.high - g.gain for _, g in shown]])
        control = method.endswith("-shuffled")
        axis.errorbar(positions, gains, yerr=errors, fmt="o", markersize=4, capsize=2, label=method,
                      markerfacecolor="none" if control else None)
    axis.axhline(0.0, color="grey", linewidth=0.8)
    boundary = 0
    for langs in list(groups.values())[:-1]:
        boundary += sum(lang in order for lang in langs)
        axis.axvline(boundary - 0.5, color="grey", linestyle="--", linewidth=0.8)
    axis.set_xticks(x, order)
    names = " | ".join(groups)
    axis.set_xlabel(f"document language ({names}, left to right)")
    metric = intervals[0].metric if intervals else ""
    axis.set_ylabel(f"{metric}: method − {baseline}")
    axis.set_title(f"Gain over {baseline} per language, {round(confidence * 100)}% bootstrap intervals over queries "
                   "(hollow: shuffled-bitext controls)", fontsize="medium")
    # beside the axes, never over a point (a collapsed control sits in any corner)
    axis.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.005, 1.0), borderaxespad=0.0)
    _save(figure, path)
    plt.close(figure)
    return path


def write_report(folder: str | Path, report: Report, scores: Iterable[QueryScore]) -> list[Path]:
    """Write ``report.md``, ``results.csv`` and the PNG plots into ``folder``; returns their paths.

    Plots: ``metric_by_language.png`` (the report's metric per language, one panel per backbone,
    one bar per method) and ``gain_by_language.png`` (gain of the method over the baseline per
    language in ``resource_order``, one line per backbone). Every file is written atomically.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = [write_results_csv(folder / "results.csv", scores)]
    written += _plot(report, folder)
    with atomic_open(folder / "report.md") as handle:
        handle.write(report.markdown)
    written.append(folder / "report.md")
    logger.info("report written to %s: %s", folder, report.sentence)
    return written
