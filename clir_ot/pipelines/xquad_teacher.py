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
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from clir_ot.datasets.layout import DEFAULT_FIRST_STAGE, XQuADLayout
from clir_ot.datasets.xquad import DEFAULT_LANGUAGES, read_folds
from clir_ot.evaluation import evaluate, parse_measure
from clir_ot.formats import load_corpus, load_run, read_qrels, read_topics
from clir_ot.pipelines.xquad_baseline import render_table, write_tables
from clir_ot.rerank import CrossEncoderReranker, rerank_cross_fitted
from clir_ot.rerank.base import SCORING_VERSION, record_scoring_version, recorded_scoring_version
from clir_ot.training import DataSpec, TrainingConfig, selected_model, train_cross_encoder

logger = logging.getLogger(__name__)

MEASURES = ("P@5", "Success@5", "RR@10", "nDCG@10")
SETTINGS = ("first stage", "teacher")

__all__ = ["TeacherResult", "run_xquad_teacher"]


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
            logger.info("reusing teacher %s", folder)
            continue
        resume = folder.exists()  # resume=True also restarts a run killed before its first checkpoint
        logger.info("training teacher for fold %d into %s%s", k, folder, " (resuming)" if resume else "")
        spec = DataSpec(**layout.english_training._asdict(), exclude_fold=k, valid_fraction=valid_fraction)
        train_cross_encoder(base, folder, spec, config, resume=resume)

    topics = read_topics(collection.topics("en"))
    measures = [parse_measure(m) for m in MEASURES]
    table: dict[str, dict[str, dict[str, float]]] = {}
    seconds: dict[str, float] = {}
    rates: dict[str, float] = {}
    rerankers = [CrossEncoderReranker(str(selected_model(t)), batch_size=batch_size, max_length=max_length,
                                      dtype=dtype) for t in teachers]
    for lang in languages:
        first, merged = layout.first_stage_run(lang), layout.teacher_run(lang)
        stale = merged.is_file() and recorded_scoring_version(merged) != SCORING_VERSION
        if stale:
            logger.info("%s: scored by an older reranker version; reranking again", merged)
        if stale or not merged.is_file():
            report = rerank_cross_fitted(rerankers, [fold["qids"] for fold in folds], first, topics,
                                         load_corpus(collection.corpus(lang)), merged,
                                         [layout.teacher_run_part(lang, k) for k in range(len(folds))],
                                         depth=depth, tag=f"teacher.en-{lang}")
            record_scoring_version(merged)
            seconds[lang] = report.seconds
            rates[lang] = round(report.pairs_per_second, 1) if report.pairs_per_second else 0.0
            logger.info("%s: reranked %d pairs in %.0f s (%.1f pairs/s)", lang, report.pairs, seconds[lang], rates[lang])
        qrels = read_qrels(collection.qrels(lang))
        table[lang] = {}
        for setting, path in (("first stage", first), ("teacher", merged)):
            result = evaluate(qrels, load_run(path), measures, name=path.name)
            table[lang][setting] = {m.display: result.means[m.display] for m in measures}
    write_tables(layout.root, "teacher", f"English teacher (cross-fitted, {len(folds)} folds) reranking the top "
                 f"{depth} of {first_stage} dense, cross en->D", table, MEASURES, SETTINGS, sum(seconds.values()))
    logger.info("\n%s", render_table(table, MEASURES, SETTINGS))
    return TeacherResult(table=table, teachers=teachers, rerank_seconds=seconds, pairs_per_second=rates)
