"""The English teacher on XQuAD, cross-fitted: train one cross-encoder per article fold, rerank each
fold's questions with the teacher that never saw their articles, merge, evaluate.

For fold ``k`` the teacher trains on the English questions and paragraphs of the *other* folds
(hard negatives from the BM25+dense RRF run en->en; the leakage guard of
:func:`clir_ot.training.assert_no_leakage` checks that nothing of fold ``k`` reaches training), then
reranks the top ``depth`` of the dense first stage for fold ``k``'s questions in every language D.
The two folds' reranked runs are merged, so every question is scored by a model that never saw its
article: the *zero-shot cross-lingual transfer* baseline that distillation must beat.

Every step is reused when its output exists (training resumes from its checkpoints).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from clir_ot.datasets.xquad import DEFAULT_LANGUAGES, read_folds
from clir_ot.evaluation import evaluate, parse_measure
from clir_ot.formats import RunWriter, iter_run_by_query, load_corpus, load_run, read_qrels, read_topics
from clir_ot.pipelines.xquad_baseline import render_table, write_tables

logger = logging.getLogger(__name__)

MEASURES = ("P@5", "Success@5", "RR@10", "nDCG@10")
SETTINGS = ("first stage", "teacher")

__all__ = ["TeacherResult", "run_xquad_teacher", "teacher_dir"]


@dataclass
class TeacherResult:
    table: dict[str, dict[str, dict[str, float]]]
    teachers: list[Path]
    rerank_seconds: dict[str, float]
    pairs_per_second: dict[str, float]


def teacher_dir(output: Path, fold: int, tag: str = "e5-small") -> Path:
    return Path(output) / f"teacher.{tag}.en.fold{fold}"


def _trained_model(folder: Path) -> Path:
    """The checkpoint selected by validation (``best/``) if there is one, else the final model."""
    return folder / "best" if (folder / "best").is_dir() else folder


def run_xquad_teacher(
    output: str | Path,
    config,
    languages: Sequence[str] = DEFAULT_LANGUAGES,
    depth: int = 10,
    base: str | None = None,
    first_stage: str = "e5-small",
    batch_size: int = 32,
    max_length: int = 256,
    dtype: str = "auto",
    valid_fraction: float = 0.1,
) -> TeacherResult:
    """Train (or reuse) the per-fold teachers and rerank the first stage; see the module docstring.

    ``config`` is a :class:`~clir_ot.training.TrainingConfig`; ``output`` holds the collection and
    first-stage runs of :func:`~clir_ot.pipelines.xquad_baseline.run_xquad_bm25` / ``run_xquad_dense``.
    """
    from clir_ot.rerank import CrossEncoderReranker, rerank_run
    from clir_ot.rerank.base import SCORING_VERSION, record_scoring_version, recorded_scoring_version
    from clir_ot.training import DataSpec, train_cross_encoder

    output = Path(output)
    collection = output / "collection"
    folds = read_folds(collection / "folds.json")
    negatives_run = output / f"run.xquad.bm25+{first_stage}.rrf.cross.en-en.txt"
    teachers = []
    for k in range(len(folds)):
        folder = teacher_dir(output, k, first_stage)
        teachers.append(folder)
        if (folder / "training.json").is_file():
            logger.info("reusing teacher %s", folder)
            continue
        spec = DataSpec(topics=collection / "topics.xquad.en.tsv", qrels=collection / "qrels.xquad.cross.en.txt",
                        corpus=collection / "corpus" / "en", run=negatives_run,
                        folds=collection / "folds.json", exclude_fold=k, valid_fraction=valid_fraction)
        resume = folder.exists()  # resume=True also restarts a run killed before its first checkpoint
        logger.info("training teacher for fold %d into %s%s", k, folder, " (resuming)" if resume else "")
        train_cross_encoder(base, folder, spec, config, resume=resume)

    topics = read_topics(collection / "topics.xquad.en.tsv")
    measures = [parse_measure(m) for m in MEASURES]
    table: dict[str, dict[str, dict[str, float]]] = {}
    seconds: dict[str, float] = {}
    rates: dict[str, float] = {}
    rerankers = [CrossEncoderReranker(str(_trained_model(t)), batch_size=batch_size, max_length=max_length,
                                      dtype=dtype) for t in teachers]
    for lang in languages:
        first = output / f"run.xquad.{first_stage}.cross.en-{lang}.txt"
        merged = output / f"run.xquad.{first_stage}+teacher.cross.en-{lang}.txt"
        corpus = load_corpus(collection / "corpus" / lang)
        stale = merged.is_file() and recorded_scoring_version(merged) != SCORING_VERSION
        if stale:
            logger.info("%s: scored by an older reranker version; reranking again", merged)
        if stale or not merged.is_file():
            started, pairs, scoring = time.time(), 0, 0.0
            parts = []
            for k, fold in enumerate(folds):
                part = output / f".run.xquad.{first_stage}+teacher.cross.en-{lang}.fold{k}.txt"
                report = rerank_run(rerankers[k], first, topics, corpus, part, depth=depth,
                                    tag=f"teacher.en-{lang}", qids=set(fold["qids"]))
                pairs += report["pairs"]
                scoring += report["pairs"] / report["pairs_per_second"] if report["pairs_per_second"] else 0.0
                parts.append(part)
            with RunWriter(merged, tag=f"teacher.en-{lang}", keep_order=True) as writer:
                for part in parts:
                    for qid, hits in iter_run_by_query(part):
                        writer.write(qid, hits)
            record_scoring_version(merged)
            for part in parts:
                part.unlink()
            seconds[lang] = round(time.time() - started, 1)
            rates[lang] = round(pairs / scoring, 1) if scoring else 0.0
            logger.info("%s: reranked %d pairs in %.0f s (%.1f pairs/s)", lang, pairs, seconds[lang], rates[lang])
        qrels = read_qrels(collection / f"qrels.xquad.cross.{lang}.txt")
        table[lang] = {}
        for setting, path in (("first stage", first), ("teacher", merged)):
            result = evaluate(qrels, load_run(path), measures, name=path.name)
            table[lang][setting] = {m.display: result.means[m.display] for m in measures}
    write_tables(output, "teacher", f"English teacher (cross-fitted, {len(folds)} folds) reranking the top {depth} "
                 f"of {first_stage} dense, cross en->D", table, MEASURES, SETTINGS, sum(seconds.values()))
    logger.info("\n%s", render_table(table, MEASURES, SETTINGS))
    return TeacherResult(table=table, teachers=teachers, rerank_seconds=seconds, pairs_per_second=rates)
