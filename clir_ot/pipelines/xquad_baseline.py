"""The XQuAD first-stage baseline: collections -> per-language Lucene indexes -> BM25 runs -> trec_eval.

For every language D it runs BM25 for

* ``cross`` en->D: English questions against the paragraphs in D (the CLIR setting), and
* ``mono`` D->D: questions in D against paragraphs in D (the monolingual ceiling of lexical matching),

evaluates both against the cross qrels of D and writes one table (rows: languages) as Markdown,
TSV and JSON under the output folder. Steps whose outputs exist and match their inputs are reused
(indexes by corpus hash and analysis; runs are cheap and always redone).
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from clir_ot.datasets.layout import XQuADLayout
from clir_ot.datasets.xquad import DEFAULT_LANGUAGES, build_xquad_collections
from clir_ot.errors import InputFormatError
from clir_ot.evaluation import evaluate, parse_measure
from clir_ot.formats import atomic_open, load_run, read_qrels, read_topics, sha256_of
from clir_ot.models import BiEncoderModel
from clir_ot.models.loading import resolve_precision
from clir_ot.retrieval.dense import DenseSearcher, dense_search_to_run, encode_corpus
from clir_ot.retrieval.fusion import fuse_run_files
from clir_ot.retrieval.lucene import BM25Searcher, IndexInfo, build_index, read_index_info, search_to_run

logger = logging.getLogger(__name__)

MEASURES = ("P@5", "Success@5", "RR@10", "nDCG@10", "R@100")
SETTINGS = ("cross", "mono")

__all__ = ["BaselineResult", "MEASURES", "ensure_index", "render_table", "run_xquad_bm25", "run_xquad_dense"]


@dataclass
class BaselineResult:
    table: dict[str, dict[str, dict[str, float]]]  # lang -> setting -> measure -> mean
    runs: dict[str, dict[str, Path]]  # lang -> setting -> run file
    seconds: float


def _index_is_current(info: IndexInfo | None, corpus: Path, language: str, thai_tokenizer: str) -> bool:
    if info is None or info.corpus_sha256 != sha256_of(corpus) or info.analysis.language != language:
        return False
    if language == "th" and thai_tokenizer != "auto":  # an explicit Thai choice must match the index
        return (info.analysis.method == "pretokenized") == (thai_tokenizer == "pythainlp")
    return True


def ensure_index(corpus: Path, index_dir: Path, language: str, threads: int, thai_tokenizer: str = "auto") -> Path:
    """Build ``index_dir`` unless it already indexes this exact corpus with the requested analysis
    (an index whose manifest cannot be read is rebuilt, with a warning)."""
    try:
        info = read_index_info(index_dir)
    except InputFormatError as err:
        logger.warning("rebuilding %s: %s", index_dir, err)
        info = None
    if _index_is_current(info, corpus, language, thai_tokenizer):
        logger.info("reusing index %s (%s)", index_dir, info.analysis.describe())
        return index_dir
    build_index(corpus, index_dir, language, threads=threads, thai_tokenizer=thai_tokenizer)
    return index_dir


def render_table(table: dict[str, dict[str, dict[str, float]]], measures: Sequence[str] = MEASURES,
                 settings: Sequence[str] = SETTINGS, fmt: str = "markdown") -> str:
    """One row per language; columns ``<setting> <measure>``."""
    header = ["lang"] + [f"{s} {m}" for s in settings for m in measures]
    rows = [[lang] + [f"{table[lang][s][m]:.4f}" for s in settings for m in measures] for lang in table]
    if fmt == "tsv":
        return "\n".join("\t".join(r) for r in [header, *rows]) + "\n"
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def run_xquad_bm25(
    source: str | Path | None,
    output: str | Path,
    index_root: str | Path,
    languages: Sequence[str] = DEFAULT_LANGUAGES,
    query_language: str = "en",
    hits: int = 100,
    threads: int = 2,
    thai_tokenizer: str = "auto",
) -> BaselineResult:
    """Run the whole BM25 baseline; see the module docstring."""
    started = time.time()
    layout = XQuADLayout(output, index_root)
    collection = layout.collection
    languages = list(languages)
    needed = sorted(set(languages) | {query_language})
    build_xquad_collections(source, collection.root, needed)
    measures = [parse_measure(m) for m in MEASURES]
    table: dict[str, dict[str, dict[str, float]]] = {}
    runs: dict[str, dict[str, Path]] = {}
    query_topics = read_topics(collection.topics(query_language))
    for lang in languages:
        index_dir = ensure_index(collection.corpus(lang), layout.lucene_index(lang), lang, threads, thai_tokenizer)
        searcher = BM25Searcher(index_dir)
        qrels = read_qrels(collection.qrels(lang))
        runs[lang], table[lang] = {}, {}
        for setting in SETTINGS:
            q_lang = query_language if setting == "cross" else lang
            topics = query_topics if setting == "cross" else read_topics(collection.topics(lang))
            path = layout.bm25_run(setting, q_lang, lang)
            search_to_run(searcher, topics, path, k=hits, threads=threads, tag=f"bm25.{q_lang}-{lang}")
            result = evaluate(qrels, load_run(path), measures, name=path.name)
            runs[lang][setting] = path
            table[lang][setting] = {m.display: result.means[m.display] for m in measures}
        searcher.close()
        logger.info("%s: cross P@5 %.4f RR@10 %.4f | mono P@5 %.4f RR@10 %.4f", lang,
                    table[lang]["cross"]["P@5"], table[lang]["cross"]["RR@10"],
                    table[lang]["mono"]["P@5"], table[lang]["mono"]["RR@10"])
    seconds = time.time() - started
    write_tables(layout.root, "bm25", f"BM25 on XQuAD (cross: {query_language}->D, mono: D->D), qrels: cross",
                 table, MEASURES, SETTINGS, seconds)
    return BaselineResult(table=table, runs=runs, seconds=seconds)


def write_tables(output: Path, name: str, title: str, table, measures: Sequence[str], settings: Sequence[str],
                 seconds: float) -> None:
    """``table.<name>.{md,tsv,json}`` under ``output``."""
    layout = XQuADLayout(output)
    with atomic_open(layout.table(name, "md")) as out:
        out.write(f"{title}\n\n")
        out.write(render_table(table, measures, settings))
    with atomic_open(layout.table(name, "tsv")) as out:
        out.write(render_table(table, measures, settings, fmt="tsv"))
    with atomic_open(layout.table(name, "json")) as out:
        json.dump({"title": title, "table": table, "seconds": round(seconds, 1)}, out, indent=2)


DENSE_MEASURES = ("P@1", "P@5", "Success@5", "RR@10", "nDCG@10", "R@100")
DENSE_SETTINGS = ("dense", "rrf")


def run_xquad_dense(
    output: str | Path,
    index_root: str | Path,
    bm25: BaselineResult,
    model=None,
    languages: Sequence[str] = DEFAULT_LANGUAGES,
    query_language: str = "en",
    hits: int = 100,
    batch_size: int = 32,
    max_length: int = 256,
    dtype: str = "auto",
    model_tag: str = "e5-small",
) -> BaselineResult:
    """Dense first stage for cross ``query_language``->D, and its RRF with the BM25 cross run.

    Needs the collections and BM25 runs of :func:`run_xquad_bm25` (its result is ``bm25``).
    ``model`` is a :class:`~clir_ot.models.BiEncoderModel` (default: the offline default model).
    """
    started = time.time()
    layout = XQuADLayout(output, index_root, first_stage=model_tag)
    collection = layout.collection
    model = model if model is not None else BiEncoderModel.from_pretrained(None)
    dtype = resolve_precision(dtype, model.device)
    measures = [parse_measure(m) for m in DENSE_MEASURES]
    topics = read_topics(collection.topics(query_language))
    table: dict[str, dict[str, dict[str, float]]] = {}
    runs: dict[str, dict[str, Path]] = {}
    for lang in languages:
        index_dir = layout.faiss_index(lang, model_tag)
        encode_corpus(collection.corpus(lang), index_dir, model, batch_size=batch_size, max_length=max_length,
                      dtype=dtype)
        dense_path = layout.dense_run(model_tag, lang, query_language)
        dense_search_to_run(DenseSearcher(index_dir, model), topics, dense_path, k=hits, batch_size=batch_size,
                            max_length=max_length, dtype=dtype, tag=f"{model_tag}.{query_language}-{lang}")
        fused_path = layout.rrf_run(model_tag, lang, query_language)
        fuse_run_files([bm25.runs[lang]["cross"], dense_path], fused_path, k=60, depth=hits,
                       tag=f"rrf.{query_language}-{lang}")
        qrels = read_qrels(collection.qrels(lang))
        runs[lang] = {"dense": dense_path, "rrf": fused_path}
        table[lang] = {}
        for setting, path in runs[lang].items():
            result = evaluate(qrels, load_run(path), measures, name=path.name)
            table[lang][setting] = {m.display: result.means[m.display] for m in measures}
        logger.info("%s: dense P@1 %.4f RR@10 %.4f | rrf P@1 %.4f RR@10 %.4f", lang,
                    table[lang]["dense"]["P@1"], table[lang]["dense"]["RR@10"],
                    table[lang]["rrf"]["P@1"], table[lang]["rrf"]["RR@10"])
    seconds = time.time() - started
    write_tables(layout.root, model_tag, f"{model_tag} dense and BM25+{model_tag} RRF (k=60) on XQuAD, cross "
                 f"{query_language}->D ({dtype})", table, DENSE_MEASURES, DENSE_SETTINGS, seconds)
    return BaselineResult(table=table, runs=runs, seconds=seconds)
