"""First-stage retrieval: BM25 over Lucene with per-language analysis (and fusion of runs)."""
from clir_ot.retrieval.analysis import LANGUAGE_NAMES, Analysis, Pretokenizer, check_language, resolve_analysis
from clir_ot.retrieval.lucene import BM25Searcher, IndexInfo, build_index, read_index_info, search_to_run

__all__ = [
    "Analysis",
    "BM25Searcher",
    "IndexInfo",
    "LANGUAGE_NAMES",
    "Pretokenizer",
    "build_index",
    "check_language",
    "read_index_info",
    "resolve_analysis",
    "search_to_run",
]
