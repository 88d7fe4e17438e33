"""Reranking: the :class:`Reranker` contract, neural rerankers, and reranking of run files."""
from clir_ot.rerank.base import Reranker, as_hit, assemble_ranking, hits_from_pyserini
from clir_ot.rerank.cross_encoder import BiEncoderReranker, CrossEncoderReranker, TruncationStats
from clir_ot.rerank.run import RerankReport, rerank_run
from clir_ot.rerank.crossfit import CrossFitReport, rerank_cross_fitted

__all__ = [
    "BiEncoderReranker",
    "CrossEncoderReranker",
    "CrossFitReport",
    "RerankReport",
    "Reranker",
    "TruncationStats",
    "as_hit",
    "assemble_ranking",
    "hits_from_pyserini",
    "rerank_cross_fitted",
    "rerank_run",
]
