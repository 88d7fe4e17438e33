"""Evaluate a study's finished runs per query and write ``results.csv``, ``report.md`` and plots.

Settings:

* ``cross`` -- English questions against one language's paragraphs (one relevant paragraph each);
  the study's measures (default P@5, Success@5, RR@10) per query by :func:`clir_ot.evaluation.evaluate`
  (trec_eval semantics).
* ``pool`` -- English questions against the paragraphs of all the study's evaluated languages
  together (one relevant paragraph per language). The pool ranking of a backbone and method merges
  its reranked per-language lists by score (languages without a student -- English -- keep the
  teacher's list), so P@5 is no longer capped at 0.2; language bias is the maximum rank distance
  between a question's parallel relevant paragraphs (:func:`clir_ot.study.stats.max_rank_distance`).

Every table of a study comes from one list of :class:`~clir_ot.study.report.QueryScore` records:
the two-or-more-backbone report of :func:`clir_ot.study.report.build_report`, and
:func:`compare_methods` (every method beside ``none``, with paired tests) rendered by
:func:`comparison_markdown`.
"""
from __future__ import annotations

import hashlib
import json
import logging
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, NamedTuple, Sequence

import numpy as np

from clir_ot.evaluation import evaluate, parse_measure
from clir_ot.formats import atomic_open, iter_run_by_query, load_run, read_qrels
from clir_ot.study.config import BASELINE_METHOD, DEFAULT_MEASURES, NO_BITEXT_CONTROL, StudyConfig
from clir_ot.study.plan import Step, StudyPlan
from clir_ot.study.report import (
    ALPHA,
    PLOT_METHOD_GAINS,
    QueryScore,
    ScoreKey,
    StepCost,
    alignment_verdicts,
    build_report,
    controls_markdown,
    gain_intervals,
    paired_values,
    plot_method_gains,
    seed_spread_markdown,
    seed_spreads,
    write_report,
    write_results_csv,
)
from clir_ot.study.stats import holm, max_rank_distance, paired_randomization_test

logger = logging.getLogger(__name__)

__all__ = ["ComparisonCell", "HeadToHead", "StudyScores", "collect_scores", "compare_methods", "comparison_markdown",
           "evaluate_study", "head_to_head", "merge_language_runs", "resource_group_markdown", "resource_groups",
           "study_controls", "write_study_report"]

MEASURES = DEFAULT_MEASURES
REUSED_NOTE = "reused from clir-ot xquad-teacher"
REUSED_STUDENT_NOTE = "reused from clir-ot xquad-dense-students"


class RunKey(NamedTuple):
    """Which run: a backbone, a method and a document language."""

    backbone: str
    method: str
    language: str


class MetricKey(NamedTuple):
    backbone: str
    method: str
    language: str
    metric: str


# --------------------------------------------------------------------------------------------------
# scores and costs


def _reused_model_cost(step: Step) -> StepCost | None:
    """The cost a reused teacher or student recorded in its ``training.json``."""
    manifest = _training_manifest(step.model)
    if not manifest:
        return None
    note = REUSED_NOTE if step.kind == "teacher" else REUSED_STUDENT_NOTE
    return StepCost(manifest["time"].get("wall_s"), manifest["time"].get("examples_per_s"), "examples/s", note)


def _artifact_cost(step: Step) -> StepCost:
    record = step.artifact.record()
    if step.kind in ("teacher", "student"):
        return StepCost(record.get("wall_s"), record.get("examples_per_s"), "examples/s")
    if step.kind == "rerank":
        return StepCost(record.get("wall_s"), record.get("pairs_per_s"), "pairs/s",
                        REUSED_NOTE if record.get("imported_from") else None)
    if step.kind == "search":
        return StepCost(record.get("wall_s"), record.get("passages_per_s"), "passages/s")
    return StepCost(record.get("wall_s"))


def collect_costs(plan: StudyPlan) -> dict[str, StepCost]:
    """The cost of every finished step (and of reused teachers, from their ``training.json``)."""
    costs: dict[str, StepCost] = {}
    for step in plan.order():
        if step.artifact is None and step.kind in ("teacher", "student"):  # reused: cost in its training.json
            cost = _reused_model_cost(step)
            if cost is not None:
                costs[step.id] = cost
        elif step.artifact is not None and step.done:
            costs[step.id] = _artifact_cost(step)
    return costs


def _run_steps(plan: StudyPlan) -> Iterable[Step]:
    """The finished steps that produce an evaluated run (reranked, searched, or the baseline's own)."""
    return (s for s in plan.order() if s.run is not None and s.done)


@dataclass(frozen=True)
class StudyScores:
    """A study's evaluation: per-query ``scores`` (a question's value averaged over a method's seeds,
    both settings), the per-seed values of the ``cross`` setting (:data:`~clir_ot.study.report.SeedScores`:
    ``ScoreKey -> {seed: {qid: value}}``, students only) and the ``costs`` of the finished steps."""

    scores: list[QueryScore]
    seed_scores: dict[ScoreKey, dict[int, dict[str, float]]]
    costs: dict[str, StepCost]


def evaluate_study(plan: StudyPlan) -> StudyScores:
    """Evaluate every finished run of ``plan`` per query (see :class:`StudyScores`)."""
    config = plan.config
    measures = list(config.measures)
    parsed = [parse_measure(m) for m in measures]
    per_seed: dict[MetricKey, dict[int | None, dict[str, float]]] = defaultdict(dict)
    runs: dict[RunKey, list[Path]] = defaultdict(list)
    for step in _run_steps(plan):
        cell = step.cell
        qrels = read_qrels(plan.layout.collection.qrels(cell.language))
        result = evaluate(qrels, load_run(step.run), parsed, name=step.id)
        for metric in measures:
            per_seed[MetricKey(cell.backbone.name, cell.method.name, cell.language, metric)][cell.seed] = {
                q: v[metric] for q, v in result.per_query.items()}
        runs[RunKey(cell.backbone.name, cell.method.name, cell.language)].append(step.run)
    scores = []
    seed_scores: dict[ScoreKey, dict[int, dict[str, float]]] = {}
    for key, seeds in per_seed.items():
        values = list(seeds.values())
        for qid in values[0]:
            value = float(np.mean([s[qid] for s in values]))
            scores.append(QueryScore(key.backbone, key.method, key.language, "cross", key.metric, qid, value))
        if None not in seeds:  # students: one run per seed (``none`` has no seed)
            seed_scores[ScoreKey(key.backbone, key.method, key.language, "cross", key.metric)] = dict(seeds)
    if config.pool:
        scores += _pool_scores(plan, runs)
    return StudyScores(scores, seed_scores, collect_costs(plan))


def collect_scores(plan: StudyPlan) -> tuple[list[QueryScore], dict[str, StepCost]]:
    """Per-query scores of every finished run (seeds averaged per query), and the costs."""
    evaluated = evaluate_study(plan)
    return evaluated.scores, evaluated.costs


def study_controls(config: StudyConfig) -> dict[str, dict[str, str]]:
    """method -> {control kind: control method} for every distillation method that has a control.

    Without a ranking term (``rank_weight`` 0, as for every dense student), the no-bitext control --
    the same steps of the ranking term alone -- trains nothing: it *is* the unchanged model, the
    baseline ``none``. So in a study with controls such a method's no-bitext control is the baseline,
    and the control rule asks its gain over ``none`` to be significant beside beating its shuffled control.
    """
    out = {}
    for method in config.methods:
        controls = config.controls_of(method)
        if not controls:
            continue
        rank_weight = config.distill_settings(method, config.seeds[0])[1].rank_weight
        if NO_BITEXT_CONTROL not in controls and not rank_weight:
            controls = {**controls, NO_BITEXT_CONTROL: BASELINE_METHOD}
        out[method.name] = controls
    return out


def training_manifest(model: Path) -> dict | None:
    """The ``training.json`` of a model folder (or of the run folder a ``best/`` model sits in)."""
    return _training_manifest(model)


def _training_manifest(model: Path) -> dict | None:
    for folder in (model, model.parent):
        if (folder / "training.json").is_file():
            return json.loads((folder / "training.json").read_text(encoding="utf-8"))
    return None


def merge_language_runs(paths: Sequence[Path], depth: int) -> dict[str, list[str]]:
    """Merge per-language runs of the same queries into one ranking per query (the ``pool`` setting).

    Each run contributes its top ``depth``; documents are ordered by score, and score ties -- common
    across languages when a reranker scores in bf16 (about three significant digits) -- are broken by
    each document's rank in its own run, then by a hash of ``(qid, docid)``: never by the docid itself,
    whose language prefix would otherwise rank one language first (trec_eval breaks ties by docid).
    """
    entries: dict[str, list[tuple[float, int, str, str]]] = defaultdict(list)
    for path in paths:
        for qid, hits in iter_run_by_query(path):
            ordered = sorted(hits, key=lambda h: (-h.score, h.rank))[:depth]
            for own_rank, hit in enumerate(ordered, 1):
                neutral = hashlib.sha1(f"{qid}\t{hit.docid}".encode()).hexdigest()
                entries[qid].append((-hit.score, own_rank, neutral, hit.docid))
    return {qid: [docid for *_, docid in sorted(items)] for qid, items in entries.items()}


def _pool_qrels(plan: StudyPlan) -> dict[str, dict[str, int]]:
    pool: dict[str, dict[str, int]] = defaultdict(dict)
    for lang in plan.config.evaluated_languages:
        for qid, docs in read_qrels(plan.layout.collection.qrels(lang)).items():
            pool[qid].update(docs)
    return pool


def _pool_lists(config: StudyConfig, runs: dict[RunKey, list[Path]], backbone: str, method: str) -> list[Path] | None:
    """The per-language runs pooled for one backbone and method (first seed; ``none`` where the method
    has no run of a language), or ``None`` while a language has no run at all."""
    lists = []
    for lang in config.evaluated_languages:
        chosen = runs.get(RunKey(backbone, method, lang)) or runs.get(RunKey(backbone, BASELINE_METHOD, lang))
        if not chosen:
            return None
        lists.append(chosen[0])  # the first seed's run
    return lists


def _pool_scores(plan: StudyPlan, runs: dict[RunKey, list[Path]]) -> list[QueryScore]:
    config = plan.config
    languages = config.evaluated_languages
    pool_qrels = _pool_qrels(plan)
    measures = list(config.measures)
    parsed = [parse_measure(m) for m in measures]
    out: list[QueryScore] = []
    for backbone in config.backbones:
        for method in config.methods:
            if not any(RunKey(backbone.name, method.name, lang) in runs for lang in languages):
                continue  # nothing of this method is finished yet
            lists = _pool_lists(config, runs, backbone.name, method.name)
            if lists is None:
                continue
            ranked = merge_language_runs(lists, depth=config.depth)
            # distinct scores from the merged order, so trec_eval's docid tie-break cannot reorder it
            run = {q: {d: float(len(docids) - i) for i, d in enumerate(docids)} for q, docids in ranked.items()}
            result = evaluate(pool_qrels, run, parsed, name=f"pool {backbone.name}/{method.name}")
            for qid, values in result.per_query.items():
                for metric in measures:
                    out.append(QueryScore(backbone.name, method.name, "all", "pool", metric, qid, values[metric]))
            relevant = {q: {d for d, g in docs.items() if g > 0} for q, docs in pool_qrels.items() if q in ranked}
            bias = max_rank_distance(ranked, relevant, depth=config.depth * len(languages))
            out += [QueryScore(backbone.name, method.name, "all", "pool", "bias", q, float(v)) for q, v in bias.items()]
    return out


# --------------------------------------------------------------------------------------------------
# every method beside the baseline


@dataclass(frozen=True)
class ComparisonCell:
    """One cell of the side-by-side comparison: a method's mean over questions on one backbone,
    language and metric; for a method other than the baseline its mean difference to the baseline and
    the paired randomization p-value, Holm-adjusted across the languages (``None`` for the baseline)."""

    backbone: str
    metric: str
    language: str
    method: str
    mean: float
    diff: float | None = None
    p_holm: float | None = None

    @property
    def significant(self) -> bool:
        return self.p_holm is not None and self.p_holm < ALPHA


def _cross_table(scores: Iterable[QueryScore]) -> dict[MetricKey, dict[str, float]]:
    table: dict[MetricKey, dict[str, float]] = defaultdict(dict)
    for s in scores:
        if s.setting == "cross":
            table[MetricKey(s.backbone, s.method, s.language, s.metric)][s.qid] = s.value
    return table


def _method_cells(table: dict[MetricKey, dict[str, float]], backbone: str, method: str, metric: str,
                  baseline: str, languages: Sequence[str], n_resamples: int, seed: int) -> list[ComparisonCell]:
    """``method`` against ``baseline`` on every language of one backbone and metric (Holm across them)."""
    raw = {}
    for lang in languages:
        a, b = table.get(MetricKey(backbone, method, lang, metric)), table.get(MetricKey(backbone, baseline, lang, metric))
        if a and b:
            qids = sorted(set(a) & set(b))
            x = np.array([a[q] for q in qids]); y = np.array([b[q] for q in qids])
            raw[lang] = (float(x.mean()), float((x - y).mean()),
                         paired_randomization_test(x, y, n_resamples=n_resamples, seed=seed))
    adjusted = holm({l: p for l, (_, _, p) in raw.items()}) if raw else {}
    return [ComparisonCell(backbone, metric, lang, method, mean, diff, adjusted[lang])
            for lang, (mean, diff, _) in raw.items()]


def compare_methods(scores: Iterable[QueryScore], *, baseline: str = BASELINE_METHOD, languages: Sequence[str],
                    measures: Sequence[str] = MEASURES, methods: Sequence[str] | None = None,
                    n_resamples: int = 10000, seed: int = 0) -> list[ComparisonCell]:
    """Every method beside ``baseline`` per backbone, language and metric (setting ``cross``), with the
    paired randomization test against ``baseline`` Holm-adjusted across the languages of a backbone,
    method and metric. ``methods`` orders the methods (default: alphabetical after the baseline)."""
    table = _cross_table(scores)
    backbones = list(dict.fromkeys(k.backbone for k in table))
    seen = {k.method for k in table} - {baseline}
    order = [m for m in methods if m in seen] if methods is not None else sorted(seen)
    cells: list[ComparisonCell] = []
    for backbone in backbones:
        for metric in measures:
            for lang in languages:
                base = table.get(MetricKey(backbone, baseline, lang, metric))
                if base:
                    cells.append(ComparisonCell(backbone, metric, lang, baseline, float(np.mean(list(base.values())))))
            for method in order:
                cells += _method_cells(table, backbone, method, metric, baseline, languages, n_resamples, seed)
    return cells


def _cell_text(cell: ComparisonCell | None) -> str:
    if cell is None:
        return ""
    if cell.diff is None:
        return f"{cell.mean:.4f}"
    mark = "**" if cell.significant else ""
    return f"{mark}{cell.mean:.4f} ({cell.diff:+.4f}, p={cell.p_holm:.3f}){mark}"


def comparison_tables(cells: Sequence[ComparisonCell], *, baseline: str = BASELINE_METHOD,
                      languages: Sequence[str], heading: str = "### {backbone}: {metric}") -> list[str]:
    """One markdown table per backbone and metric of :func:`compare_methods`' cells: a row per
    language, the baseline's mean, then ``mean (difference, p(Holm))`` per method; ``**`` p < 0.05."""
    by_place = {(c.backbone, c.metric, c.language, c.method): c for c in cells}
    lines: list[str] = []
    for backbone in dict.fromkeys(c.backbone for c in cells):
        for metric in dict.fromkeys(c.metric for c in cells if c.backbone == backbone):
            present = [baseline] + list(dict.fromkeys(
                c.method for c in cells if c.backbone == backbone and c.metric == metric and c.method != baseline))
            lines += [heading.format(backbone=backbone, metric=metric), "",
                      "| language | " + " | ".join(present) + " |", "|---|" + "---|" * len(present)]
            for lang in languages:
                row = [_cell_text(by_place.get((backbone, metric, lang, m))) for m in present]
                lines.append(f"| {lang} | " + " | ".join(row) + " |")
            lines.append("")
    return lines


def comparison_markdown(cells: Sequence[ComparisonCell], *, baseline: str = BASELINE_METHOD,
                        languages: Sequence[str], n_resamples: int) -> str:
    """The report's "Methods side by side" section."""
    lines = ["## Methods side by side (setting `cross`)", "",
             f"Each cell: mean over questions; for a method, its difference to `{baseline}` and the two-sided paired "
             f"randomization p-value ({n_resamples} sign flips), Holm-adjusted across languages; ** p(Holm) < 0.05.",
             ""]
    return "\n".join(lines + comparison_tables(cells, baseline=baseline, languages=languages))


@dataclass(frozen=True)
class HeadToHead:
    """Two methods on one backbone, metric and language group: the mean over the group's questions of
    ``method`` − ``other`` (each question of each language once), the paired randomization p-value over
    those questions, and how many of the group's languages have each method significantly above the
    baseline (p(Holm) < 0.05, from the comparison cells)."""

    backbone: str
    metric: str
    group: str
    method: str
    other: str
    languages: tuple[str, ...]
    n_queries: int
    difference: float
    p: float


def resource_groups(config: StudyConfig) -> dict[str, tuple[str, ...]]:
    """The evaluated languages by resource level: the config's ``low_resource`` group and the rest."""
    low = tuple(lang for lang in config.evaluated_languages if lang in config.low_resource)
    rest = tuple(lang for lang in config.evaluated_languages if lang not in config.low_resource)
    return {name: langs for name, langs in (("low-resource", low), ("other", rest)) if langs}


def head_to_head(scores: Iterable[QueryScore], *, backbone: str, metric: str, group: str, languages: Sequence[str],
                 method: str, other: str, n_resamples: int = 10000, seed: int = 0) -> HeadToHead | None:
    """``method`` against ``other`` over every question of ``languages`` (``None`` when either lacks them)."""
    table = _cross_table(scores)
    treated, control, used = [], [], []
    for lang in languages:
        a, b = table.get(MetricKey(backbone, method, lang, metric)), table.get(MetricKey(backbone, other, lang, metric))
        if not (a and b):
            continue
        x, y = paired_values(a, b, f"{metric} of {backbone!r}/{lang!r}: {method!r} and {other!r}")
        treated.append(x)
        control.append(y)
        used.append(lang)
    if not used:
        return None
    x, y = np.concatenate(treated), np.concatenate(control)
    return HeadToHead(backbone, metric, group, method, other, tuple(used), len(x), float((x - y).mean()),
                      paired_randomization_test(x, y, n_resamples=n_resamples, seed=seed))


def resource_group_markdown(scores: Sequence[QueryScore], cells: Sequence[ComparisonCell], *,
                            groups: Mapping[str, Sequence[str]], methods: Sequence[str], metric: str,
                            baseline: str = BASELINE_METHOD, n_resamples: int = 10000, seed: int = 0) -> list[str]:
    """The report's resource-level section: per backbone and group, each method's mean over the group's
    languages (of the per-language means), its difference to ``baseline`` and in how many languages that
    difference is significant; then every two distillation methods (``methods``, in config order, the
    controls left out) head to head over the group's questions."""
    by_place = {(c.backbone, c.language, c.method): c for c in cells if c.metric == metric}
    backbones = list(dict.fromkeys(c.backbone for c in cells if c.metric == metric))
    if not backbones:
        return []
    out = [f"## By resource level ({metric}, setting `cross`)", "",
           f"Each cell: a method's mean over the group's languages (of the per-language means), its difference to "
           f"`{baseline}` over the same languages, in how many of them that difference is significant (p(Holm) < "
           f"{ALPHA}, up / down), and of how many languages (a study still running has fewer for some methods).", ""]
    present = [m for m in methods if any(c.method == m for c in cells if c.metric == metric)]
    rows = []
    for backbone in backbones:
        for name, langs in groups.items():
            base = [by_place[(backbone, lang, baseline)].mean for lang in langs if (backbone, lang, baseline) in by_place]
            row = [backbone, name, f"{float(np.mean(base)):.4f} ({len(base)})" if base else ""]
            for m in present:
                found = [by_place[(backbone, lang, m)] for lang in langs if (backbone, lang, m) in by_place]
                if not found:
                    row.append("")
                    continue
                up = sum(c.significant and c.diff > 0 for c in found)
                down = sum(c.significant and c.diff < 0 for c in found)
                row.append(f"{float(np.mean([c.mean for c in found])):.4f} "
                           f"({float(np.mean([c.diff for c in found])):+.4f}; {up} up / {down} down; of {len(found)})")
            rows.append(row)
    header = ["backbone", "group", f"{baseline} (languages)", *present]
    out += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(r) + " |" for r in rows] + [""]
    compared = [h for backbone in backbones for name, langs in groups.items()
                for i, first in enumerate(methods) for second in methods[i + 1:]
                if (h := head_to_head(scores, backbone=backbone, metric=metric, group=name, languages=langs,
                                      method=second, other=first, n_resamples=n_resamples, seed=seed))]
    if compared:
        out += ["Head to head: the mean over every question of the group's languages of the first method minus "
                f"the second, and its two-sided paired randomization p ({n_resamples} sign flips, not adjusted).", "",
                "| backbone | group | comparison | questions | difference | p |", "|---|---|---|---|---|---|"]
        out += [f"| {h.backbone} | {h.group} | {h.method} − {h.other} | {h.n_queries} | {h.difference:+.4f} | {h.p:.3f} |"
                for h in compared]
        out.append("")
    return out


# --------------------------------------------------------------------------------------------------
# report.md


def _pool_table(config: StudyConfig, scores: Sequence[QueryScore]) -> list[str]:
    pool = [s for s in scores if s.setting == "pool"]
    if not pool:
        return []
    measures = list(config.measures)
    lines = ["## Multilingual pool (setting `pool`)", "",
             "| backbone | method | " + " | ".join(measures) + " | bias (max rank distance) |",
             "|---|---|" + "---|" * (len(measures) + 1)]
    means: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    for s in pool:
        means[(s.backbone, s.method, s.metric)].append(s.value)
    for backbone in config.backbones:
        for method in config.methods:
            if (backbone.name, method.name, measures[0]) in means:
                cells = [f"{np.mean(means[(backbone.name, method.name, m)]):.4f}" for m in (*measures, "bias")]
                lines.append(f"| {backbone.name} | {method.name} | " + " | ".join(cells) + " |")
    return lines + [""]


def _cost_table(costs: dict[str, StepCost]) -> list[str]:
    if not costs:
        return []
    lines = ["## Cost", "", "| step | wall s | examples/s or pairs/s | note |", "|---|---|---|---|"]
    for step, cost in costs.items():
        wall = cost.wall_s
        lines.append(f"| {step} | {wall if wall is None else round(float(wall))} | "
                     f"{'' if cost.rate is None else f'{float(cost.rate):.2f}'} | {cost.note or ''} |")
    return lines + [""]


def reranked_description(config: StudyConfig) -> str:
    """What the study's rerankers read, for its report (``reranked_run``)."""
    if config.reranked_run == "bm25-qt":
        return ("BM25-QT (Pyserini BM25 over each language's paragraphs with the question in that language, "
                "`run.xquad.bm25.mono.<L>-<L>.txt`; the rerankers read the English question)")
    return f"first stage `{config.first_stage}`"


def _single_backbone_report(plan: StudyPlan, scores: Sequence[QueryScore], costs: dict[str, StepCost],
                            comparison: str, extra: Sequence[str] = ()) -> str:
    """``report.md`` of a study with fewer than two finished backbones: the comparison, pool and cost."""
    config = plan.config
    backbones = ", ".join(b.name for b in config.backbones)
    if config.probe:
        setting = (f"the Tatoeba sentence-retrieval probe of `{config.baseline}`: each language's English test-half "
                   "sentences search its test-half sentences, encoded by each student (distilled on the other half); "
                   f"`{BASELINE_METHOD}` is the zero-shot run")
    elif all(b.dense for b in config.backbones):
        setting = (f"dense students of the first stage `{config.first_stage}`: each language's paragraphs encoded by "
                   f"its student and searched with the English query encoder (nothing reranked; no folds)")
    else:
        folds = f"cross-fitted over {len(plan.folds)} article folds" if plan.folds else "no folds"
        setting = f"{reranked_description(config)} reranked to depth {config.depth}; {folds}"
    lines = [f"# Study `{config.name}`", "", f"Config: `{config.path}`. Backbones: {backbones}; {setting}.", "",
             comparison, "", *extra]
    return "\n".join(lines + _pool_table(config, scores) + _cost_table(costs))


def _method_gains_plot(plan: StudyPlan, grouped: Mapping[ScoreKey, Mapping[str, float]], metric: str) -> list[str]:
    """Write the one-backbone report's gain plot (every method and control per language, with intervals)
    and return the report lines that show it."""
    config = plan.config
    methods = [m.name for m in config.methods if not m.is_baseline]
    for backbone in config.backbones:  # the first backbone with results (a one-backbone report)
        intervals = gain_intervals(grouped, backbone=backbone.name, metric=metric, methods=methods,
                                   languages=config.evaluated_languages, n_resamples=config.n_resamples)
        if intervals:
            break
    else:
        return []
    plot_method_gains(intervals, plan.root / PLOT_METHOD_GAINS, groups=resource_groups(config))
    return [f"![{metric} gain over none per language, 95% intervals]({PLOT_METHOD_GAINS})", ""]


def write_study_report(plan: StudyPlan) -> Path:
    """Evaluate and write ``results.csv``, ``report.md`` (and plots, with two or more backbones)."""
    config = plan.config
    evaluated = evaluate_study(plan)
    scores, costs, seed_scores = evaluated.scores, evaluated.costs, evaluated.seed_scores
    controls = study_controls(config)
    root = plan.root
    root.mkdir(parents=True, exist_ok=True)
    if not scores:
        logger.warning("no finished runs to evaluate yet")
        return root
    backbones = [b.name for b in config.backbones]
    done_backbones = [b for b in backbones if any(s.backbone == b and s.method == "ot" for s in scores)]
    cells = compare_methods(scores, languages=config.evaluated_languages, measures=config.measures,
                            n_resamples=config.n_resamples)
    comparison = comparison_markdown(cells, languages=config.evaluated_languages, n_resamples=config.n_resamples)
    kwargs = {"resource_order": config.resource_order} if config.resource_order else {}
    if len(done_backbones) >= 2:
        report = build_report(scores, low_resource=config.low_resource, backbones=done_backbones,
                              costs=costs, n_resamples=config.n_resamples, controls=controls or None,
                              seed_scores=seed_scores, **kwargs)
        write_report(root, report, scores)
        text = (root / "report.md").read_text(encoding="utf-8")
        with atomic_open(root / "report.md") as handle:
            reranked = ("" if config.reranked_run == "dense"
                        else f"Reranked: {reranked_description(config)}, to depth {config.depth}.\n\n")
            handle.write(text.rstrip() + "\n\n" + reranked + comparison + "\n")
        logger.info("answer: %s", report.sentence)
    else:
        write_results_csv(root / "results.csv", scores)
        metric = config.measures[0]
        grouped: dict[ScoreKey, dict[str, float]] = defaultdict(dict)
        for s in scores:
            grouped[ScoreKey(s.backbone, s.method, s.language, s.setting, s.metric)][s.qid] = s.value
        verdicts = alignment_verdicts(grouped, controls, metric=metric, n_resamples=config.n_resamples) if controls else ()
        distilled = [m.name for m in config.methods if not (m.is_baseline or m.is_control)]
        groups = resource_group_markdown(scores, cells, groups=resource_groups(config), methods=distilled,
                                         metric=metric, n_resamples=config.n_resamples)
        plot = _method_gains_plot(plan, grouped, metric)
        extra = groups + plot + controls_markdown(verdicts) + seed_spread_markdown(seed_spreads(seed_scores, metric=metric))
        with atomic_open(root / "report.md") as handle:
            handle.write(_single_backbone_report(plan, scores, costs, comparison, extra))
    logger.info("report: %s", root / "report.md")
    return root / "report.md"
