"""Cross-fitted reranking: each fold's queries reranked by that fold's model, merged into one run.

A cross-fitted model ``k`` never saw the articles of fold ``k``, so reranking fold ``k``'s questions
with it -- and merging the folds -- scores every question by a model that did not train on it. The
teacher pipeline (``clir-ot xquad-teacher``) and the study both call :func:`rerank_cross_fitted`.

Each fold's part is written by :func:`~clir_ot.rerank.run.rerank_run` to a path the caller names, so
a killed job resumes each unfinished part from its journal; the parts are merged in fold order into
``output`` (atomically, by :class:`~clir_ot.formats.RunWriter`) and deleted.
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Collection, Mapping, Sequence

from clir_ot.errors import ConfigError
from clir_ot.formats import RunWriter, iter_run_by_query
from clir_ot.rerank.base import Reranker
from clir_ot.rerank.run import rerank_run

logger = logging.getLogger(__name__)

__all__ = ["CrossFitReport", "rerank_cross_fitted"]


@dataclass(frozen=True)
class CrossFitReport:
    """What :func:`rerank_cross_fitted` did: pairs scored, wall seconds, and the scoring rate
    (pairs per second of model time, summed over the folds; ``None`` when nothing was scored)."""

    output: Path
    pairs: int
    seconds: float
    pairs_per_second: float | None


def rerank_cross_fitted(
    rerankers: Sequence[Reranker],
    fold_qids: Sequence[Collection[str]],
    run: str | os.PathLike,
    topics: Mapping[str, str],
    corpus: Mapping[str, str],
    output: str | os.PathLike,
    parts: Sequence[str | os.PathLike],
    *,
    depth: int,
    tag: str,
) -> CrossFitReport:
    """Rerank the top ``depth`` of ``run``: fold ``k``'s queries (``fold_qids[k]``) by ``rerankers[k]``
    into ``parts[k]``, then merge the parts in fold order into ``output`` (TREC tag ``tag``).

    Raises:
        ConfigError: ``rerankers``, ``fold_qids`` and ``parts`` differ in length, or are empty.
    """
    if not (len(rerankers) == len(fold_qids) == len(parts)) or not rerankers:
        raise ConfigError(f"cross-fitted reranking needs one model, one query set and one part file per fold; got "
                          f"{len(rerankers)} models, {len(fold_qids)} query sets, {len(parts)} parts")
    started, pairs, scoring = time.time(), 0, 0.0
    for reranker, qids, part in zip(rerankers, fold_qids, parts):
        report = rerank_run(reranker, run, topics, corpus, part, depth=depth, tag=tag, qids=set(qids))
        pairs += report.pairs
        scoring += report.pairs / report.pairs_per_second if report.pairs_per_second else 0.0
    with RunWriter(output, tag=tag, keep_order=True) as writer:
        for part in parts:
            for qid, hits in iter_run_by_query(part):
                writer.write(qid, hits)
    for part in parts:
        Path(part).unlink()
    return CrossFitReport(Path(output), pairs, round(time.time() - started, 1), pairs / scoring if scoring else None)
