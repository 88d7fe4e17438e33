"""Tatoeba as cross-lingual sentence retrieval (as LASER and XTREME evaluate it), with a leak-free split.

Each English sentence of a language's test half is a query; the language's test-half sentences
are the collection; a query's relevant documents are its translations. The split into a
*distillation* half and a *test* half is deterministic and leak-free: pairs that share an English
or a foreign text (Tatoeba repeats sentences) form one group, found by union-find, and a group goes
to the test half when the SHA-256 of ``"<salt>:<its smallest English text>"`` read as a fraction
is below ``test_fraction``. So no sentence of a test pair is ever seen by a student distilled on the
other half, and the split depends on the texts only (not on line order, seeds or machines).

Identifiers: query ``en-<n>`` and document ``<lang>-<n>`` (``n``: 0-based position among the distinct
texts of the test half, in file order).

:class:`ProbeLayout` names the probe's files, and :func:`write_task` writes a language's test half as
a standard IR collection (topics, a Pyserini JsonCollection and TREC qrels), so its runs can be
evaluated with trec_eval like any other.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from clir_ot.errors import ConfigError, ConsistencyError, LeakageError
from clir_ot.formats import BitextPair, Document, iter_corpus, read_topics, write_corpus, write_qrels, write_topics
from clir_ot.io import FolderLayout

__all__ = ["ZERO_SHOT", "ProbeCollection", "ProbeLayout", "SentenceTask", "check_probe_leakage", "probe_half",
           "probe_split", "sentence_task", "write_task"]

SALT = "tatoeba-probe"


@dataclass(frozen=True)
class SentenceTask:
    """One language's sentence-retrieval task: English queries, foreign documents, relevance."""

    lang: str
    queries: dict[str, str]
    documents: dict[str, str]
    qrels: dict[str, frozenset[str]]


def _groups(pairs: Sequence[BitextPair]) -> list[int]:
    """The group (a representative index) of each pair: pairs sharing an English or foreign text are one."""
    parent = list(range(len(pairs)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first: dict[tuple[str, str], int] = {}
    for i, pair in enumerate(pairs):
        for key in (("e", pair.english), ("f", pair.foreign)):
            j = first.setdefault(key, i)
            a, b = find(i), find(j)
            if a != b:
                parent[max(a, b)] = min(a, b)
    return [find(i) for i in range(len(pairs))]


def _fraction(text: str, salt: str) -> float:
    digest = hashlib.sha256(f"{salt}:{text}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def probe_split(
    pairs: Sequence[BitextPair], test_fraction: float = 0.5, salt: str = SALT
) -> tuple[list[BitextPair], list[BitextPair]]:
    """``(distill, test)``: the leak-free, deterministic split of the module docstring, each in input order."""
    if not 0 < test_fraction < 1:
        raise ConfigError(f"test_fraction must be between 0 and 1 (exclusive), got {test_fraction}")
    groups = _groups(pairs)
    smallest: dict[int, str] = {}
    for group, pair in zip(groups, pairs):
        if group not in smallest or pair.english < smallest[group]:
            smallest[group] = pair.english
    in_test = {g: _fraction(text, salt) < test_fraction for g, text in smallest.items()}
    distill = [p for g, p in zip(groups, pairs) if not in_test[g]]
    test = [p for g, p in zip(groups, pairs) if in_test[g]]
    if not distill or not test:
        raise ConsistencyError(f"the split of {len(pairs)} pairs left a half empty; the bitext is too small")
    return distill, test


def probe_half(pairs: Sequence[BitextPair], half: str) -> list[BitextPair]:
    """The ``distill`` or ``test`` half of :func:`probe_split` (at its defaults)."""
    if half not in ("distill", "test"):
        raise ConfigError(f"a probe half is 'distill' or 'test', not {half!r}")
    distill, test = probe_split(pairs)
    return distill if half == "distill" else test


def sentence_task(lang: str, pairs: Sequence[BitextPair]) -> SentenceTask:
    """The retrieval task over ``pairs`` (a test half): distinct English texts retrieve distinct foreign ones."""
    queries: dict[str, str] = {}
    documents: dict[str, str] = {}
    qid_of: dict[str, str] = {}
    docid_of: dict[str, str] = {}
    qrels: dict[str, set[str]] = {}
    for pair in pairs:
        if pair.english not in qid_of:
            qid_of[pair.english] = f"en-{len(queries)}"
            queries[qid_of[pair.english]] = pair.english
        if pair.foreign not in docid_of:
            docid_of[pair.foreign] = f"{lang}-{len(documents)}"
            documents[docid_of[pair.foreign]] = pair.foreign
        qrels.setdefault(qid_of[pair.english], set()).add(docid_of[pair.foreign])
    if not queries:
        raise ConsistencyError(f"no pairs for the {lang} sentence-retrieval task")
    return SentenceTask(lang, queries, documents, {q: frozenset(d) for q, d in qrels.items()})


#: The probe's dense first stage: the unchanged encoder, whose runs every student is compared with.
ZERO_SHOT = "zero-shot"


@dataclass(frozen=True)
class ProbeCollection(FolderLayout):
    """The test halves under ``root`` as standard IR files (see :class:`ProbeLayout`)."""

    def queries_for(self, lang: str) -> Path:
        """The English sentences that search ``lang``'s test half (each language has its own)."""
        return self.root / f"topics.tatoeba.en-{lang}.tsv"

    def corpus(self, lang: str) -> Path:
        """The folder of ``lang``'s test-half sentences (a Pyserini JsonCollection)."""
        return self.root / "corpus" / lang

    def qrels(self, lang: str) -> Path:
        return self.root / f"qrels.tatoeba.en-{lang}.txt"

    @property
    def manifest(self) -> Path:
        """How the zero-shot runs were encoded (a study's students must be searched the same way)."""
        return self.root / "manifest.json"


@dataclass(frozen=True)
class ProbeLayout(FolderLayout):
    """Every path of the probe under ``root`` (e.g. ``runs/tatoeba-probe``), spelled once::

        <root>/collection/topics.tatoeba.en-<L>.tsv     English sentences of L's test half (the queries)
        <root>/collection/corpus/<L>/docs.jsonl         L's sentences of its test half (the documents)
        <root>/collection/qrels.tatoeba.en-<L>.txt      each English sentence -> its translations
        <root>/collection/manifest.json                 the encoder and settings of the zero-shot runs
        <root>/run.tatoeba.zero-shot.en-<L>.txt         the zero-shot ranking (the study's first stage)
        <root>/probe.<L>.json                           the split's sizes and every query's scores
        <root>/table.tatoeba-probe.{md,json}, plot.tatoeba-probe.png

    It is also the baseline folder of a study with ``dataset: tatoeba-probe``: its zero-shot runs are
    the first stage (``none``), and the study's students search its test halves.

    >>> ProbeLayout("runs/tatoeba-probe").first_stage_run("sw").as_posix()
    'runs/tatoeba-probe/run.tatoeba.zero-shot.en-sw.txt'
    """

    @property
    def collection(self) -> ProbeCollection:
        return ProbeCollection(self.root / "collection")

    def topics(self, lang: str) -> Path:
        return self.collection.queries_for(lang)

    def corpus(self, lang: str) -> Path:
        return self.collection.corpus(lang)

    def qrels(self, lang: str) -> Path:
        return self.collection.qrels(lang)

    def run(self, system: str, lang: str) -> Path:
        return self.root / f"run.tatoeba.{system}.en-{lang}.txt"

    def first_stage_run(self, lang: str) -> Path:
        """The zero-shot run of ``lang`` (the unchanged encoder on both sides)."""
        return self.run(ZERO_SHOT, lang)

    def student_tag(self, method: str) -> str:
        """The run tag of a study's dense student of ``method``."""
        return f"{ZERO_SHOT}-student-{method}"

    def record(self, lang: str) -> Path:
        return self.root / f"probe.{lang}.json"

    def table(self, suffix: str) -> Path:
        return self.root / f"table.tatoeba-probe.{suffix}"

    @property
    def plot(self) -> Path:
        return self.root / "plot.tatoeba-probe.png"


def write_task(layout: ProbeLayout, task: SentenceTask) -> None:
    """Write ``task`` (a language's test half) as topics, corpus and qrels under ``layout.collection``."""
    write_topics(layout.collection.queries_for(task.lang), task.queries)
    layout.corpus(task.lang).mkdir(parents=True, exist_ok=True)
    write_corpus(layout.corpus(task.lang) / "docs.jsonl",
                 (Document(docid, text) for docid, text in task.documents.items()))
    write_qrels(layout.qrels(task.lang), {qid: dict.fromkeys(sorted(docs), 1) for qid, docs in task.qrels.items()})


def check_probe_leakage(pairs: Sequence[BitextPair], collection: ProbeCollection, lang: str) -> int:
    """Raise :class:`~clir_ot.errors.LeakageError` if a pair's English text is a query of ``lang``'s test
    half in ``collection`` or its foreign text one of its documents (texts compared with whitespace
    collapsed, as the collection stores them); returns the number of pairs checked."""
    queries = set(read_topics(collection.queries_for(lang)).values())
    documents = {" ".join(doc.contents.split()) for doc in iter_corpus(collection.corpus(lang))}
    for pair in pairs:
        english, foreign = " ".join(pair.english.split()), " ".join(pair.foreign.split())
        if english in queries or foreign in documents:
            where = f"{pair.source}:{pair.line}" if pair.line is not None else pair.source
            raise LeakageError(f"bitext pair {where} ({english[:60]!r}) is part of the {lang} probe's test half "
                               f"in {collection.root}: a student must never see a test sentence")
    return len(pairs)
