"""Reranking: the :class:`Reranker` contract, neural rerankers, exact order on demand, and reranking of
run files, in one process or sharded over many."""
from clir_ot.rerank.base import Reranker, as_hit, assemble_ranking, hits_from_pyserini
from clir_ot.rerank.cross_encoder import BiEncoderReranker, CrossEncoderReranker, TruncationStats
from clir_ot.rerank.exact import DEFAULT_EXACT_TOP, ExactOrderReranker, ExactOrderStats, pairs_to_rescore
from clir_ot.rerank.run import PlannedQuery, RerankPlan, RerankReport, Shard, rerank_run
from clir_ot.rerank.sharded import ProcessGroup, rerank_run_sharded
from clir_ot.rerank.crossfit import CrossFitReport, rerank_cross_fitted
from clir_ot.rerank.windows import PassageWindows

__all__ = [
    "BiEncoderReranker",
    "CrossEncoderReranker",
    "CrossFitReport",
    "DEFAULT_EXACT_TOP",
    "ExactOrderReranker",
    "ExactOrderStats",
    "PassageWindows",
    "PlannedQuery",
    "ProcessGroup",
    "RerankPlan",
    "RerankReport",
    "Reranker",
    "Shard",
    "TruncationStats",
    "as_hit",
    "assemble_ranking",
    "hits_from_pyserini",
    "pairs_to_rescore",
    "rerank_cross_fitted",
    "rerank_run",
    "rerank_run_sharded",
]
