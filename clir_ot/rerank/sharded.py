"""Rerank one run with many processes (``torchrun``): one shard of chunks per process, one merged run.

Every process streams the whole run and numbers its chunks as a single process would
(:meth:`~clir_ot.rerank.RerankPlan.queries`); process ``r`` of ``N`` scores the chunks whose number
modulo ``N`` is ``r`` into its own part, a hidden ``.<output name>.rank<r>-of-<N>`` beside the output
(each part resumable as any :func:`~clir_ot.rerank.rerank_run` output is). When all parts are done,
process 0 copies their lines, query by query in the run's order, into the output, through a
temporary file renamed into place, so no partial file ever has the output's name; then the parts are
removed. Each chunk is scored in exactly the batches one process would form, so the merged file is
byte for byte the single process's whenever the scorer gives the same bits for the same batch in
every process (same device and kernels; on CPU, the same number of threads).

A part that was finished by an earlier, interrupted job with the same settings is kept (a
``.signature`` file beside it says so), so a job killed while waiting for the others or while
merging is restarted without rescoring anything.

    torchrun --nproc-per-node 4 -m clir_ot rerank --run RUN --topics T --corpus C --output OUT ...
"""
from __future__ import annotations

import glob
import logging
import os
from pathlib import Path
from typing import Collection, Iterator, Mapping, NamedTuple, Sequence

from clir_ot.errors import ConsistencyError
from clir_ot.io import atomic_open, sha256_text
from clir_ot.parallel import ProcessGroup
from clir_ot.rerank.base import Reranker
from clir_ot.rerank.exact import ExactOrderStats
from clir_ot.rerank.run import RerankPlan, RerankReport, Shard, rerank_run

logger = logging.getLogger(__name__)

__all__ = ["ProcessGroup", "merge_parts", "part_path", "rerank_run_sharded"]


def part_path(output: str | os.PathLike, shard: Shard) -> Path:
    """The hidden part file that ``shard`` writes for ``output``."""
    output = Path(output)
    return output.parent / f".{output.name}.rank{shard.index}-of-{shard.count}"


def _remove_stale_parts(output: Path) -> None:
    """Delete the parts (and their signatures) that jobs with another process count left for ``output``:
    once the output is complete they can never be used."""
    stale = sorted(output.parent.glob(f".{glob.escape(output.name)}.rank*-of-*"))
    for path in stale:
        path.unlink(missing_ok=True)
    if stale:
        logger.info("removed %d stale part file(s) of %s left by jobs with another process count", len(stale), output)


class QueryBlock(NamedTuple):
    """One query's lines of a part file, as bytes."""

    qid: str
    lines: list[bytes]


def _query_blocks(path: Path) -> Iterator[QueryBlock]:
    """Each query's lines of a run file written by :class:`~clir_ot.formats.RunWriter`, in file order."""
    qid: bytes | None = None
    lines: list[bytes] = []
    with open(path, "rb") as handle:
        for line in handle:
            first = line.split(b" ", 1)[0]
            if first != qid:
                if qid is not None:
                    yield QueryBlock(qid.decode("utf-8", "replace"), lines)
                qid, lines = first, []
            lines.append(line)
    if qid is not None:
        yield QueryBlock(qid.decode("utf-8", "replace"), lines)


def merge_parts(parts: Sequence[Path], output: str | os.PathLike, plan: RerankPlan) -> int:
    """Copy the lines of ``parts`` (part ``r`` holds chunks ``r``, ``r + N``, ... of ``plan``) into
    ``output`` in the run's query order, atomically; returns the number of queries.

    Raises :class:`~clir_ot.errors.ConsistencyError` when a part lacks a query it should hold, holds
    another, or holds more than its chunks.
    """
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    readers = [_query_blocks(part) for part in parts]
    queries = 0
    with atomic_open(output, "wb") as out:  # hidden until complete; a killed merge's temporary is swept
        for chunk, qid, _ in plan.queries():
            owner = chunk % len(parts)
            block = next(readers[owner], None)
            if block is None or block.qid != qid:
                found = "its end" if block is None else f"query {block.qid!r}"
                raise ConsistencyError(f"{parts[owner]}: expected query {qid!r} (chunk {chunk}), found {found}; "
                                       "the part was written for another run or settings")
            out.writelines(block.lines)
            queries += 1
        for part, reader in zip(parts, readers):
            extra = next(reader, None)
            if extra is not None:
                raise ConsistencyError(f"{part}: query {extra.qid!r} is not one of its "
                                       "chunks; the part was written for another run or settings")
    return queries


def _sum_reports(output: Path, reports: Sequence[RerankReport]) -> RerankReport:
    """One report for the merged output: counts summed over the processes, the slowest process's
    wall time, the summed scoring rate, exact order's counts summed, each process's report kept."""
    exact = [r.reranker["exact_order"] for r in reports if "exact_order" in r.reranker]
    return RerankReport(output=str(output), queries=sum(r.queries for r in reports),
                        pairs=sum(r.pairs for r in reports), depth=reports[0].depth,
                        seconds=max(r.seconds for r in reports),
                        pairs_per_second=round(sum(r.pairs_per_second or 0.0 for r in reports), 2) or None,
                        reranker={"exact_order": ExactOrderStats.summed(exact).to_dict()} if exact else {},
                        ranks=tuple(reports))


def rerank_run_sharded(
    reranker: Reranker,
    run: str | os.PathLike,
    topics: Mapping[str, str],
    corpus: Mapping[str, str],
    output: str | os.PathLike,
    group: ProcessGroup,
    depth: int = 100,
    chunk_pairs: int = 2048,
    tag: str = "rerank",
    qids: Collection[str] | None = None,
) -> RerankReport:
    """:func:`~clir_ot.rerank.rerank_run` as process ``group.rank`` of ``group.world_size``: every
    process calls it with the same arguments; the output, written by process 0, equals one process's.

    Returns the summed report (every process's report under ``ranks``) on every process, once the
    output is in place. With one process it is :func:`~clir_ot.rerank.rerank_run`.
    """
    output = Path(output)
    if group.world_size == 1:
        report = rerank_run(reranker, run, topics, corpus, output, depth=depth, chunk_pairs=chunk_pairs, tag=tag,
                            qids=qids)
        _remove_stale_parts(output)
        return report
    shard = Shard(group.rank, group.world_size)
    part = part_path(output, shard)
    marker = part.with_name(part.name + ".signature")
    plan = RerankPlan(run, topics, corpus, depth, chunk_pairs, qids)
    signature = sha256_text(plan.signature(reranker, shard) + f"\ntag {tag}")
    if part.is_file() and marker.is_file() and marker.read_text().strip() == signature:
        logger.info("%s: kept, finished by an earlier job with the same settings", part)
        queries = pairs = 0
        for block in _query_blocks(part):  # what the earlier job scored, for the summed report
            queries, pairs = queries + 1, pairs + min(plan.depth, len(block.lines))
        report = RerankReport(output=str(part), queries=queries, pairs=pairs, depth=depth, seconds=0.0,
                              pairs_per_second=None, kept=True)
    else:
        marker.unlink(missing_ok=True)
        report = rerank_run(reranker, run, topics, corpus, part, depth=depth, chunk_pairs=chunk_pairs, tag=tag,
                            qids=qids, shard=shard)
        marker.write_text(signature + "\n")
    reports = [RerankReport.from_json(r) for r in group.gather(report.to_json())]
    if group.rank == 0:
        parts = [part_path(output, Shard(r, group.world_size)) for r in range(group.world_size)]
        queries = merge_parts(parts, output, plan)
        for path in parts:
            path.unlink()
            path.with_name(path.name + ".signature").unlink(missing_ok=True)
        logger.info("merged %d parts (%d queries) into %s", len(parts), queries, output)
        _remove_stale_parts(output)
    group.barrier()
    return _sum_reports(output, reports)
