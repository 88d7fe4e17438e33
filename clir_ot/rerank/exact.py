"""Exact order on demand: score with a fast path, re-score in float32 only where the order is in doubt.

A reranker's fast path (bf16 autocast, the head kept in float32) is about 3x faster than float32 on
AMX CPUs, but its scores differ from float32's by a small error, enough to swap candidates whose
scores are close. :class:`ExactOrderReranker` scores every pair with the fast reranker, then, for
each query, re-scores with the exact (float32) reranker only the pairs whose fast score is within
``margin`` of another candidate's, among the candidates that can reach the top ``top_k``
(:func:`pairs_to_rescore`). Rescored pairs carry their float32 scores, the others their fast ones.

**The guarantee.** Write :math:`s_i` for pair *i*'s fast score and :math:`t_i` for its float32 score, as the exact
reranker computes it in whatever batch it falls in: float32 scores themselves move with batching
(padding and kernel choice, ~1e-6 on CPU), so the premise must hold for float32 at any batching, and
"float32's top k" below means the order of the float32 scores this reranker writes.
If every pair's fast error is at most half the margin,

.. math:: |s_i - t_i| \\le M / 2 \\quad\\text{for all } i,

then the top ``top_k`` of the result is float32's top ``top_k``: the same documents in the same
order, equal float32 scores in first-stage order (as :func:`~clir_ot.rerank.base.assemble_ranking`
orders every tie). Why: let :math:`s_{(k)}` be the k-th best fast score. A pair with
:math:`s_j < s_{(k)} - M` is beaten in float32 by each of the k fast leaders, so it cannot be in the
float32 top k; among the others (the candidates), two pairs whose fast scores are more than ``M``
apart keep their order in float32, and their written scores keep it too (a rescored
:math:`t_i \\le s_i + M/2` stays below an unrescored :math:`s_j > s_i + M`); the remaining pairs, those
within ``M`` of a neighbour, are all re-scored, so float32 itself orders them. Below the top ``top_k``
the order is the fast path's.

The premise is about the fast path's error, which the toolkit cannot know in advance: pick ``margin``
as twice an error bound measured on your model and data (``docs/speed.md`` shows how). What it can
check, it does: :class:`ExactOrderStats` records the largest fast error seen on the rescored pairs,
and counts those above ``margin / 2`` (each one is a measured breach of the premise; the log then
says to raise the margin). The statistics cover one run: :func:`~clir_ot.rerank.rerank_run` starts
them afresh (:meth:`ExactOrderReranker.begin_run`) and reports them (:meth:`~ExactOrderReranker.run_report`).
"""
from __future__ import annotations

import logging
import math
import numbers
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from clir_ot.errors import ExactOrderError
from clir_ot.rerank.base import Reranker

logger = logging.getLogger(__name__)

__all__ = ["DEFAULT_EXACT_TOP", "ExactOrderReranker", "ExactOrderStats", "check_exact_order", "pairs_to_rescore"]

#: The default ``top_k`` of exact order: the ranking depth that P@5, nDCG@10 and RR@10 read.
DEFAULT_EXACT_TOP = 10


def _backend(reranker: Reranker) -> str:
    """The backend of a model reranker's inference path (``torch`` when it names none)."""
    return getattr(getattr(reranker, "path", None), "backend", "torch")


def check_exact_order(margin: float, top_k: int) -> None:
    """Raise :class:`~clir_ot.errors.ExactOrderError` unless ``margin`` is a finite positive number
    and ``top_k`` a positive integer."""
    if isinstance(margin, bool) or not isinstance(margin, numbers.Real) or not math.isfinite(margin) or margin <= 0:
        raise ExactOrderError(f"exact-order margin must be a finite number above 0, got {margin!r}")
    if isinstance(top_k, bool) or not isinstance(top_k, numbers.Integral) or top_k < 1:
        raise ExactOrderError(f"exact-order top k must be an integer of at least 1, got {top_k!r}")


def pairs_to_rescore(scores: np.ndarray, margin: float, top_k: int) -> np.ndarray:
    """Which of one query's candidates to re-score: a boolean mask over ``scores`` (shape ``(n,)``).

    The candidates are the pairs whose fast score is at least the ``top_k``-th best's minus ``margin``
    (the lowest's, when there are ``top_k`` pairs or fewer); a candidate is re-scored when another
    candidate's fast score is within ``margin`` of its own (``<=``).

    >>> pairs_to_rescore(np.array([5.0, 4.0, 3.95, 1.0, 0.98]), margin=0.1, top_k=2).tolist()
    [False, True, True, False, False]
    """
    check_exact_order(margin, top_k)
    scores = np.asarray(scores, dtype=np.float64)
    mask = np.zeros(len(scores), dtype=bool)
    if len(scores) < 2:
        return mask
    order = np.argsort(-scores, kind="stable")
    ranked = scores[order]
    kth = ranked[min(top_k, len(ranked)) - 1]
    candidates = order[ranked >= kth - margin]
    values = scores[candidates]  # descending
    close = np.diff(values) >= -margin  # gap to the next candidate within the margin
    near = np.zeros(len(candidates), dtype=bool)
    near[:-1] |= close
    near[1:] |= close
    mask[candidates[near]] = True
    return mask


@dataclass
class ExactOrderStats:
    """What exact order cost and saw: pairs scored, pairs re-scored, and the fast path's error on those.

    ``max_error`` is the largest ``|fast - exact|`` among re-scored pairs; ``over_half_margin`` counts
    re-scored pairs whose error exceeded ``margin / 2`` (breaches of the guarantee's premise).
    """

    margin: float
    top_k: int
    queries: int = 0
    pairs: int = 0
    rescored: int = 0
    max_error: float = 0.0
    over_half_margin: int = 0

    def reset(self) -> None:
        """Zero the counts (the margin and ``top_k`` stay)."""
        self.queries = self.pairs = self.rescored = self.over_half_margin = 0
        self.max_error = 0.0

    @property
    def share(self) -> float:
        """The share of pairs re-scored in float32 (0 when none were scored)."""
        return self.rescored / self.pairs if self.pairs else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"margin": self.margin, "top_k": self.top_k, "queries": self.queries, "pairs": self.pairs,
                "rescored": self.rescored, "rescored_share": round(self.share, 6),
                "max_error": float(self.max_error), "over_half_margin": self.over_half_margin}

    @classmethod
    def summed(cls, parts: Sequence[Mapping[str, Any]]) -> "ExactOrderStats":
        """The stats of one job scored by several processes, from each process's :meth:`to_dict`
        (all with the same margin and ``top_k``)."""
        first = parts[0]
        return cls(first["margin"], first["top_k"], queries=sum(p["queries"] for p in parts),
                   pairs=sum(p["pairs"] for p in parts), rescored=sum(p["rescored"] for p in parts),
                   max_error=max(p["max_error"] for p in parts),
                   over_half_margin=sum(p["over_half_margin"] for p in parts))

    def summary(self) -> str:
        return (f"re-scored {self.rescored} of {self.pairs} pairs in float32 ({100.0 * self.share:.1f}%) for the exact "
                f"top {self.top_k} at margin {self.margin:g}; largest fast error seen {self.max_error:.3g}")


class ExactOrderReranker(Reranker):
    """Score with ``fast``; re-score with ``exact`` the pairs :func:`pairs_to_rescore` picks, per query.

    ``fast`` and ``exact`` score the same model at two precisions (:meth:`around` builds the pair
    from one loaded reranker). See the module docstring for the guarantee on the top ``top_k``.

    >>> fast = CrossEncoderReranker(model, dtype="bf16")            # doctest: +SKIP
    >>> reranker = ExactOrderReranker.around(fast, margin=0.01)     # doctest: +SKIP
    >>> reranker.stats.share                                         # doctest: +SKIP
    """

    def __init__(self, fast: Reranker, exact: Reranker, margin: float, top_k: int = DEFAULT_EXACT_TOP):
        check_exact_order(margin, top_k)
        self.fast = fast
        self.exact = exact
        self.margin = float(margin)
        self.top_k = int(top_k)
        self.stats = ExactOrderStats(self.margin, self.top_k)
        fast_dtype = getattr(fast, "dtype", None)
        #: both score at the same precision on the same backend: the fast scores are already exact,
        #: nothing is re-scored
        self.same_precision = fast_dtype is not None and fast_dtype == getattr(exact, "dtype", None) and (
            _backend(fast) == _backend(exact))
        if self.same_precision:
            logger.info("exact order: the fast path already computes in %s; no pair needs re-scoring", fast_dtype)

    @classmethod
    def around(cls, fast: Reranker, margin: float, top_k: int = DEFAULT_EXACT_TOP) -> "ExactOrderReranker":
        """Exact order for a model reranker (:class:`~clir_ot.rerank.CrossEncoderReranker` or
        :class:`~clir_ot.rerank.BiEncoderReranker`): its float32 twin shares the loaded model."""
        model = getattr(fast, "model", None)
        if model is None:
            raise ExactOrderError(f"{type(fast).__name__} has no model to re-score in float32; "
                                  "pass the exact reranker to ExactOrderReranker(fast, exact, ...)")
        windows = getattr(fast, "windows", None)  # the twin reads the same windows (MaxP)
        exact = type(fast)(model, batch_size=fast.batch_size, max_length=fast.max_length, dtype="fp32",
                           **({"windows": windows} if windows is not None else {}))
        return cls(fast, exact, margin, top_k)

    @property
    def truncation(self):
        """The fast reranker's truncation counts (it reads every pair)."""
        return getattr(self.fast, "truncation", None)

    def begin_run(self) -> None:
        """Start :attr:`stats` afresh (and the fast and exact rerankers' own statistics)."""
        self.fast.begin_run()
        self.exact.begin_run()
        self.stats.reset()

    def run_report(self) -> dict[str, Any]:
        """The fast reranker's report (it read every pair) and ``exact_order``: :attr:`stats`; warns
        when a re-scored pair breached the premise (its fast error above half the margin)."""
        logger.info("exact order: %s", self.stats.summary())
        if self.stats.over_half_margin:
            logger.warning("exact order: %d re-scored pairs moved by more than half the margin (largest %.3g): the "
                           "margin %g may not bound the fast path's error, so the top %d may differ from float32's; "
                           "raise the margin", self.stats.over_half_margin, self.stats.max_error, self.margin,
                           self.top_k)
        return {**self.fast.run_report(), "exact_order": self.stats.to_dict()}

    def signature(self) -> dict[str, Any]:
        """Both rerankers' signatures, the margin and ``top_k``: a resumed run continues only with all equal."""
        return {**super().signature(), "fast": self.fast.signature(), "exact": self.exact.signature(),
                "margin": self.margin, "top_k": self.top_k}

    def score(self, query: str, texts: Sequence[str]) -> np.ndarray:
        return self.score_groups([(query, texts)])[0]

    def score_groups(self, groups: Sequence[tuple[str, Sequence[str]]]) -> list[np.ndarray]:
        """Fast scores for all groups in one batched call, then one float32 call for every pair in doubt."""
        scores = [np.asarray(s, dtype=np.float64).copy() for s in self.fast.score_groups(groups)]
        self.stats.queries += len(groups)
        self.stats.pairs += sum(len(s) for s in scores)
        if self.same_precision:
            return scores
        where: list[tuple[int, np.ndarray]] = []
        queries: list[str] = []
        passages: list[str] = []
        for g, ((query, texts), fast) in enumerate(zip(groups, scores)):
            rows = np.flatnonzero(pairs_to_rescore(fast, self.margin, self.top_k))
            if len(rows):
                where.append((g, rows))
                queries.extend([query] * len(rows))
                passages.extend(texts[i] for i in rows)
        if not passages:
            return scores
        exact = np.asarray(self.exact.score_pairs(queries, passages), dtype=np.float64)
        offset = 0
        for g, rows in where:
            values = exact[offset:offset + len(rows)]
            errors = np.abs(scores[g][rows] - values)
            self.stats.max_error = max(self.stats.max_error, float(errors.max()))
            self.stats.over_half_margin += int(np.sum(errors > self.margin / 2))
            scores[g][rows] = values
            offset += len(rows)
        self.stats.rescored += len(passages)
        return scores
