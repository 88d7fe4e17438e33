"""All file formats of the pipeline in one place: TREC runs and qrels, topics, JSONL corpora.

Readers are generators over a path (``.gz`` too) that check every line and raise
:class:`~clir_ot.errors.InputFormatError` naming the file, the 1-based line number and the problem.
Writers are atomic (a temporary file in the same folder, renamed over the target when complete), so
an interrupted job never leaves a truncated file behind.

Formats
-------
run      ``qid Q0 docid rank score tag`` (whitespace separated, 6 columns). The ranking is defined by
         the score, as trec_eval defines it; the rank column is informational.
qrels    ``qid iteration docid relevance`` (4 columns, integer relevance).
topics   ``qid<TAB>text`` (TSV), or JSONL with ``{"qid": ..., "query": ...}`` (``id``/``title``/``text``
         are accepted as the key names too).
corpus   JSONL ``{"id": ..., "contents": ...}`` -- Pyserini's ``JsonCollection`` -- as one file or a
         folder of ``*.jsonl`` files. Other fields are kept in :attr:`Document.fields`.
folds    JSON ``{"folds": [{"fold": k, "paragraphs": [...], ...}, ...]}``, the article folds of a
         cross-fitted collection (written by :func:`clir_ot.datasets.xquad.build_xquad_collections`).
bitext   the record :class:`BitextPair` is here, below every stage that makes or reads pairs (Tatoeba's
         probe in :mod:`clir_ot.datasets`, distillation in :mod:`clir_ot.distill`); its readers and
         writers are :mod:`clir_ot.distill.bitext`'s.

Tie handling: trec_eval orders documents of equal score by docid, which silently changes P@k, and it
compares scores as 32-bit floats (so does pytrec_eval): two scores that differ only beyond float32
precision tie there. Every run written here therefore has *strictly decreasing float32* scores
within a query: documents are sorted by ``(-score, docid)`` (Pyserini's tie-breaker), each score is
rounded to float32, and any score not below its predecessor is lowered to the next float32 below it.
Scores are written with ``repr`` so they read back exactly.
"""
from __future__ import annotations

import gzip
import json
import logging
import math
import os
import zlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any, Collection, Iterable, Iterator, Mapping, Sequence

import numpy as np

from clir_ot.errors import ConfigError, ConsistencyError, InputFormatError
from clir_ot.io import PathLike, atomic_open, is_jsonl, sha256_of, sha256_text

logger = logging.getLogger(__name__)

__all__ = [
    "BitextPair",
    "Document",
    "Hit",
    "PathLike",
    "RunWriter",
    "as_float32",
    "atomic_open",
    "iter_corpus",
    "iter_run",
    "iter_run_by_query",
    "load_corpus",
    "load_run",
    "parse_json_line",
    "read_folds",
    "read_qrels",
    "read_topics",
    "sha256_of",
    "strictly_decreasing",
    "trec_eval_ranking",
    "write_corpus",
    "write_qrels",
    "write_run",
    "write_topics",
]


# --------------------------------------------------------------------------------------------------
# Records


@dataclass(frozen=True, slots=True)
class Hit:
    """One retrieved document for one query: the toolkit's single record for results.

    ``rank`` is 1-based. ``text`` and ``lang`` are optional payloads (the passage text for a
    reranker, the document language for cross-lingual analyses).
    """

    qid: str
    docid: str
    score: float
    rank: int = 0
    text: str | None = None
    lang: str | None = None

    def with_score(self, score: float) -> "Hit":
        return replace(self, score=float(score))


@dataclass(frozen=True, slots=True)
class Document:
    """One passage of a corpus (Pyserini ``JsonCollection`` record)."""

    docid: str
    contents: str
    fields: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.docid, "contents": self.contents, **self.fields}


@dataclass(frozen=True, slots=True)
class BitextPair:
    """One English sentence/passage and its translation.

    ``source`` is the file the pair was read from (for the two-file layout, the foreign-language
    file) and ``line`` its 1-based line there, so any pair can be traced back; for XQuAD's parallel
    paragraphs ``source`` is the language's corpus folder and ``line`` the paragraph number.

    In-domain query bitext (XQuAD) adds ``query``, an English question put before both sides in
    ``query``-mode distillation (T reads (query, english), S reads (query, foreign)); ``qid`` and
    ``docids`` (the question's and both paragraphs' ids) let the leakage guard check the pair against
    a test fold. Bitext read from files has none of them.
    """

    english: str
    foreign: str
    source: str
    line: int
    query: str | None = None
    qid: str | None = None
    docids: tuple[str, ...] = ()


# --------------------------------------------------------------------------------------------------
# Low-level reading (atomic writing, hashing and the format of a name are :mod:`clir_ot.io`'s)


def _open_binary(path: Path) -> IO[bytes]:
    if not path.exists():
        raise InputFormatError(path, None, "no such file")
    if path.is_dir():
        raise InputFormatError(path, None, "is a folder, expected a file")
    if path.suffix == ".gz":
        return gzip.open(path, "rb")
    return open(path, "rb")


def iter_lines(path: PathLike) -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, text)`` for each line of a UTF-8 file, without the line ending.

    Invalid UTF-8 raises :class:`InputFormatError` at the offending line.
    """
    path = Path(path)
    number = 0
    with _open_binary(path) as handle:
        try:
            for number, raw in enumerate(handle, start=1):
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError as err:
                    raise InputFormatError(
                        path, number, f"invalid UTF-8 (byte {raw[err.start]:#04x} at column {err.start + 1})"
                    ) from None
                if number == 1 and text.startswith("\ufeff"):
                    text = text[1:]
                yield number, text.rstrip("\r\n")
        except (gzip.BadGzipFile, EOFError, zlib.error) as err:  # a .gz name on other bytes, or a cut-off file
            raise InputFormatError(path, number + 1, f"not a readable gzip file ({err})") from None


def _check_known(value: str, known: Collection[str] | None, what: str, path: Path, number: int, other: str) -> None:
    if known is not None and value not in known:
        raise InputFormatError(path, number, f"{what} {value!r} is not in the {other}")


# --------------------------------------------------------------------------------------------------
# Runs


def _parse_run_line(path: Path, number: int, line: str) -> tuple[str, str, int, float, str]:
    cols = line.split()
    if len(cols) != 6:
        raise InputFormatError(
            path, number, f"expected 6 columns 'qid Q0 docid rank score tag' in a run, found {len(cols)}: {line!r}"
        )
    qid, _q0, docid, rank_s, score_s, tag = cols
    try:
        score = float(score_s)
    except ValueError:
        raise InputFormatError(path, number, f"score {score_s!r} is not a number") from None
    if not math.isfinite(score):
        raise InputFormatError(path, number, f"score {score_s!r} is not finite")
    try:
        rank = int(rank_s)
    except ValueError:
        raise InputFormatError(path, number, f"rank {rank_s!r} is not an integer") from None
    return qid, docid, rank, score, tag


def iter_run(
    path: PathLike,
    known_qids: Collection[str] | None = None,
    known_docids: Collection[str] | None = None,
) -> Iterator[tuple[int, Hit]]:
    """Yield ``(line_number, hit)`` for every line of a TREC run, in file order.

    ``known_qids`` / ``known_docids``, when given, make an unknown query or document an error at
    its line (e.g. a run naming a query that the topics lack).
    """
    path = Path(path)
    for number, line in iter_lines(path):
        if not line.strip():
            continue
        qid, docid, rank, score, _tag = _parse_run_line(path, number, line)
        _check_known(qid, known_qids, "query", path, number, "topics")
        _check_known(docid, known_docids, "document", path, number, "corpus")
        yield number, Hit(qid=qid, docid=docid, score=score, rank=rank)


def as_float32(score: float) -> float:
    """``score`` rounded to the nearest 32-bit float, the precision trec_eval compares scores at."""
    return float(np.float32(score))


def scores_as_float32(scores: Iterable[float]) -> list[float]:
    """Every score rounded to 32-bit float, as trec_eval (and pytrec_eval) compare them."""
    return np.asarray(list(scores), dtype=np.float64).astype(np.float32).tolist()


def trec_eval_ranking(scores: Mapping[str, float]) -> list[str]:
    """The docids of one query in trec_eval's order: 32-bit score descending, then docid descending.

    This is the one definition of the ranking that trec_eval evaluates; the rank column of a run
    plays no part in it.
    """
    docids = list(scores)
    keyed = sorted(zip(scores_as_float32(scores.values()), docids), reverse=True)
    return [docid for _score, docid in keyed]


def _trec_eval_order(hits: list[Hit]) -> list[Hit]:
    """One query's hits (distinct docids) in :func:`trec_eval_ranking`'s order, ranked 1..n."""
    by_docid = {h.docid: h for h in hits}
    ranking = trec_eval_ranking({h.docid: h.score for h in hits})
    return [replace(by_docid[docid], rank=i) for i, docid in enumerate(ranking, start=1)]


def iter_run_by_query(
    path: PathLike,
    known_qids: Collection[str] | None = None,
    known_docids: Collection[str] | None = None,
) -> Iterator[tuple[str, list[Hit]]]:
    """Stream a run query by query: yields ``(qid, hits)`` with hits in ranking order.

    Only one query's lines are in memory at a time, so a run of any size can be reranked. The lines
    of one query must be contiguous (as every TREC tool writes them); the ranking is the one
    trec_eval evaluates (score descending, ties by docid descending), and ranks are renumbered 1..n.
    """
    path = Path(path)
    seen: set[str] = set()
    current: str | None = None
    hits: list[Hit] = []
    docids: set[str] = set()
    for number, hit in iter_run(path, known_qids, known_docids):
        if hit.qid != current:
            if current is not None:
                yield current, _trec_eval_order(hits)
            if hit.qid in seen:
                raise InputFormatError(
                    path, number,
                    f"query {hit.qid!r} appears again after other queries; the lines of a query must be "
                    "contiguous to stream the run (sort it with: sort -s -k1,1 RUN)",
                )
            seen.add(hit.qid)
            current, hits, docids = hit.qid, [], set()
        if hit.docid in docids:
            raise InputFormatError(path, number, f"document {hit.docid!r} appears twice for query {hit.qid!r}")
        docids.add(hit.docid)
        hits.append(hit)
    if current is not None:
        yield current, _trec_eval_order(hits)


def load_run(
    path: PathLike,
    known_qids: Collection[str] | None = None,
    known_docids: Collection[str] | None = None,
) -> dict[str, dict[str, float]]:
    """Read a whole run as ``{qid: {docid: score}}`` (the shape pytrec_eval takes).

    Unlike :func:`iter_run_by_query`, the lines of a query need not be contiguous.
    """
    run: dict[str, dict[str, float]] = {}
    path = Path(path)
    for number, hit in iter_run(path, known_qids, known_docids):
        scores = run.setdefault(hit.qid, {})
        if hit.docid in scores:
            raise InputFormatError(path, number, f"document {hit.docid!r} appears twice for query {hit.qid!r}")
        scores[hit.docid] = hit.score
    return run


def strictly_decreasing(hits: Iterable[Hit], keep_order: bool = False) -> list[Hit]:
    """Return the hits of one query ranked 1..n with strictly decreasing scores.

    Unless ``keep_order``, hits are first sorted by ``(-score, docid)``. Scores are rounded to float32
    (trec_eval's precision) and every score that is not below the previous one is lowered to the next
    float32 below it, so no reader can reorder ties.
    """
    hits = list(hits)
    if not keep_order:
        hits.sort(key=lambda h: (-h.score, h.docid))
    out: list[Hit] = []
    previous = np.float32(np.inf)
    lowest = np.float32(-np.inf)
    for rank, hit in enumerate(hits, start=1):
        score = np.float32(hit.score)
        if not score < previous:
            score = np.nextafter(previous, lowest)
        out.append(replace(hit, score=float(score), rank=rank))
        previous = score
    return out


def _format_score(score: float) -> str:
    return repr(float(score))


class RunWriter:
    """Write a TREC run query by query, atomically, optionally resumable.

    >>> with RunWriter("runs/run.txt", tag="bm25") as writer:   # doctest: +SKIP
    ...     writer.write("q1", hits)

    Each query's hits are written with :func:`strictly_decreasing` scores. The file appears only
    when the ``with`` block ends without an exception.

    ``resumable=True`` is for long jobs (reranking millions of lines): lines go to a hidden
    ``.<name>.partial`` file beside the target, and after each :meth:`checkpoint` the finished
    queries and the file length are appended to ``.<name>.partial.done``. A job killed at any moment
    and started again with the same arguments skips the queries in :attr:`done` (the partial file
    is cut back to the last checkpoint), and the target appears, renamed, once all are written.
    ``signature`` (any text: the model, its settings, the input run) is recorded in the journal; an
    unfinished run with another signature, or none, is discarded rather than continued, so one
    file never mixes two models' scores.
    """

    def __init__(self, path: PathLike, tag: str = "clir_ot", keep_order: bool = False, resumable: bool = False,
                 signature: str | None = None):
        self.path = Path(path)
        self.signature = None if signature is None else sha256_text(signature)
        if not tag or any(c.isspace() for c in tag):
            raise ConfigError(f"run tag must be one non-empty word, got {tag!r}")
        self.tag = tag
        self.keep_order = keep_order
        self.resumable = resumable
        self._context = None
        self._handle: IO[str] | None = None
        self._qids: set[str] = set()
        self._pending: list[str] = []
        self.done: set[str] = set()
        self.queries = 0
        self.lines = 0
        self._partial = self.path.parent / f".{self.path.name}.partial"
        self._journal = self.path.parent / f".{self.path.name}.partial.done"

    def __enter__(self) -> "RunWriter":
        if not self.resumable:
            self._context = atomic_open(self.path, "w")
            self._handle = self._context.__enter__()
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        offset = 0
        header = f"#signature\t{self.signature}" if self.signature else None
        entries: list[str] = []
        if self._partial.exists() and self._journal.exists():
            entries = self._journal.read_text(encoding="utf-8").splitlines()
            if header is not None and (not entries or entries[0] != header):
                logger.warning("%s: discarding the unfinished run (%s) made with other settings; starting over",
                               self.path, self._partial.name)
                entries = []
                self._journal.unlink()
        else:
            self._journal.unlink(missing_ok=True)
        for line in entries:
            cols = line.split("\t")
            if not line.startswith("#") and len(cols) == 2 and cols[1].isdigit():  # a torn last line is ignored
                self.done.add(cols[0])
                offset = int(cols[1])
        if header is not None and not self._journal.exists():
            with open(self._journal, "w", encoding="utf-8") as journal:
                journal.write(header + "\n")
                journal.flush()
                os.fsync(journal.fileno())
        self._qids = set(self.done)
        handle = open(self._partial, "a+b")
        handle.truncate(offset)
        handle.close()
        self._handle = open(self._partial, "a", encoding="utf-8", newline="\n")
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if not self.resumable:
            assert self._context is not None
            return bool(self._context.__exit__(exc_type, exc, tb))
        assert self._handle is not None
        if exc_type is None:
            self.checkpoint()
        self._handle.close()
        if exc_type is None:
            os.replace(self._partial, self.path)
            self._journal.unlink(missing_ok=True)
        return False

    def write(self, qid: str, hits: Iterable[Hit]) -> None:
        if self._handle is None:
            raise RuntimeError("RunWriter.write() outside its 'with' block")
        if qid in self._qids:
            raise ConsistencyError(f"query {qid!r} written twice to {self.path}")
        self._qids.add(qid)
        ranked = strictly_decreasing(hits, keep_order=self.keep_order)
        docids = set()
        lines = []
        for hit in ranked:
            if hit.docid in docids:
                raise ConsistencyError(f"document {hit.docid!r} given twice for query {qid!r}")
            docids.add(hit.docid)
            lines.append(f"{qid} Q0 {hit.docid} {hit.rank} {_format_score(hit.score)} {self.tag}\n")
        self._handle.writelines(lines)
        self._pending.append(qid)
        self.queries += 1
        self.lines += len(lines)

    def checkpoint(self) -> None:
        """Make every query written so far survive a kill (resumable writers; a no-op otherwise)."""
        if not self.resumable or self._handle is None or not self._pending:
            return
        self._handle.flush()
        os.fsync(self._handle.fileno())
        offset = self._partial.stat().st_size
        with open(self._journal, "a", encoding="utf-8") as journal:
            journal.writelines(f"{qid}\t{offset}\n" for qid in self._pending)
            journal.flush()
            os.fsync(journal.fileno())
        self.done.update(self._pending)
        self._pending.clear()


def write_run(
    path: PathLike,
    run: Mapping[str, Iterable[Hit]] | Iterable[tuple[str, Iterable[Hit]]],
    tag: str = "clir_ot",
    keep_order: bool = False,
) -> Path:
    """Write ``{qid: hits}`` (or ``(qid, hits)`` pairs) as a TREC run; see :class:`RunWriter`."""
    items = run.items() if isinstance(run, Mapping) else run
    with RunWriter(path, tag=tag, keep_order=keep_order) as writer:
        for qid, hits in items:
            writer.write(qid, hits)
    return Path(path)


def hits_from_scores(qid: str, scores: Mapping[str, float]) -> list[Hit]:
    """Hits of one query from ``{docid: score}``, ranked by ``(-score, docid)``."""
    hits = [Hit(qid=qid, docid=d, score=float(s)) for d, s in scores.items()]
    return strictly_decreasing(hits)


# --------------------------------------------------------------------------------------------------
# Qrels


def read_qrels(path: PathLike, known_qids: Collection[str] | None = None) -> dict[str, dict[str, int]]:
    """Read TREC qrels as ``{qid: {docid: relevance}}``."""
    path = Path(path)
    qrels: dict[str, dict[str, int]] = {}
    for number, line in iter_lines(path):
        if not line.strip():
            continue
        cols = line.split()
        if len(cols) != 4:
            raise InputFormatError(
                path, number, f"expected 4 columns 'qid iteration docid relevance' in qrels, found {len(cols)}: {line!r}"
            )
        qid, _iteration, docid, rel_s = cols
        try:
            rel = int(rel_s)
        except ValueError:
            raise InputFormatError(path, number, f"relevance {rel_s!r} is not an integer") from None
        _check_known(qid, known_qids, "query", path, number, "topics")
        judged = qrels.setdefault(qid, {})
        if docid in judged:
            raise InputFormatError(path, number, f"document {docid!r} judged twice for query {qid!r}")
        judged[docid] = rel
    return qrels


def write_qrels(path: PathLike, qrels: Mapping[str, Mapping[str, int]]) -> Path:
    with atomic_open(path) as handle:
        for qid, judged in qrels.items():
            for docid, rel in judged.items():
                handle.write(f"{qid} 0 {docid} {int(rel)}\n")
    return Path(path)


# --------------------------------------------------------------------------------------------------
# Topics

_QID_KEYS = ("qid", "id")
_TEXT_KEYS = ("query", "title", "text")


def parse_json_line(path: Path, number: int, line: str) -> dict:
    """One JSONL line as an object; an error names ``path:number`` and the problem."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as err:
        raise InputFormatError(path, number, f"invalid JSON ({err.msg} at column {err.colno})") from None
    if not isinstance(record, dict):
        raise InputFormatError(path, number, f"expected a JSON object, found {type(record).__name__}")
    return record


def _pick(record: dict, keys: Sequence[str], path: Path, number: int, what: str) -> str:
    present = [k for k in keys if k in record]
    if not present:
        raise InputFormatError(path, number, f"missing the {what} field (one of {', '.join(keys)})")
    value = record[present[0]]
    if isinstance(value, (int, float)) and not isinstance(value, bool) and what == "query id":
        value = str(value)
    if not isinstance(value, str):
        raise InputFormatError(path, number, f"field {present[0]!r} must be a string, found {type(value).__name__}")
    return value


def read_topics(path: PathLike) -> dict[str, str]:
    """Read topics as an ordered ``{qid: text}`` from TSV (``qid<TAB>text``) or JSONL."""
    path = Path(path)
    topics: dict[str, str] = {}
    jsonl = is_jsonl(path)
    for number, line in iter_lines(path):
        if not line.strip():
            continue
        if jsonl:
            record = parse_json_line(path, number, line)
            qid = _pick(record, _QID_KEYS, path, number, "query id")
            text = _pick(record, _TEXT_KEYS, path, number, "query text")
        else:
            cols = line.split("\t")
            if len(cols) != 2:
                raise InputFormatError(
                    path, number, f"expected 2 tab-separated columns 'qid<TAB>text' in topics, found {len(cols)}"
                )
            qid, text = cols
        qid = qid.strip()
        if not qid or any(c.isspace() for c in qid):
            raise InputFormatError(path, number, f"query id {qid!r} is empty or contains whitespace")
        if not text.strip():
            raise InputFormatError(path, number, f"query {qid!r} has empty text")
        if qid in topics:
            raise InputFormatError(path, number, f"query {qid!r} appears twice")
        topics[qid] = text.strip()
    if not topics:
        raise InputFormatError(path, None, "no topics: the file is empty")
    return topics


def write_topics(path: PathLike, topics: Mapping[str, str]) -> Path:
    path = Path(path)
    with atomic_open(path) as handle:
        for qid, text in topics.items():
            text = " ".join(text.split())
            if is_jsonl(path):
                handle.write(json.dumps({"qid": qid, "query": text}, ensure_ascii=False) + "\n")
            else:
                handle.write(f"{qid}\t{text}\n")
    return path


# --------------------------------------------------------------------------------------------------
# Corpora


def _corpus_files(path: Path) -> list[Path]:
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and is_jsonl(p))
        if not files:
            raise InputFormatError(path, None, "folder contains no .jsonl/.json files")
        return files
    return [path]


def iter_corpus(path: PathLike) -> Iterator[Document]:
    """Yield the documents of a JSONL corpus (a file, or a folder of ``*.jsonl`` files)."""
    path = Path(path)
    if not path.exists():
        raise InputFormatError(path, None, "no such file")
    seen: set[str] = set()
    for file in _corpus_files(path):
        for number, line in iter_lines(file):
            if not line.strip():
                continue
            record = parse_json_line(file, number, line)
            if "id" not in record:
                raise InputFormatError(file, number, "missing the 'id' field")
            docid = record.pop("id")
            if not isinstance(docid, str):
                docid = str(docid)
            if not docid or any(c.isspace() for c in docid):
                raise InputFormatError(file, number, f"document id {docid!r} is empty or contains whitespace")
            contents = record.pop("contents", None)
            if not isinstance(contents, str):
                raise InputFormatError(file, number, f"document {docid!r} has no string 'contents' field")
            if not contents.strip():
                raise InputFormatError(file, number, f"document {docid!r} has empty contents")
            if docid in seen:
                raise InputFormatError(file, number, f"document {docid!r} appears twice")
            seen.add(docid)
            yield Document(docid=docid, contents=contents, fields=record)


def load_corpus(path: PathLike) -> dict[str, str]:
    """Read a corpus as ``{docid: contents}``."""
    return {doc.docid: doc.contents for doc in iter_corpus(path)}


def write_corpus(path: PathLike, documents: Iterable[Document]) -> Path:
    with atomic_open(path) as handle:
        for doc in documents:
            handle.write(json.dumps(doc.to_json(), ensure_ascii=False) + "\n")
    return Path(path)


# --------------------------------------------------------------------------------------------------
# Folds


def read_text(path: PathLike) -> str:
    """The whole of a small UTF-8 text file (a config, a manifest), BOM removed.

    A missing file, a folder or invalid UTF-8 is an :class:`InputFormatError` naming the file (and for
    invalid UTF-8 the line and column of the first bad byte).
    """
    path = Path(path)
    if path.is_dir():
        raise InputFormatError(path, None, "is a folder, expected a file")
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise InputFormatError(path, None, "no such file") from None
    except OSError as err:
        raise InputFormatError(path, None, f"cannot read it ({err.strerror or err})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line_start = raw.rfind(b"\n", 0, err.start) + 1
        raise InputFormatError(path, raw.count(b"\n", 0, err.start) + 1,
                               f"invalid UTF-8 (byte {raw[err.start]:#04x} at column {err.start - line_start + 1})") from None
    return text[1:] if text.startswith("\ufeff") else text


def read_json_object(path: PathLike) -> dict:
    """A JSON file whose top level is an object (a manifest, a settings file); an error names the file,
    the line and the problem."""
    path = Path(path)
    try:
        data = json.loads(read_text(path))
    except json.JSONDecodeError as err:
        raise InputFormatError(path, err.lineno, f"not JSON ({err.msg})") from None
    if not isinstance(data, dict):
        raise InputFormatError(path, None, f"expected a JSON object, found {type(data).__name__}")
    return data


def read_folds(path: PathLike) -> list[dict]:
    """The fold records of a ``folds.json`` (each has ``fold`` and ``paragraphs``, and for XQuAD the
    test ``qids`` and ``docids``), as written by :func:`clir_ot.datasets.xquad.build_xquad_collections`."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))["folds"]
    except FileNotFoundError:
        raise InputFormatError(path, None, "no such file") from None
    except (json.JSONDecodeError, KeyError) as err:
        raise InputFormatError(path, None, f"not a folds file ({err})") from None


# --------------------------------------------------------------------------------------------------
# Cross-file checks


def check_qids(
    reference: Collection[str], other: Iterable[str], reference_name: str, other_name: str
) -> None:
    """Raise :class:`ConsistencyError` if ``other`` names queries that ``reference`` lacks."""
    unknown = sorted(set(other) - set(reference))
    if unknown:
        shown = ", ".join(unknown[:5]) + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
        raise ConsistencyError(f"{other_name} has {len(unknown)} queries not in {reference_name}: {shown}")
