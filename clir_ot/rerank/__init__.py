"""Reranking: the :class:`Reranker` contract, neural rerankers, and reranking of run files."""
from clir_ot.rerank.base import Reranker, as_hit, assemble_ranking, hits_from_pyserini
from clir_ot.rerank.cross_encoder import BiEncoderReranker, CrossEncoderReranker, TruncationStats
from clir_ot.rerank.run import RerankReport, rerank_run

__all__ = [
    "BiEncoderReranker",
    "CrossEncoderReranker",
    "RerankReport",
    "Reranker",
    "TruncationStats",
    "as_hit",
    "assemble_ranking",
    "hits_from_pyserini",
    "rerank_run",
]
