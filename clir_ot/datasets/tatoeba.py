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

from clir_ot.errors import ConfigError, ConsistencyError
from clir_ot.formats import BitextPair, Document, write_corpus, write_qrels, write_topics

__all__ = ["ProbeLayout", "SentenceTask", "probe_split", "sentence_task", "write_task"]

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


@dataclass(frozen=True)
class ProbeLayout:
    """Every path of the probe under ``root`` (e.g. ``runs/tatoeba-probe``), spelled once::

        <root>/collection/topics.tatoeba.en-<L>.tsv     English sentences of L's test half (the queries)
        <root>/collection/corpus/<L>/docs.jsonl         L's sentences of its test half (the documents)
        <root>/collection/qrels.tatoeba.en-<L>.txt      each English sentence -> its translations
        <root>/run.tatoeba.<system>.en-<L>.txt          one system's ranking (zero-shot, mse-sent, ...)
        <root>/probe.<L>.json                           the split's sizes and every query's scores
        <root>/students/<method>.<L>/                   a dense student distilled on L's other half
        <root>/table.tatoeba-probe.{md,json}, plot.tatoeba-probe.png

    >>> ProbeLayout("runs/tatoeba-probe").run("ot", "sw").as_posix()
    'runs/tatoeba-probe/run.tatoeba.ot.en-sw.txt'
    """

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @property
    def collection(self) -> Path:
        return self.root / "collection"

    def topics(self, lang: str) -> Path:
        return self.collection / f"topics.tatoeba.en-{lang}.tsv"

    def corpus(self, lang: str) -> Path:
        """The folder of ``lang``'s test-half sentences (a Pyserini JsonCollection)."""
        return self.collection / "corpus" / lang

    def qrels(self, lang: str) -> Path:
        return self.collection / f"qrels.tatoeba.en-{lang}.txt"

    def run(self, system: str, lang: str) -> Path:
        return self.root / f"run.tatoeba.{system}.en-{lang}.txt"

    def record(self, lang: str) -> Path:
        return self.root / f"probe.{lang}.json"

    def student(self, method: str, lang: str) -> Path:
        return self.root / "students" / f"{method}.{lang}"

    def table(self, suffix: str) -> Path:
        return self.root / f"table.tatoeba-probe.{suffix}"

    @property
    def plot(self) -> Path:
        return self.root / "plot.tatoeba-probe.png"


def write_task(layout: ProbeLayout, task: SentenceTask) -> None:
    """Write ``task`` (a language's test half) as topics, corpus and qrels under ``layout.collection``."""
    write_topics(layout.topics(task.lang), task.queries)
    layout.corpus(task.lang).mkdir(parents=True, exist_ok=True)
    write_corpus(layout.corpus(task.lang) / "docs.jsonl",
                 (Document(docid, text) for docid, text in task.documents.items()))
    write_qrels(layout.qrels(task.lang), {qid: dict.fromkeys(sorted(docs), 1) for qid, docs in task.qrels.items()})
