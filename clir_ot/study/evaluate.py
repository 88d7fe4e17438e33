"""Evaluate a study's finished runs per query and write ``results.csv``, ``report.md`` and plots.

Settings:

* ``cross`` -- English questions against one language's paragraphs (one relevant paragraph each);
  P@5, Success@5, RR@10 per query by :func:`clir_ot.evaluation.evaluate` (trec_eval semantics).
* ``pool`` -- English questions against the paragraphs of all the study's evaluated languages
  together (one relevant paragraph per language). The pool ranking of a backbone and method merges
  its reranked per-language lists by score (languages without a student -- English -- keep the
  teacher's list), so P@5 is no longer capped at 0.2; language bias is the maximum rank distance
  between a question's parallel relevant paragraphs (:func:`clir_ot.study.stats.max_rank_distance`).
"""
from __future__ import annotations

import logging
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from clir_ot.formats import atomic_open
from clir_ot.study.config import BASELINE_METHOD
from clir_ot.study.report import QueryScore, build_report, write_report, write_results_csv
from clir_ot.study.stats import holm, max_rank_distance, paired_randomization_test

logger = logging.getLogger(__name__)

__all__ = ["collect_scores", "method_comparison", "write_study_report"]

MEASURES = ("P@5", "Success@5", "RR@10")


def collect_scores(plan) -> tuple[list[QueryScore], dict[str, dict[str, Any]]]:
    """Per-query scores of every finished reranked run (seeds averaged per query), and the costs."""
    from clir_ot.evaluation import evaluate, parse_measure
    from clir_ot.formats import load_run, read_qrels

    config = plan.config
    collection = config.baseline / "collection"
    measures = [parse_measure(m) for m in MEASURES]
    per_seed: dict[tuple[str, str, str, str], list[dict[str, float]]] = defaultdict(list)
    runs: dict[tuple[str, str, str], list[Path]] = defaultdict(list)
    costs: dict[str, dict[str, Any]] = {}
    for step in plan.order():
        if step.artifact is None and step.kind == "teacher":  # reused: its cost is in its training.json
            manifest = _training_manifest(step.model)
            if manifest:
                costs[step.id] = {"wall_s": manifest["time"].get("wall_s"),
                                  "examples/s": manifest["time"].get("examples_per_s"),
                                  "note": "reused from clir-ot xquad-teacher"}
        if step.artifact is not None and step.done and step.kind in ("teacher", "student", "rerank", "backbone"):
            record = step.artifact.record()
            row = {"wall_s": record.get("wall_s")}
            if step.kind in ("teacher", "student"):
                row["examples/s"] = record.get("examples_per_s")
            if step.kind == "rerank":
                row["pairs/s"] = record.get("pairs_per_s")
                if record.get("imported_from"):
                    row["note"] = "reused from clir-ot xquad-teacher"
            costs[step.id] = row
        if step.kind != "rerank" or not step.done:
            continue
        backbone, method, lang = step.meta["backbone"].name, step.meta["method"].name, step.meta["language"]
        qrels = read_qrels(collection / f"qrels.xquad.cross.{lang}.txt")
        result = evaluate(qrels, load_run(step.run), measures, name=step.id)
        for metric in MEASURES:
            per_seed[(backbone, method, lang, metric)].append({q: v[metric] for q, v in result.per_query.items()})
        runs[(backbone, method, lang)].append(step.run)
    scores = []
    for (backbone, method, lang, metric), seeds in per_seed.items():
        for qid in seeds[0]:
            value = float(np.mean([s[qid] for s in seeds]))
            scores.append(QueryScore(backbone, method, lang, "cross", metric, qid, value))
    if config.pool:
        scores += _pool_scores(plan, runs)
    return scores, costs


def _training_manifest(model: Path) -> dict[str, Any] | None:
    import json

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
    import hashlib

    from clir_ot.formats import iter_run_by_query

    entries: dict[str, list[tuple[float, int, str, str]]] = defaultdict(list)
    for path in paths:
        for qid, hits in iter_run_by_query(path):
            ordered = sorted(hits, key=lambda h: (-h.score, h.rank))[:depth]
            for own_rank, hit in enumerate(ordered, 1):
                neutral = hashlib.sha1(f"{qid}\t{hit.docid}".encode()).hexdigest()
                entries[qid].append((-hit.score, own_rank, neutral, hit.docid))
    return {qid: [docid for *_, docid in sorted(items)] for qid, items in entries.items()}


def _pool_scores(plan, runs: Mapping[tuple[str, str, str], list[Path]]) -> list[QueryScore]:
    from clir_ot.evaluation import evaluate, parse_measure
    from clir_ot.formats import read_qrels

    config = plan.config
    collection = config.baseline / "collection"
    languages = config.evaluated_languages
    pool_qrels: dict[str, dict[str, int]] = defaultdict(dict)
    for lang in languages:
        for qid, docs in read_qrels(collection / f"qrels.xquad.cross.{lang}.txt").items():
            pool_qrels[qid].update(docs)
    measures = [parse_measure(m) for m in MEASURES]
    out: list[QueryScore] = []
    for backbone in config.backbones:
        for method in config.methods:
            if not any((backbone.name, method.name, lang) in runs for lang in languages):
                continue  # nothing of this method is finished yet
            lists = []
            for lang in languages:
                chosen = runs.get((backbone.name, method.name, lang)) or runs.get((backbone.name, BASELINE_METHOD, lang))
                if not chosen:
                    break
                lists.append(chosen[0])  # the first seed's run
            else:
                ranked = merge_language_runs(lists, depth=config.depth)
                # distinct scores from the merged order, so trec_eval's docid tie-break cannot reorder it
                run = {q: {d: float(len(docids) - i) for i, d in enumerate(docids)} for q, docids in ranked.items()}
                result = evaluate(pool_qrels, run, measures, name=f"pool {backbone.name}/{method.name}")
                for qid, values in result.per_query.items():
                    for metric in MEASURES:
                        out.append(QueryScore(backbone.name, method.name, "all", "pool", metric, qid, values[metric]))
                relevant = {q: {d for d, g in docs.items() if g > 0} for q, docs in pool_qrels.items() if q in ranked}
                bias = max_rank_distance(ranked, relevant, depth=config.depth * len(languages))
                out += [QueryScore(backbone.name, method.name, "all", "pool", "bias", q, float(v)) for q, v in bias.items()]
    return out


def method_comparison(scores: Iterable[QueryScore], *, baseline: str = BASELINE_METHOD, languages: Sequence[str],
                      n_resamples: int = 10000, seed: int = 0) -> str:
    """Markdown: every method beside ``baseline`` per backbone, language and metric, with the paired
    randomization test against ``baseline`` (Holm-adjusted across the languages of a backbone, method
    and metric). ``**`` marks p(Holm) < 0.05."""
    table: dict[tuple[str, str, str, str], dict[str, float]] = defaultdict(dict)
    for s in scores:
        if s.setting == "cross":
            table[(s.backbone, s.method, s.language, s.metric)][s.qid] = s.value
    backbones = list(dict.fromkeys(k[0] for k in table))
    methods = [baseline] + sorted({k[1] for k in table} - {baseline})
    lines = ["## Methods side by side (setting `cross`)", "",
             f"Each cell: mean over questions; for a method, its difference to `{baseline}` and the two-sided paired "
             f"randomization p-value ({n_resamples} sign flips), Holm-adjusted across languages; ** p(Holm) < 0.05.",
             ""]
    for backbone in backbones:
        for metric in MEASURES:
            present = [m for m in methods if any(k[:2] == (backbone, m) and k[3] == metric for k in table)]
            lines += [f"### {backbone}: {metric}", "", "| language | " + " | ".join(present) + " |",
                      "|---|" + "---|" * len(present)]
            cells: dict[tuple[str, str], str] = {}
            for method in present[1:]:
                raw = {}
                for lang in languages:
                    a, b = table.get((backbone, method, lang, metric)), table.get((backbone, baseline, lang, metric))
                    if a and b:
                        qids = sorted(set(a) & set(b))
                        x = np.array([a[q] for q in qids]); y = np.array([b[q] for q in qids])
                        raw[lang] = (float(x.mean()), float((x - y).mean()),
                                     paired_randomization_test(x, y, n_resamples=n_resamples, seed=seed))
                adjusted = holm({l: p for l, (_, _, p) in raw.items()}) if raw else {}
                for lang, (mean, diff, p) in raw.items():
                    mark = "**" if adjusted[lang] < 0.05 else ""
                    cells[(lang, method)] = f"{mark}{mean:.4f} ({diff:+.4f}, p={adjusted[lang]:.3f}){mark}"
            for lang in languages:
                base = table.get((backbone, baseline, lang, metric))
                row = [f"{np.mean(list(base.values())):.4f}" if base else ""]
                row += [cells.get((lang, m), "") for m in present[1:]]
                lines.append(f"| {lang} | " + " | ".join(row) + " |")
            lines.append("")
    return "\n".join(lines)


def write_study_report(plan) -> Path:
    """Evaluate and write ``results.csv``, ``report.md`` (and plots, with two or more backbones)."""
    config = plan.config
    scores, costs = collect_scores(plan)
    root = plan.root
    root.mkdir(parents=True, exist_ok=True)
    if not scores:
        logger.warning("no finished runs to evaluate yet")
        return root
    backbones = [b.name for b in config.backbones]
    done_backbones = [b for b in backbones if any(s.backbone == b and s.method == "ot" for s in scores)]
    comparison = method_comparison(scores, languages=config.evaluated_languages, n_resamples=config.n_resamples)
    kwargs = {"resource_order": config.resource_order} if config.resource_order else {}
    if len(done_backbones) >= 2:
        report = build_report(scores, low_resource=config.low_resource, backbones=done_backbones,
                              costs=costs, n_resamples=config.n_resamples, **kwargs)
        write_report(root, report, scores)
        text = (root / "report.md").read_text(encoding="utf-8")
        with atomic_open(root / "report.md") as handle:
            handle.write(text.rstrip() + "\n\n" + comparison + "\n")
        logger.info("answer: %s", report.sentence)
    else:
        write_results_csv(root / "results.csv", scores)
        lines = [f"# Study `{config.name}`", "", f"Config: `{config.path}`. Backbones: {', '.join(backbones)}; "
                 f"first stage `{config.first_stage}` reranked to depth {config.depth}; cross-fitted over "
                 f"{len(plan.folds)} article folds.", "", comparison, ""]
        pool = [s for s in scores if s.setting == "pool"]
        if pool:
            lines += ["## Multilingual pool (setting `pool`)", "",
                      "| backbone | method | " + " | ".join(MEASURES) + " | bias (max rank distance) |",
                      "|---|---|" + "---|" * (len(MEASURES) + 1)]
            means: dict[tuple[str, str, str], list[float]] = defaultdict(list)
            for s in pool:
                means[(s.backbone, s.method, s.metric)].append(s.value)
            for backbone in backbones:
                for method in [m.name for m in config.methods]:
                    if (backbone, method, "P@5") in means:
                        cells = [f"{np.mean(means[(backbone, method, m)]):.4f}" for m in (*MEASURES, "bias")]
                        lines.append(f"| {backbone} | {method} | " + " | ".join(cells) + " |")
            lines.append("")
        if costs:
            lines += ["## Cost", "", "| step | wall s | examples/s or pairs/s | note |", "|---|---|---|---|"]
            for step, row in costs.items():
                rate = row.get("examples/s") or row.get("pairs/s")
                wall = row.get("wall_s")
                lines.append(f"| {step} | {wall if wall is None else round(float(wall))} | "
                             f"{'' if rate is None else f'{float(rate):.2f}'} | {row.get('note', '')} |")
            lines.append("")
        with atomic_open(root / "report.md") as handle:
            handle.write("\n".join(lines))
    logger.info("report: %s", root / "report.md")
    return root / "report.md"
