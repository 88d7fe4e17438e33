"""Rerank a TREC run file: streamed query by query, scored in cross-query batches, resumable.

The run is read one query at a time (:func:`clir_ot.formats.iter_run_by_query`), so its size does
not matter; passages are looked up one at a time too, so an on-disk store (:mod:`clir_ot.store`)
keeps the collection's size from mattering either. Queries are gathered until ``chunk_pairs`` (query, passage) pairs are waiting, and the
chunk is scored at once, so length-sorted batching works across queries; then each query's top
``depth`` is reordered and its tail kept below (:func:`clir_ot.rerank.base.assemble_ranking`).
Finished chunks are checkpointed: a killed job restarted with the same arguments continues after
the last finished chunk; restarted with another model, depth, precision or input run, it starts over
(the :meth:`~clir_ot.rerank.Reranker.signature` is kept in the checkpoint journal).
"""
from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Collection, Mapping

from tqdm.auto import tqdm

from clir_ot.errors import ConfigError
from clir_ot.formats import Hit, RunWriter, iter_run_by_query, sha256_of
from clir_ot.rerank.base import Reranker, assemble_ranking

logger = logging.getLogger(__name__)

__all__ = ["RerankReport", "rerank_run"]


class RerankReport(dict):
    """Counts and timings of one :func:`rerank_run` call."""


def rerank_run(
    reranker: Reranker,
    run: str | os.PathLike,
    topics: Mapping[str, str],
    corpus: Mapping[str, str],
    output: str | os.PathLike,
    depth: int = 100,
    chunk_pairs: int = 2048,
    tag: str = "rerank",
    qids: Collection[str] | None = None,
) -> RerankReport:
    """Rerank the top ``depth`` of every query of ``run``; write the new run to ``output``.

    ``corpus`` maps docids to passage texts: a dict, or an on-disk store read on demand
    (:class:`~clir_ot.store.TextStore` over a JSONL/TSV corpus, :class:`~clir_ot.store.LuceneTextStore`
    over a Lucene index with stored raw documents; :func:`clir_ot.store.passage_store`), so with the run
    streamed query by query neither the run nor the collection is held in memory.

    ``qids``, when given, restricts the job to those queries (the others are not written), e.g. the
    test fold of a cross-fitted model.
    """
    if depth < 1:
        raise ConfigError(f"depth must be at least 1, got {depth}")
    started = time.time()
    pairs = 0
    scoring_seconds = 0.0
    pending: list[tuple[str, list[Hit]]] = []

    def flush(writer: RunWriter) -> None:
        nonlocal pairs, scoring_seconds
        queries, passages = [], []
        for qid, hits in pending:
            for hit in hits[:depth]:
                queries.append(topics[qid])
                passages.append(corpus[hit.docid])
        tick = time.time()
        scores = reranker.score_pairs(queries, passages) if passages else []
        scoring_seconds += time.time() - tick
        offset = 0
        for qid, hits in pending:
            cut = min(depth, len(hits))
            writer.write(qid, assemble_ranking(hits, scores[offset:offset + cut]))
            offset += cut
        pairs += len(passages)
        pending.clear()
        writer.checkpoint()

    # an unfinished output is continued only by the same reranker, depth, input run and queries
    signature = json.dumps({**reranker.signature(), "depth": depth, "run": sha256_of(run),
                            "qids": None if qids is None else sorted(qids)}, sort_keys=True)
    with RunWriter(output, tag=tag, keep_order=True, resumable=True, signature=signature) as writer:
        if writer.done:
            logger.info("resuming %s: %d queries already reranked", output, len(writer.done))
        waiting = 0
        bar = tqdm(iter_run_by_query(run, known_qids=topics, known_docids=corpus), desc="reranking", unit="q")
        for qid, hits in bar:
            if qid in writer.done or (qids is not None and qid not in qids):
                continue
            pending.append((qid, hits))
            waiting += min(depth, len(hits))
            if waiting >= chunk_pairs:
                flush(writer)
                waiting = 0
                bar.set_postfix(pairs=pairs)
        flush(writer)
    report = RerankReport(
        output=str(Path(output)), queries=writer.queries, pairs=pairs, depth=depth,
        seconds=round(time.time() - started, 3),
        pairs_per_second=round(pairs / scoring_seconds, 2) if scoring_seconds else None,
    )
    truncation = getattr(reranker, "truncation", None)
    if truncation is not None:
        report["truncation"] = truncation.summary()
        logger.info("truncation: %s", truncation.summary())
    logger.info("reranked %d queries (%d pairs) into %s in %.1fs", writer.queries, pairs, output, report["seconds"])
    return report
