"""First-stage retrieval: BM25 over Lucene with per-language analysis (and fusion of runs)."""
from clir_ot.retrieval.analysis import (
    ANSERINI_ANALYZERS,
    LUCENE_ANALYZERS,
    Analysis,
    Pretokenizer,
    check_language,
    language_table,
    render_language_table,
    resolve_analysis,
)
from clir_ot.retrieval.lucene import BM25Searcher, IndexInfo, build_index, read_index_info, search_to_run

__all__ = [
    "ANSERINI_ANALYZERS",
    "Analysis",
    "BM25Searcher",
    "IndexInfo",
    "LUCENE_ANALYZERS",
    "Pretokenizer",
    "build_index",
    "check_language",
    "language_table",
    "read_index_info",
    "render_language_table",
    "resolve_analysis",
    "search_to_run",
]
