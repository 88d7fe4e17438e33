"""Fusion of first-stage runs: reciprocal rank fusion (Cormack, Clarke & Büttcher, SIGIR 2009).

.. math::

    \\mathrm{RRF}(d) = \\sum_{r \\in \\text{runs}} \\frac{1}{k + \\mathrm{rank}_r(d)}

with ``rank_r(d)`` the 1-based rank of ``d`` in run ``r`` (documents a run lacks contribute nothing)
and ``k = 60`` by default, as Pyserini's ``pyserini.fusion`` uses. Ranks are those trec_eval sees
(score descending); ties in the fused score are broken by docid.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Mapping, Sequence

from clir_ot.errors import ConfigError
from clir_ot.formats import Hit, RunWriter, iter_run_by_query, strictly_decreasing
from clir_ot.io import PathLike

logger = logging.getLogger(__name__)

__all__ = ["fuse_run_files", "reciprocal_rank_fusion"]


def reciprocal_rank_fusion(
    rankings: Sequence[Sequence[Hit]], k: float = 60.0, depth: int | None = None, weights: Sequence[float] | None = None
) -> list[Hit]:
    """Fuse the rankings of one query (each in rank order) into one ranking of ``depth`` hits.

    ``depth`` limits both what is read of each input (its top ``depth``) and the output length.
    ``weights`` multiply each run's contribution (default 1 each).
    """
    if k < 0:
        raise ConfigError(f"RRF k must be non-negative, got {k}")
    weights = list(weights) if weights is not None else [1.0] * len(rankings)
    if len(weights) != len(rankings):
        raise ConfigError(f"{len(weights)} weights for {len(rankings)} runs; give one weight per run")
    if any(w < 0 for w in weights):
        raise ConfigError(f"RRF weights must be non-negative, got {weights}")
    fused: dict[str, float] = {}
    qid = ""
    for ranking, weight in zip(rankings, weights):
        for rank, hit in enumerate(ranking[:depth] if depth else ranking, start=1):
            qid = hit.qid
            fused[hit.docid] = fused.get(hit.docid, 0.0) + weight / (k + rank)
    hits = strictly_decreasing(Hit(qid=qid, docid=d, score=s) for d, s in fused.items())
    return hits[:depth] if depth else hits


def fuse_run_files(
    runs: Sequence[PathLike],
    output: PathLike,
    k: float = 60.0,
    depth: int | None = 1000,
    weights: Sequence[float] | None = None,
    tag: str = "rrf",
) -> Path:
    """RRF of several TREC run files into ``output`` (written atomically).

    Runs are read in full per run (a first-stage run is small); queries missing from some runs are
    fused from the runs that have them.
    """
    if len(runs) < 2:
        raise ConfigError("fusion needs at least two runs")
    if weights is not None and len(weights) != len(runs):  # zip() below would drop runs silently
        raise ConfigError(f"{len(weights)} weights for {len(runs)} runs; give one weight per run")
    if weights is not None and not any(w > 0 for w in weights):
        raise ConfigError(f"RRF weights {list(weights)} are all zero: give at least one run a positive weight")
    loaded: list[Mapping[str, list[Hit]]] = [dict(iter_run_by_query(path)) for path in runs]
    for path, run in zip(runs, loaded):
        if not run:
            logger.warning("run %s is empty: the fusion is of the other runs only", path)
    qids = list(dict.fromkeys(q for run in loaded for q in run))
    if not qids:
        raise ConfigError(f"every run is empty ({', '.join(map(str, runs))}): nothing to fuse")
    with RunWriter(output, tag=tag) as writer:
        for qid in qids:
            present = [(run[qid], w) for run, w in zip(loaded, weights or [1.0] * len(loaded)) if qid in run]
            writer.write(qid, reciprocal_rank_fusion([r for r, _ in present], k=k, depth=depth,
                                                     weights=[w for _, w in present]))
    return Path(output)
