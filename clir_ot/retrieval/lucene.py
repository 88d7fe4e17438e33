"""BM25 over Lucene (Anserini, through Pyserini): build an index per language and search it.

:func:`build_index` writes a Pyserini-compatible Lucene index (positions, document vectors and raw
documents stored, as ``python -m pyserini.index.lucene`` would) plus a manifest ``clir_ot.json``
recording the :class:`~clir_ot.retrieval.analysis.Analysis` used, so :class:`BM25Searcher` analyses
queries the same way. Indexes are built in a temporary folder and renamed into place when complete.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Iterator, Mapping

from clir_ot import __version__
from clir_ot.errors import ConfigError, InputFormatError
from clir_ot.formats import Hit, RunWriter, atomic_open, iter_corpus, read_json_object, sha256_of, strictly_decreasing
from clir_ot.io import check_replaceable, sweep_leftovers, work_prefix
from clir_ot.java import anserini_jar, ensure_jvm
from clir_ot.progress import progress_bar
from clir_ot.retrieval.analysis import Analysis, Pretokenizer, check_language, resolve_analysis

logger = logging.getLogger(__name__)

MANIFEST = "clir_ot.json"
DEFAULT_K1 = 0.9  # Anserini's defaults
DEFAULT_B = 0.4

__all__ = ["BM25Searcher", "IndexInfo", "build_index", "is_lucene_index", "read_index_info", "search_to_run"]



@dataclass(frozen=True)
class IndexInfo:
    """The manifest (``clir_ot.json``) of an index built by :func:`build_index`: how its documents were
    analysed (reused for queries by :class:`BM25Searcher`), which corpus it holds (path and SHA-256,
    so a pipeline can tell a current index from a stale one), and what built it."""

    analysis: Analysis
    corpus: str
    corpus_sha256: str
    documents: int
    java: str
    anserini: str
    clir_ot: str
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return {**{f.name: getattr(self, f.name) for f in fields(self)}, "analysis": self.analysis.to_json()}

    @classmethod
    def from_json(cls, data: Mapping[str, Any], where: str | os.PathLike = MANIFEST) -> "IndexInfo":
        """Read a manifest's JSON object; a missing or unknown field is an
        :class:`~clir_ot.errors.InputFormatError` naming ``where``."""
        names = {f.name for f in fields(cls)}
        missing, unknown = sorted(names - set(data)), sorted(set(data) - names)
        if missing or unknown:
            problem = "; ".join(filter(None, [missing and f"missing {', '.join(missing)}",
                                             unknown and f"unknown {', '.join(unknown)}"]))
            raise InputFormatError(where, None, f"not an index manifest of clir_ot ({problem}); rebuild the "
                                   "index with clir-ot index")
        return cls(**{**data, "analysis": Analysis.from_json(data["analysis"])})


def read_index_info(index_dir: str | os.PathLike) -> IndexInfo | None:
    """The manifest of ``index_dir``, or ``None`` for an index not built by clir_ot."""
    path = Path(index_dir) / MANIFEST
    if not path.is_file():
        return None
    return IndexInfo.from_json(read_json_object(path), path)


def is_lucene_index(folder: Path) -> bool:
    """Whether ``folder`` holds a Lucene index (its ``segments_N`` file) or clir_ot's index manifest."""
    return (folder / MANIFEST).is_file() or any(folder.glob("segments_*"))


def build_index(
    corpus: str | os.PathLike,
    index_dir: str | os.PathLike,
    language: str,
    threads: int = 1,
    thai_tokenizer: str = "auto",
    analyzer: str = "auto",
) -> IndexInfo:
    """Index a JSONL corpus (file or folder) with the analysis of ``language``; returns the manifest.

    ``analyzer`` forces an analysis (``standard``, ``whitespace``, ``icu`` or a Lucene analyzer class;
    see :mod:`clir_ot.retrieval.analysis`); the manifest records it and :class:`BM25Searcher` reuses it.
    An existing index at ``index_dir`` is replaced only once the new one is complete; a folder that is
    not an index (or that holds the corpus) is refused before any work.
    """
    language = check_language(language)
    corpus = Path(corpus)
    index_dir = Path(index_dir)
    check_replaceable(index_dir, kind="Lucene index", is_kind=is_lucene_index, inputs=[corpus])
    runtime = ensure_jvm()
    analysis = resolve_analysis(language, thai_tokenizer, analyzer)
    logger.info("indexing %s -> %s; analysis %s", corpus, index_dir, analysis.describe())
    pretokenizer = Pretokenizer(analysis) if analysis.method == "pretokenized" else None
    index_dir.parent.mkdir(parents=True, exist_ok=True)
    sweep_leftovers(index_dir)  # work folders of killed `clir-ot index` runs
    work = Path(tempfile.mkdtemp(prefix=work_prefix(index_dir), suffix=".building.tmp", dir=index_dir.parent))
    started = time.time()
    try:
        input_dir = work / "input"
        input_dir.mkdir()
        count = 0
        with open(input_dir / "docs.jsonl", "w", encoding="utf-8") as handle:
            for doc in progress_bar(iter_corpus(corpus), desc=f"reading {corpus.name}", unit="doc", leave=False):
                contents = pretokenizer(doc.contents) if pretokenizer else doc.contents
                handle.write(json.dumps({"id": doc.docid, "contents": contents}, ensure_ascii=False) + "\n")
                count += 1
        if count == 0:
            raise InputFormatError(corpus, None, "corpus has no documents")
        built = work / "index"
        args = [
            "-collection", "JsonCollection", "-generator", "DefaultLuceneDocumentGenerator",
            "-input", str(input_dir), "-index", str(built), "-threads", str(max(1, threads)),
            "-storePositions", "-storeDocvectors", "-storeRaw", "-quiet",
        ]
        if analysis.method == "pretokenized":
            args.append("-pretokenized")
        elif analysis.language != "en":
            args += ["-language", analysis.language]
        from jnius import autoclass

        autoclass("io.anserini.index.IndexCollection").main(args)
        if not (built / "segments_1").exists() and not any(built.glob("segments_*")):
            raise ConfigError(f"Anserini did not write an index for {corpus} (see the log above)")
        info = IndexInfo(
            analysis=analysis,
            corpus=str(corpus.resolve()),
            corpus_sha256=sha256_of(corpus),
            documents=count,
            java=runtime.describe(),
            anserini=anserini_jar().name,
            clir_ot=__version__,
            seconds=round(time.time() - started, 3),
        )
        with atomic_open(built / MANIFEST) as out:
            json.dump(info.to_json(), out, indent=2, ensure_ascii=False)
        old = None
        if index_dir.exists():
            old = work / "previous"
            os.replace(index_dir, old)
        os.replace(built, index_dir)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    logger.info("indexed %d documents into %s in %.1fs", count, index_dir, info.seconds)
    return info


class BM25Searcher:
    """BM25 search over a Lucene index, with the analysis the index was built with.

    ``language`` is required for indexes not built by clir_ot (no manifest); for clir_ot indexes it
    is read from the manifest, and a different ``language`` is an error (any code of the same
    language, ``swh`` for ``sw``, is the same). ``thai_tokenizer`` and ``analyzer`` apply only to
    indexes without a manifest, whose analysis cannot be read.
    """

    def __init__(
        self,
        index_dir: str | os.PathLike,
        language: str | None = None,
        k1: float = DEFAULT_K1,
        b: float = DEFAULT_B,
        thai_tokenizer: str = "auto",
        analyzer: str = "auto",
    ):
        self.index_dir = Path(index_dir)
        self.k1, self.b = float(k1), float(b)
        if not (self.k1 >= 0 and 0 <= self.b <= 1):
            raise ConfigError(f"BM25 needs k1 >= 0 and b in [0, 1], got k1={k1}, b={b}")
        if not self.index_dir.is_dir():
            raise ConfigError(f"index {self.index_dir} does not exist (build it with: clir-ot index)")
        info = read_index_info(self.index_dir)
        if info is not None:
            self.analysis = info.analysis
            if language is not None and check_language(language) != self.analysis.language:
                raise ConfigError(
                    f"index {self.index_dir} was built for language {self.analysis.language!r}, not {language!r}"
                )
        else:
            if language is None:
                raise ConfigError(
                    f"index {self.index_dir} has no {MANIFEST} (not built by clir-ot): pass --language"
                )
            self.analysis = resolve_analysis(language, thai_tokenizer, analyzer)
            if self.analysis.method == "pretokenized":
                logger.warning(
                    "index %s was not built by clir-ot; assuming its documents were pretokenised with %s",
                    self.index_dir, self.analysis.tokenizer,
                )
        ensure_jvm()
        from jnius import JavaException, autoclass
        from pyserini.search.lucene import LuceneSearcher

        try:
            self._searcher = LuceneSearcher(str(self.index_dir))
        except JavaException as err:  # e.g. IndexNotFoundException: a folder without a Lucene index
            raise InputFormatError(self.index_dir, None, f"not a readable Lucene index ({err.classname}: "
                                   f"{str(err.innermessage or err).splitlines()[0]})") from None
        self._pretokenizer: Pretokenizer | None = None
        if self.analysis.method == "pretokenized":
            self._pretokenizer = Pretokenizer(self.analysis)
            whitespace = autoclass("org.apache.lucene.analysis.core.WhitespaceAnalyzer")
            self._searcher.set_analyzer(whitespace())
        elif self.analysis.language != "en":
            self._searcher.set_language(self.analysis.language)
        self._searcher.set_bm25(self.k1, self.b)
        logger.info("BM25(k1=%g, b=%g) over %s; %s", self.k1, self.b, self.index_dir, self.analysis.describe())

    @property
    def num_docs(self) -> int:
        return int(self._searcher.num_docs)

    def _query_text(self, query: str) -> str:
        return self._pretokenizer(query) if self._pretokenizer else query

    def search(self, query: str, k: int = 1000, qid: str = "") -> list[Hit]:
        """The top ``k`` hits of one query (ties in score broken by docid)."""
        text = self._query_text(query)
        if not text.strip():
            return []
        results = self._searcher.search(text, k=int(k))
        return strictly_decreasing(Hit(qid=qid, docid=r.docid, score=float(r.score)) for r in results)

    def batch_search(
        self, topics: Mapping[str, str], k: int = 1000, threads: int = 1, batch_size: int = 128
    ) -> Iterator[tuple[str, list[Hit]]]:
        """Search many queries with ``threads`` Java threads; yields ``(qid, hits)`` in topic order."""
        qids = list(topics)
        empty = 0
        with progress_bar(total=len(qids), desc=f"BM25 {self.index_dir.name}", unit="q", leave=False) as bar:
            for start in range(0, len(qids), batch_size):
                chunk = qids[start:start + batch_size]
                texts = [self._query_text(topics[q]) for q in chunk]
                live = [(q, t) for q, t in zip(chunk, texts) if t.strip()]
                results = {}
                if live:
                    results = self._searcher.batch_search(
                        [t for _, t in live], [q for q, _ in live], k=int(k), threads=int(threads)
                    )
                for qid in chunk:
                    found = results.get(qid, [])
                    if qid not in results:
                        empty += 1
                    yield qid, strictly_decreasing(Hit(qid=qid, docid=r.docid, score=float(r.score)) for r in found)
                bar.update(len(chunk))
        if empty:
            logger.warning("%d queries had no terms left after analysis and retrieved nothing", empty)

    def close(self) -> None:
        self._searcher.close()


def search_to_run(
    searcher: BM25Searcher,
    topics: Mapping[str, str],
    output: str | os.PathLike,
    k: int = 1000,
    threads: int = 1,
    batch_size: int = 128,
    tag: str = "bm25",
) -> Path:
    """Search all topics and write a TREC run atomically; returns the run path."""
    with RunWriter(output, tag=tag) as writer:
        for qid, hits in searcher.batch_search(topics, k=k, threads=threads, batch_size=batch_size):
            writer.write(qid, hits)
    logger.info("wrote %d queries, %d lines to %s", writer.queries, writer.lines, output)
    return Path(output)
