"""The reranker contract: score texts for a query; rerank hits by those scores.

:class:`Reranker` is a real ``ABC``: subclasses implement :meth:`Reranker.score`, and inherit
:meth:`Reranker.rerank`, which accepts the toolkit's :class:`~clir_ot.formats.Hit` records *or* the
hits Pyserini's ``LuceneSearcher.search()`` returns (``docid``, ``score`` and the stored raw
document), so a reranker drops into an existing Pyserini pipeline::

    hits = LuceneSearcher("indexes/lucene.xquad.th").search("...", k=100)
    reranked = reranker.rerank("Who won Super Bowl 50?", hits)   # list[Hit], new order, new scores
"""
from __future__ import annotations

import json
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from clir_ot.errors import InputFormatError
from clir_ot.formats import Hit, strictly_decreasing
from clir_ot.io import PathLike, atomic_open

__all__ = ["Reranker", "as_hit", "assemble_ranking", "hits_from_pyserini", "reranked_depth"]


def _pyserini_text(hit: Any) -> str | None:
    document = getattr(hit, "lucene_document", None)
    raw = getattr(hit, "raw", None)
    if raw is None and document is not None:
        raw = document.get("raw")
    if raw is None:
        return None
    try:
        parsed = json.loads(raw)
    except (TypeError, json.JSONDecodeError):
        return str(raw)
    if isinstance(parsed, dict):
        return parsed.get("contents") or parsed.get("text") or str(raw)
    return str(raw)


def as_hit(hit: Any, qid: str = "", rank: int = 0) -> Hit:
    """A :class:`Hit` from a Hit, a Pyserini hit (``JScoredDoc``) or any object with docid and score."""
    if isinstance(hit, Hit):
        return hit
    try:
        docid, score = str(hit.docid), float(hit.score)
    except AttributeError:
        raise TypeError(f"cannot rerank {type(hit).__name__}: it has no docid and score") from None
    return Hit(qid=qid, docid=docid, score=score, rank=rank, text=_pyserini_text(hit))


def hits_from_pyserini(results: Iterable[Any], qid: str = "") -> list[Hit]:
    """Convert the hits of ``LuceneSearcher.search()`` (raw documents included) into Hits."""
    return [as_hit(h, qid=qid, rank=i) for i, h in enumerate(results, start=1)]


class Reranker(ABC):
    """Scores (query, text) pairs; reranks a ranking by those scores."""

    @abstractmethod
    def score(self, query: str, texts: Sequence[str]) -> np.ndarray:
        """One relevance score per text (higher is more relevant), float array of ``len(texts)``."""

    def score_pairs(self, queries: Sequence[str], passages: Sequence[str]) -> np.ndarray:
        """Scores of ``(queries[i], passages[i])``. The default groups pairs by query and calls
        :meth:`score`; batch-oriented rerankers override it to batch across queries."""
        scores = np.zeros(len(passages), dtype=np.float64)
        groups: dict[str, list[int]] = {}
        for i, query in enumerate(queries):
            groups.setdefault(query, []).append(i)
        for query, rows in groups.items():
            scores[rows] = np.asarray(self.score(query, [passages[i] for i in rows]), dtype=np.float64)
        return scores

    def score_groups(self, groups: Sequence[tuple[str, Sequence[str]]]) -> list[np.ndarray]:
        """Scores of several queries' candidates at once: for each ``(query, texts)`` of ``groups``, one
        score per text. The default makes one :meth:`score_pairs` call over all pairs (so a batching
        reranker batches across queries) and splits it; rerankers that need each query's candidates
        together (:class:`~clir_ot.rerank.ExactOrderReranker`) override it."""
        queries = [query for query, texts in groups for _ in texts]
        passages = [text for _, texts in groups for text in texts]
        scores = np.asarray(self.score_pairs(queries, passages), dtype=np.float64) if passages else np.zeros(0)
        bounds = np.cumsum([0] + [len(texts) for _, texts in groups])
        return [scores[a:b] for a, b in zip(bounds[:-1], bounds[1:])]

    def begin_run(self) -> None:
        """Called by :func:`~clir_ot.rerank.rerank_run` before it scores a run: forget the statistics of
        earlier runs, so :meth:`run_report` describes this one. The default keeps none."""

    def run_report(self) -> dict[str, Any]:
        """What this reranker saw while scoring the run since :meth:`begin_run`, as JSON values, for the
        run's :class:`~clir_ot.rerank.RerankReport` (and logged, with a warning for anything the user must
        act on). The default has nothing to add."""
        return {}

    def signature(self) -> dict[str, Any]:
        """What this reranker's scores depend on (JSON values): a resumed :func:`~clir_ot.rerank.rerank_run`
        continues an unfinished run only with an equal signature. Subclasses add their model and settings."""
        return {"reranker": type(self).__name__, "scoring": SCORING_VERSION}

    def rerank(self, query: str, hits: Sequence[Any], depth: int | None = None) -> list[Hit]:
        """Rerank the top ``depth`` hits (all when ``None``) by :meth:`score`; see :func:`assemble_ranking`.

        Returns new Hits (the inputs are not modified).
        """
        ranked = [as_hit(h, rank=i) for i, h in enumerate(hits, start=1)]
        head = ranked[: len(ranked) if depth is None else max(0, depth)]
        missing = [h.docid for h in head if not h.text or not h.text.strip()]
        if missing:
            raise InputFormatError(None, None, f"no passage text for document(s) {', '.join(missing[:5])} "
                                   "(pass hits with text, a corpus, or a Pyserini index that stores raw documents)")
        scores = np.asarray(self.score(query, [h.text for h in head]), dtype=np.float64) if head else np.zeros(0)
        if scores.shape != (len(head),):
            raise ValueError(f"{type(self).__name__}.score returned shape {scores.shape}, expected ({len(head)},)")
        return assemble_ranking(ranked, scores)


#: How reranked scores are made. Pipelines record it beside reranked runs and in artifact keys, so a
#: change rebuilds them. 2: the cross-encoder head in float32 under bf16 autocast, ties kept in
#: first-stage order; 1 (before): bf16 logits, ties ordered by docid.
SCORING_VERSION = 2


def _sidecar(run: PathLike) -> Path:
    return Path(str(run) + ".scoring")


def _sidecar_lines(run: PathLike) -> list[str]:
    sidecar = _sidecar(run)
    return sidecar.read_text(encoding="utf-8").splitlines() if sidecar.is_file() else []


def recorded_scoring_version(run: PathLike) -> int:
    """The :data:`SCORING_VERSION` recorded beside a reranked run (``<run>.scoring``'s first line; 1
    when absent)."""
    lines = _sidecar_lines(run)
    if not lines:
        return 1
    try:
        return int(lines[0].strip())
    except ValueError:
        raise InputFormatError(_sidecar(run), 1, f"expected a scoring version number, found {lines[0]!r}") from None


def run_provenance(*, models: Sequence[str], first_stage: str, max_length: int, depth: int, batch_size: int,
                   path: str) -> dict[str, Any]:
    """What a reranked run records of how it was made (:func:`record_scoring_version`), which a
    command compares before reusing the run: the hashes of the models that scored it (one per fold)
    and of the first-stage run it reranked, and the settings that change its scores -- the requested
    ``max_length``, the ``depth``, the ``batch_size`` (bf16 scores depend on the padding of a batch)
    and the inference ``path`` actually taken (``backend/dtype``, e.g. ``torch/bf16``)."""
    return {"models": list(models), "first_stage": first_stage, "max_length": max_length, "depth": depth,
            "batch_size": batch_size, "path": path}


def recorded_provenance(run: PathLike) -> dict[str, Any] | None:
    """The :func:`run_provenance` recorded beside a reranked run (``<run>.scoring``'s second line, a
    JSON object); ``None`` when the run records none (runs written before it was recorded)."""
    lines = _sidecar_lines(run)
    if len(lines) < 2 or not lines[1].strip():
        return None
    sidecar = _sidecar(run)
    try:
        provenance = json.loads(lines[1])
    except json.JSONDecodeError as err:
        raise InputFormatError(sidecar, 2, f"invalid JSON ({err.msg})") from None
    if not isinstance(provenance, dict):
        raise InputFormatError(sidecar, 2, f"expected a JSON object, found {type(provenance).__name__}")
    return provenance


def why_not_reusable(run: PathLike, provenance: Mapping[str, Any]) -> str:
    """Why the reranked ``run`` may not stand for a run made with ``provenance`` (:func:`run_provenance`);
    ``''`` when it may. A malformed sidecar is an :class:`~clir_ot.errors.InputFormatError`."""
    if recorded_scoring_version(run) != SCORING_VERSION:
        return "scored by an older reranker version"
    recorded = recorded_provenance(run)
    if recorded is None:
        return "it records neither its models nor its settings (written before they were recorded)"
    changed = [f"{k}: {recorded.get(k)!r} -> {v!r}" for k, v in provenance.items() if recorded.get(k) != v]
    return f"made otherwise ({', '.join(changed)})" if changed else ""


def record_scoring_version(run: PathLike, provenance: Mapping[str, Any] | None = None) -> None:
    """Write ``<run>.scoring``: the current :data:`SCORING_VERSION` and, when given, the run's
    :func:`run_provenance` (one JSON line)."""
    with atomic_open(_sidecar(run)) as handle:
        handle.write(f"{SCORING_VERSION}\n")
        if provenance is not None:
            handle.write(json.dumps(dict(provenance), sort_keys=True) + "\n")


def reranked_depth(first_stage: Sequence[Hit], reranked: Mapping[str, float]) -> int:
    """How many of ``first_stage``'s top hits a reranked list holds reranker scores for.

    ``reranked`` is one query's ``{docid: score}`` as :func:`assemble_ranking` writes it: the head in the
    reranker's order, then the tail in first-stage order scored ``head_min - 1 - i``. The tail is read
    back from the end: every hit that sits at its first-stage rank one point below its predecessor.
    A list with no such tail (every hit reranked, or a run from another reranker) counts whole.
    """
    order = sorted(reranked, key=lambda docid: -reranked[docid])
    n = min(len(order), len(first_stage))
    j = n - 1
    while j >= 1 and order[j] == first_stage[j].docid:
        above, here = reranked[order[j - 1]], reranked[order[j]]
        if abs(above - here - 1.0) > 1e-6 * max(1.0, abs(here)):  # float32 ranks (see strictly_decreasing)
            break
        j -= 1
    return j + 1


def assemble_ranking(ranked: Sequence[Hit], head_scores: np.ndarray) -> list[Hit]:
    """The reranked list: the first ``len(head_scores)`` hits sorted by their new scores, then the rest.

    The result is ranked 1..n with strictly decreasing scores: the head carries the reranker's
    scores, and the tail keeps the first-stage order with scores shifted below the head's lowest
    (``head_min - 1 - i``), as Pyserini/pygaggle users expect of ``--depth``. Documents the reranker
    scores equally keep their first-stage order (never the docid's, which trec_eval would use).
    """
    cut = len(head_scores)
    order = sorted(range(cut), key=lambda i: (-float(head_scores[i]), i))
    head = strictly_decreasing([ranked[i].with_score(head_scores[i]) for i in order], keep_order=True)
    tail = ranked[cut:]
    if not tail:
        return head
    floor = head[-1].score if head else 0.0
    shifted = [h.with_score(floor - 1.0 - i) for i, h in enumerate(tail)]
    return strictly_decreasing(head + shifted, keep_order=True)
