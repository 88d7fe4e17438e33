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

import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Collection, Iterator, Mapping, NamedTuple

from clir_ot.errors import ConfigError
from clir_ot.formats import Hit, RunWriter, iter_run_by_query, sha256_of
from clir_ot.progress import progress_bar
from clir_ot.rerank.base import Reranker, assemble_ranking

logger = logging.getLogger(__name__)

__all__ = ["PlannedQuery", "RerankPlan", "RerankReport", "Shard", "rerank_run"]


@dataclass(frozen=True)
class RerankReport:
    """What one :func:`rerank_run` call did (or a sharded job, summed over its processes).

    Attributes:
        output: the run file written.
        queries: queries written; pairs: (query, passage) pairs scored.
        depth: how many hits of each query were reranked.
        seconds: wall time (of the slowest process, for a sharded job).
        pairs_per_second: the scoring rate in model time (summed over processes); ``None`` when
            nothing was scored.
        reranker: what the reranker reported of the run (:meth:`~clir_ot.rerank.Reranker.run_report`:
            truncation, inference path, exact order), as JSON values.
        kept: a part finished by an earlier job with the same settings, reused without scoring.
        ranks: a sharded job's per-process reports (empty for one process).
    """

    output: str
    queries: int
    pairs: int
    depth: int
    seconds: float
    pairs_per_second: float | None
    reranker: Mapping[str, Any] = field(default_factory=dict)
    kept: bool = False
    ranks: tuple["RerankReport", ...] = ()

    @property
    def processes(self) -> int:
        return len(self.ranks) or 1

    def to_json(self) -> dict[str, Any]:
        """One flat JSON object (what ``clir-ot rerank`` writes to stderr): the counts, the
        reranker's entries beside them, ``kept`` when true, and ``processes`` / ``ranks`` when sharded."""
        out: dict[str, Any] = {"output": self.output, "queries": self.queries, "pairs": self.pairs,
                               "depth": self.depth, "seconds": self.seconds,
                               "pairs_per_second": self.pairs_per_second, **self.reranker}
        if self.kept:
            out["kept"] = True
        if self.ranks:
            out["processes"] = self.processes
            out["ranks"] = [rank.to_json() for rank in self.ranks]
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "RerankReport":
        """The report :meth:`to_json` wrote (entries it does not name are the reranker's)."""
        data = dict(data)
        data.pop("processes", None)
        counts = {name: data.pop(name) for name in ("output", "queries", "pairs", "depth", "seconds",
                                                     "pairs_per_second")}
        kept = bool(data.pop("kept", False))
        ranks = tuple(cls.from_json(rank) for rank in data.pop("ranks", ()))
        return cls(**counts, reranker=data, kept=kept, ranks=ranks)


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count``: the chunks of queries whose number modulo ``count`` is ``index``."""

    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ConfigError(f"shard {self.index} of {self.count} does not exist (0 <= index < count)")

    def owns(self, chunk: int) -> bool:
        return chunk % self.count == self.index


class PlannedQuery(NamedTuple):
    """One query of a :class:`RerankPlan`: the chunk it is scored in, its id and its first-stage hits."""

    chunk: int
    qid: str
    hits: list[Hit]


@dataclass(frozen=True, eq=False)
class RerankPlan:
    """What one reranking job reads, and how it is cut into chunks: every process of a sharded job,
    and a job resumed after a kill, derive the same chunks from the same plan.

    ``run`` is the first-stage TREC run, ``topics`` the query texts by qid, ``corpus`` the passage
    texts by docid; the top ``depth`` hits of each query are reranked; a chunk closes after the query
    that brings it to ``chunk_pairs`` pairs; ``qids``, when given, are the only queries reranked.
    """

    run: str | os.PathLike
    topics: Mapping[str, str]
    corpus: Mapping[str, str]
    depth: int = 100
    chunk_pairs: int = 2048
    qids: Collection[str] | None = None

    def __post_init__(self) -> None:
        if self.depth < 1:
            raise ConfigError(f"depth must be at least 1, got {self.depth}")
        if self.chunk_pairs < 1:
            raise ConfigError(f"chunk_pairs must be at least 1, got {self.chunk_pairs}")

    def texts_sha256(self) -> str:
        """SHA-256 of every query text and passage text this plan scores, in the order scored (one
        lookup per pair, as the scoring does: cheap beside the scoring itself)."""
        digest = hashlib.sha256()
        for planned in self.queries():
            digest.update(self.topics[planned.qid].encode("utf-8") + b"\0")
            for hit in planned.hits[:self.depth]:
                digest.update(hit.docid.encode("utf-8") + b"\t" + self.corpus[hit.docid].encode("utf-8") + b"\0")
        return digest.hexdigest()

    def queries(self) -> Iterator[PlannedQuery]:
        """Every query of :attr:`run` to rerank, in the run's order, with its chunk number.

        Chunk numbers depend only on the run, :attr:`depth`, :attr:`chunk_pairs` and :attr:`qids`,
        never on what a resumed job or another process has done, so every process of a sharded job,
        and a job resumed after a kill, scores exactly the batches an uninterrupted single process would.
        """
        chunk = waiting = 0
        for qid, hits in iter_run_by_query(self.run, known_qids=self.topics, known_docids=self.corpus):
            if self.qids is not None and qid not in self.qids:
                continue
            yield PlannedQuery(chunk, qid, hits)
            waiting += min(self.depth, len(hits))
            if waiting >= self.chunk_pairs:
                chunk, waiting = chunk + 1, 0

    def signature(self, reranker: Reranker, shard: Shard = Shard()) -> str:
        """What an unfinished output of this plan may be continued with: the reranker's signature, the
        depth, the input run, the queries, the texts of the pairs to score (XQuAD's qids are the same in
        every language, so the run alone cannot tell topics.xquad.en from topics.xquad.th), the chunk size
        (it sets which pairs share a batch, and so the last bits of bf16 scores, and in a sharded job which
        chunks a process owns) and the shard."""
        fields = {**reranker.signature(), "depth": self.depth, "run": sha256_of(self.run),
                  "qids": None if self.qids is None else sorted(self.qids), "texts": self.texts_sha256(),
                  "chunk_pairs": self.chunk_pairs}
        if shard.count > 1:
            fields["shard"] = [shard.index, shard.count]
        return json.dumps(fields, sort_keys=True)


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
    shard: Shard = Shard(),
) -> RerankReport:
    """Rerank the top ``depth`` of every query of ``run``; write the new run to ``output``.

    ``corpus`` maps docids to passage texts: a dict, or an on-disk store read on demand
    (:class:`~clir_ot.store.TextStore` over a JSONL/TSV corpus, :class:`~clir_ot.store.LuceneTextStore`
    over a Lucene index with stored raw documents; :func:`clir_ot.store.passage_store`), so with the run
    streamed query by query neither the run nor the collection is held in memory.

    ``qids``, when given, restricts the job to those queries (the others are not written), e.g. the
    test fold of a cross-fitted model. ``shard`` restricts it to one shard's chunks of
    :meth:`RerankPlan.queries` (see :func:`rerank_run_sharded`).
    """
    plan = RerankPlan(run, topics, corpus, depth, chunk_pairs, qids)
    started = time.time()
    pairs = 0
    scoring_seconds = 0.0
    pending: list[tuple[str, list[Hit]]] = []

    def flush(writer: RunWriter) -> None:
        nonlocal pairs, scoring_seconds
        groups = [(topics[qid], [corpus[hit.docid] for hit in hits[:depth]]) for qid, hits in pending]
        tick = time.time()
        scores = reranker.score_groups(groups)
        scoring_seconds += time.time() - tick
        for (qid, hits), head in zip(pending, scores):
            writer.write(qid, assemble_ranking(hits, head))
            pairs += len(head)
        pending.clear()
        writer.checkpoint()

    # an unfinished output is continued only by the same reranker, depth, input run, queries and shard
    signature = plan.signature(reranker, shard)
    reranker.begin_run()
    with RunWriter(output, tag=tag, keep_order=True, resumable=True, signature=signature) as writer:
        if writer.done:
            logger.info("resuming %s: %d queries already reranked", output, len(writer.done))
        current = 0
        bar = progress_bar(plan.queries(), desc="reranking", unit="q")
        for chunk, qid, hits in bar:
            if chunk != current:
                if pending:
                    flush(writer)
                    bar.set_postfix(pairs=pairs)
                current = chunk
            if qid in writer.done or not shard.owns(chunk):
                continue
            pending.append((qid, hits))
        if pending:
            flush(writer)
    report = RerankReport(
        output=str(Path(output)), queries=writer.queries, pairs=pairs, depth=depth,
        seconds=round(time.time() - started, 3),
        pairs_per_second=round(pairs / scoring_seconds, 2) if scoring_seconds else None,
        reranker=reranker.run_report(),
    )
    logger.info("reranked %d queries (%d pairs) into %s in %.1fs", writer.queries, pairs, output, report.seconds)
    return report
