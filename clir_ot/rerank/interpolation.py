"""Reranking interpolation: the reranker's score combined with the first stage's, per query.

The standard way to keep what a first stage knows when a reranker is weaker on some queries
(e.g. a cross-encoder trained on few questions, or one that transfers to another language): for the
first stage's top ``depth`` documents :math:`d` of a query,

.. math::

    s(d) = w \\, \\hat r(d) + (1 - w) \\, \\hat f(d), \\qquad
    \\hat x(d) = \\frac{x(d) - \\min_{d'} x(d')}{\\max_{d'} x(d') - \\min_{d'} x(d')}

where :math:`r` is the reranker's score, :math:`f` the first stage's and the min-max normalisation
runs over the query's top ``depth`` (a constant score list normalises to 0). :math:`w = 1` is the
pure reranker's order, :math:`w = 0` the first stage's; the documents below ``depth`` keep their
first-stage order underneath (:func:`clir_ot.rerank.base.assemble_ranking`). The weight is chosen
on held-out questions (:func:`choose_weight`), never on the questions it is evaluated on.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from clir_ot.errors import ConfigError, ConsistencyError
from clir_ot.evaluation import evaluate, parse_measure
from clir_ot.formats import Hit
from clir_ot.rerank.base import assemble_ranking, reranked_depth

__all__ = ["DEFAULT_WEIGHTS", "WeightChoice", "choose_weight", "interpolate_hits", "interpolate_run"]

#: The weights :func:`choose_weight` tries: 0, 0.05, ..., 1.
DEFAULT_WEIGHTS: tuple[float, ...] = tuple(round(0.05 * i, 2) for i in range(21))


def _minmax(values: np.ndarray) -> np.ndarray:
    span = float(values.max() - values.min()) if values.size else 0.0
    return np.zeros_like(values) if span == 0.0 else (values - values.min()) / span


def interpolate_hits(first_stage: Sequence[Hit], reranker_scores: Mapping[str, float], weight: float,
                     depth: int | None) -> list[Hit]:
    """One query's ranking: the first stage's top ``depth`` by the interpolated score, then the rest.

    ``first_stage`` is the query's first-stage ranking (best first, with its scores) and
    ``reranker_scores`` ``{docid: score}`` has the reranker's score of every one of its top ``depth``.
    ``depth=None``: the depth the list was reranked to, read from it
    (:func:`~clir_ot.rerank.base.reranked_depth`); a ``depth`` beyond it is an error, since the scores
    below the reranked head are first-stage ranks, not the reranker's.
    """
    if not 0.0 <= weight <= 1.0:
        raise ConfigError(f"the interpolation weight must be in [0, 1], got {weight}")
    if depth is not None and depth < 1:
        raise ConfigError(f"depth must be at least 1, got {depth}")
    qid = first_stage[0].qid if first_stage else "?"
    head = list(first_stage[:depth])
    missing = [h.docid for h in head if h.docid not in reranker_scores]
    if missing:
        raise ConsistencyError(f"query {qid!r}: the reranked run lacks {len(missing)} of the first stage's top "
                               f"{len(head)} documents (e.g. {missing[0]!r}); rerank with the same run and depth")
    scored = reranked_depth(head, reranker_scores)
    if depth is None:
        head = head[:scored]
    elif scored < len(head):
        raise ConsistencyError(
            f"query {qid!r}: the reranked run holds reranker scores for its top {scored} documents only (below "
            f"them it keeps the first-stage order), not {depth}; interpolate with the depth it was reranked "
            f"with (--depth {scored}, or leave --depth out to read it from the run)")
    reranked = np.array([reranker_scores[h.docid] for h in head], dtype=np.float64)
    first = np.array([h.score for h in head], dtype=np.float64)
    combined = weight * _minmax(reranked) + (1.0 - weight) * _minmax(first)
    return assemble_ranking(list(first_stage), combined)


def interpolate_run(first_stage: Mapping[str, Sequence[Hit]], reranked: Mapping[str, Mapping[str, float]],
                    weight: float, depth: int | None) -> dict[str, list[Hit]]:
    """:func:`interpolate_hits` for every query of ``first_stage`` (``{qid: hits}``, best first) that
    ``reranked`` (``{qid: {docid: score}}``, e.g. :func:`~clir_ot.formats.load_run` of the reranked run)
    has; a query the reranked run lacks is an error."""
    lacking = [q for q in first_stage if q not in reranked]
    if lacking:
        raise ConsistencyError(f"the reranked run lacks {len(lacking)} queries of the first stage (e.g. {lacking[0]!r})")
    return {qid: interpolate_hits(hits, reranked[qid], weight, depth) for qid, hits in first_stage.items()}


@dataclass(frozen=True)
class WeightChoice:
    """What :func:`choose_weight` found: the best ``weight``, its ``value`` of ``measure``, and the
    value of every weight tried (``curve``: ``(weight, value)`` pairs in the order tried)."""

    weight: float
    measure: str
    value: float
    curve: tuple[tuple[float, float], ...]
    queries: int


def choose_weight(first_stage: Mapping[str, Sequence[Hit]], reranked: Mapping[str, Mapping[str, float]],
                  qrels: Mapping[str, Mapping[str, int]], *, depth: int | None, measure: str = "RR@10",
                  weights: Sequence[float] = DEFAULT_WEIGHTS) -> WeightChoice:
    """The weight of ``weights`` whose interpolated run scores best by ``measure`` on the queries of
    ``first_stage`` (held-out questions: never those the weight is then applied to). Ties go to the
    larger reranker weight."""
    if not weights:
        raise ConfigError("choose_weight needs at least one weight to try")
    judged = {q: qrels[q] for q in first_stage if q in qrels}
    if not judged:
        raise ConsistencyError("none of the tuning queries has qrels")
    name = str(parse_measure(measure))
    curve = []
    for weight in weights:
        run = interpolate_run({q: first_stage[q] for q in judged}, reranked, weight, depth)
        scores = {q: {h.docid: h.score for h in hits} for q, hits in run.items()}
        value = float(evaluate(judged, scores, [measure], name=f"interpolation w={weight}").means[name])
        curve.append((float(weight), value))
    best_weight, best_value = max(curve, key=lambda wv: (wv[1], wv[0]))
    return WeightChoice(best_weight, name, best_value, tuple(curve), len(judged))
