"""The English teacher on XQuAD, cross-fitted: train one cross-encoder per article fold, rerank each
fold's questions with the teacher that never saw their articles, merge, evaluate.

For fold ``k`` the teacher trains on the English questions and paragraphs of the *other* folds
(hard negatives from the BM25+dense RRF run en->en; the leakage guard of
:func:`clir_ot.training.assert_no_leakage` checks that nothing of fold ``k`` reaches training), then
reranks the top ``depth`` of the dense first stage for fold ``k``'s questions in every language D.
The two folds' reranked runs are merged (:func:`clir_ot.rerank.rerank_cross_fitted`), so every
question is scored by a model that never saw its article: the *zero-shot cross-lingual transfer*
baseline that distillation must beat. Paths come from :class:`clir_ot.datasets.XQuADLayout`.

Every step is reused when its output exists (training resumes from its checkpoints).

:class:`TeacherData` holds the recipe's data choices: where hard negatives come from (the fused run,
as before, or the dense first stage), whether the dense first stage's scores are soft targets
(a listwise KL term, ``soft_weight`` of the training config), what validation reranks, and whether
the reranked runs are also interpolated with the first-stage score (the reranker weight chosen per
fold on that fold's teacher's validation questions, en->en: never on test questions), reported as
its own labelled row.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from clir_ot.datasets.layout import DEFAULT_FIRST_STAGE, TeacherData, XQuADLayout
from clir_ot.datasets.xquad import DEFAULT_LANGUAGES, read_folds
from clir_ot.evaluation import evaluate, parse_measure
from clir_ot.formats import iter_run_by_query, load_corpus, load_run, read_qrels, read_topics, write_run
from clir_ot.pipelines.xquad_baseline import render_table, write_tables
from clir_ot.errors import ConfigError
from clir_ot.io import cached_sha256, hash_model_folder
from clir_ot.rerank import CrossEncoderReranker, rerank_cross_fitted, rerank_run
from clir_ot.rerank.interpolation import WeightChoice, choose_weight, interpolate_run
from clir_ot.rerank.base import record_scoring_version, run_provenance, why_not_reusable
from clir_ot.training import (DataSpec, TrainingConfig, check_finished_recipe, load_training_data, selected_model,
                              train_cross_encoder)

logger = logging.getLogger(__name__)

MEASURES = ("P@5", "Success@5", "RR@10", "nDCG@10")
SETTINGS = ("first stage", "teacher")
INTERPOLATED = "teacher interpolated"

__all__ = ["TeacherData", "TeacherResult", "run_xquad_teacher"]


@dataclass(frozen=True)
class TeacherResult:
    table: dict[str, dict[str, dict[str, float]]]
    teachers: list[Path]
    rerank_seconds: dict[str, float]
    pairs_per_second: dict[str, float]


def run_xquad_teacher(
    output: str | Path,
    config: TrainingConfig,
    languages: Sequence[str] = DEFAULT_LANGUAGES,
    depth: int = 10,
    base: str | None = None,
    first_stage: str = DEFAULT_FIRST_STAGE,
    batch_size: int = 32,
    max_length: int = 256,
    dtype: str = "auto",
    valid_fraction: float = 0.1,
    data: TeacherData = TeacherData(),
) -> TeacherResult:
    """Train (or reuse) the per-fold teachers and rerank the first stage; see the module docstring.

    ``config`` is a :class:`~clir_ot.training.TrainingConfig`, passed unchanged to training;
    ``output`` holds the collection and first-stage runs of
    :func:`~clir_ot.pipelines.xquad_baseline.run_xquad_bm25` / ``run_xquad_dense``.
    """
    layout = XQuADLayout(output, first_stage=first_stage)
    collection = layout.collection
    folds = read_folds(collection.folds)
    teachers = [layout.teacher(k) for k in range(len(folds))]
    for k, folder in enumerate(teachers):
        if (folder / "training.json").is_file():
            check_finished_recipe(folder, config)
            logger.info("reusing teacher %s", folder)
            continue
        resume = folder.exists()  # resume=True also restarts a run killed before its first checkpoint
        logger.info("training teacher for fold %d into %s%s", k, folder, " (resuming)" if resume else "")
        train_cross_encoder(base, folder, _teacher_spec(layout, data, k, valid_fraction), config, resume=resume)

    topics = read_topics(collection.topics("en"))
    measures = [parse_measure(m) for m in MEASURES]
    table: dict[str, dict[str, dict[str, float]]] = {}
    seconds: dict[str, float] = {}
    rates: dict[str, float] = {}
    weights: list[WeightChoice] = []
    rerankers = [CrossEncoderReranker(str(selected_model(t)), batch_size=batch_size, max_length=max_length,
                                      dtype=dtype) for t in teachers]
    models = [hash_model_folder(selected_model(t)) for t in teachers]
    for lang in languages:
        first, merged = layout.first_stage_run(lang), layout.teacher_run(lang)
        provenance = run_provenance(models=models, first_stage=cached_sha256(first), max_length=max_length,
                                    depth=depth, batch_size=batch_size, path=str(rerankers[0].path))
        stale = merged.is_file() and why_not_reusable(merged, provenance)
        if stale:
            logger.info("%s: %s; reranking again", merged, stale)
        if stale or not merged.is_file():
            report = rerank_cross_fitted(rerankers, [fold["qids"] for fold in folds], first, topics,
                                         load_corpus(collection.corpus(lang)), merged,
                                         [layout.teacher_run_part(lang, k) for k in range(len(folds))],
                                         depth=depth, tag=f"teacher.en-{lang}")
            record_scoring_version(merged, provenance)
            seconds[lang] = report.seconds
            rates[lang] = round(report.pairs_per_second, 1) if report.pairs_per_second else 0.0
            logger.info("%s: reranked %d pairs in %.0f s (%.1f pairs/s)", lang, report.pairs, seconds[lang], rates[lang])
        runs = [("first stage", first), ("teacher", merged)]
        if data.interpolate:
            weights = weights if lang != languages[0] else _fold_weights(layout, data, rerankers, topics, config,
                                                                         valid_fraction, depth)
            runs.append((INTERPOLATED, _write_interpolated(layout, lang, folds, weights, depth)))
        qrels = read_qrels(collection.qrels(lang))
        table[lang] = {}
        for setting, path in runs:
            result = evaluate(qrels, load_run(path), measures, name=path.name)
            table[lang][setting] = {m.display: result.means[m.display] for m in measures}
    settings = (*SETTINGS, INTERPOLATED) if data.interpolate else SETTINGS
    write_tables(layout.root, "teacher", f"English teacher (cross-fitted, {len(folds)} folds) reranking the top "
                 f"{depth} of {first_stage} dense, cross en->D", table, MEASURES, settings, sum(seconds.values()))
    logger.info("\n%s", render_table(table, MEASURES, settings))
    return TeacherResult(table=table, teachers=teachers, rerank_seconds=seconds, pairs_per_second=rates)


def _teacher_spec(layout: XQuADLayout, data: TeacherData, fold: int, valid_fraction: float) -> DataSpec:
    """What the teacher of ``fold`` trains and validates on, by the recipe's data choices."""
    return DataSpec(**layout.teacher_training(data, fold), valid_fraction=valid_fraction)


def _fold_weights(layout: XQuADLayout, data: TeacherData, rerankers: Sequence[CrossEncoderReranker],
                  topics: dict[str, str], config: TrainingConfig, valid_fraction: float,
                  depth: int) -> list[WeightChoice]:
    """Per fold, the interpolation weight that maximises RR@10 on that teacher's validation questions
    (held out of its training; en-en, reranking their dense top ``depth``)."""
    corpus = load_corpus(layout.collection.corpus("en"))
    qrels = read_qrels(layout.collection.qrels("en"))
    choices = []
    for k, reranker in enumerate(rerankers):
        spec = _teacher_spec(layout, data, k, valid_fraction)
        held = {g.qid for g in load_training_data(spec, negatives=config.negatives, depth=config.depth,
                                                  valid_negatives=config.valid_negatives, seed=config.seed).valid}
        if not held:
            raise ConfigError("interpolation needs the teachers' validation questions (valid_fraction > 0)")
        first_path, reranked_path = layout.teacher_validation_run(k, "first-stage"), layout.teacher_validation_run(k, "teacher")
        first = {q: hits for q, hits in iter_run_by_query(layout.first_stage_run("en")) if q in held}
        if not first_path.is_file():
            write_run(first_path, first, tag="first-stage", keep_order=True)
        rerank_run(reranker, first_path, {q: topics[q] for q in first}, corpus, reranked_path, depth=depth)
        choice = choose_weight(first, load_run(reranked_path), qrels, depth=depth)
        logger.info("fold %d: interpolation weight %.2f (RR@10 %.4f on %d validation questions; w=1 %.4f, w=0 %.4f)",
                    k, choice.weight, choice.value, choice.queries, dict(choice.curve).get(1.0, float("nan")),
                    dict(choice.curve).get(0.0, float("nan")))
        choices.append(choice)
    return choices


def _write_interpolated(layout: XQuADLayout, lang: str, folds: Sequence[dict], weights: Sequence[WeightChoice],
                        depth: int) -> Path:
    """The merged teacher run of ``lang`` interpolated with the first stage, fold ``k``'s questions by
    fold ``k``'s weight."""
    first = dict(iter_run_by_query(layout.first_stage_run(lang)))
    reranked = load_run(layout.teacher_run(lang))
    mixed = {}
    for fold, choice in zip(folds, weights):
        qids = {str(q) for q in fold["qids"]}
        mixed.update(interpolate_run({q: h for q, h in first.items() if q in qids}, reranked, choice.weight, depth))
    path = layout.teacher_interpolated_run(lang)
    write_run(path, {q: mixed[q] for q in first if q in mixed}, tag=f"teacher.interpolated.en-{lang}", keep_order=True)
    return path
