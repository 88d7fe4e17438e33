"""Training groups for rerankers: a query, one positive passage and k negatives.

Three sources, one record (:class:`TrainingGroup`):

* a collection the toolkit reads -- topics, qrels, corpus and a first-stage run for **hard
  negatives** (:func:`build_groups`, :func:`groups_from_files`): negatives are drawn from the run's
  top ``depth`` documents, and every document the qrels judge relevant for the query (the positive
  and all others) is excluded from them;
* a triples TSV ``query<TAB>positive<TAB>negative`` (MS MARCO's training format, :func:`read_triples`);
* JSONL groups ``{"query": ..., "positive": ..., "negatives": [...]}`` (:func:`read_groups`), optionally
  with ``qid``, ``positive_id`` and ``negative_ids``.

XQuAD cross-fitting: :func:`xquad_fold_split` gives the questions and paragraphs (every language) of
the folds other than the test fold, and :func:`assert_no_leakage` refuses training data that names
anything of the test fold (a question id, a paragraph id in any language, or a paragraph index).

:func:`load_training_data` puts it together for ``clir-ot train`` from a :class:`DataSpec`.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Collection, Iterable, Mapping, Sequence

import numpy as np

from clir_ot.errors import ConfigError, ConsistencyError, InputFormatError, LeakageError
from clir_ot.training.groups import TrainingData, TrainingGroup, string_list, target_scores_field, text_field
from clir_ot.training.streaming import load_streamed_data
from clir_ot.formats import iter_lines, load_corpus, load_run, parse_json_line, read_folds, read_qrels, read_topics
from clir_ot.io import PathLike, atomic_open, is_jsonl, is_tsv, sha256_of
from clir_ot.settings import derived_rng

logger = logging.getLogger(__name__)

DEFAULT_NEGATIVES = 7
DEFAULT_DEPTH = 100
DEFAULT_VALID_NEGATIVES = 29

__all__ = [
    "DataSpec",
    "FoldSplit",
    "TrainingData",
    "TrainingGroup",
    "assert_no_leakage",
    "attach_target_scores",
    "build_groups",
    "cut_negatives",
    "groups_fingerprint",
    "groups_from_files",
    "load_training_data",
    "read_groups",
    "read_triples",
    "split_groups",
    "write_groups",
    "xquad_fold_split",
]


# --------------------------------------------------------------------------------------------------
# Negatives per group


def cut_negatives(groups: Sequence[TrainingGroup], num_negatives: int | None, where: str = "training data") -> list[TrainingGroup]:
    """Give every group exactly ``num_negatives`` negatives (its first ones), as batched training needs.

    ``None`` keeps the groups as they are but requires them all to have the same number. A group
    with fewer negatives than asked is an error that names it.
    """
    groups = list(groups)
    if not groups:
        return groups
    if num_negatives is None:
        sizes = sorted({len(g.negatives) for g in groups})
        if len(sizes) > 1:
            raise ConsistencyError(
                f"{where}: groups have between {sizes[0]} and {sizes[-1]} negatives; training needs the same "
                f"number in every group: set --negatives (at most {sizes[0]}) to cut them"
            )
        return groups
    if num_negatives < 1:
        raise ConfigError(f"negatives must be at least 1, got {num_negatives}")
    out = []
    for i, group in enumerate(groups):
        if len(group.negatives) < num_negatives:
            raise ConsistencyError(
                f"{where}: group {i + 1} (query {group.qid or group.query!r}) has {len(group.negatives)} "
                f"negatives, fewer than the {num_negatives} asked (--negatives)"
            )
        if len(group.negatives) == num_negatives:
            out.append(group)
        else:
            docids = group.docids[: 1 + num_negatives] if group.docids is not None else None
            targets = group.target_scores[: 1 + num_negatives] if group.target_scores is not None else None
            out.append(TrainingGroup(group.query, group.positive, group.negatives[:num_negatives], group.qid, docids,
                                     targets))
    return out


def groups_fingerprint(groups: Iterable[TrainingGroup]) -> str:
    """SHA-256 of the groups' contents in order (what a resumed run checks it trains on)."""
    digest = hashlib.sha256()
    for group in groups:
        digest.update(json.dumps(group.to_json(), ensure_ascii=False, sort_keys=True).encode("utf-8"))
        digest.update(b"\n")
    return digest.hexdigest()


# --------------------------------------------------------------------------------------------------
# Groups from a collection and a first-stage run


def _stable_int(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "little")


def _ranked_docids(scores: Mapping[str, float] | Sequence[Any]) -> list[str]:
    """Docids of one query's run in ranking order: score descending, ties by docid (Pyserini's tie-breaker)."""
    if isinstance(scores, Mapping):
        return [d for d, _ in sorted(scores.items(), key=lambda item: (-float(item[1]), item[0]))]
    hits = sorted(scores, key=lambda h: (-float(h.score), h.docid))  # Hit records
    return [h.docid for h in hits]


def _shown(items: Iterable[str], limit: int = 5) -> str:
    items = list(items)
    return ", ".join(items[:limit]) + (f" and {len(items) - limit} more" if len(items) > limit else "")


def build_groups(
    topics: Mapping[str, str],
    qrels: Mapping[str, Mapping[str, int]],
    corpus: Mapping[str, str],
    run: Mapping[str, Mapping[str, float] | Sequence[Any]],
    num_negatives: int = DEFAULT_NEGATIVES,
    seed: int = 42,
    *,
    depth: int = DEFAULT_DEPTH,
    exclude_qids: Collection[str] = (),
    allowed_docids: Collection[str] | None = None,
    min_relevance: int = 1,
    sample: bool = True,
    fill_random: bool = True,
) -> list[TrainingGroup]:
    """Training groups with hard negatives from a first-stage run.

    One group per (query, relevant document): for each query of ``topics`` that has qrels and is not
    in ``exclude_qids``, each document judged ``>= min_relevance`` (the positives, best judged
    first, ties by docid) becomes the positive of a group. Its negatives come from the query's top
    ``depth`` documents in ``run`` minus *every* document judged relevant for the query and minus
    documents outside ``allowed_docids`` (when given):

    * ``sample=True``: ``num_negatives`` of them drawn at random (a generator seeded from ``seed``
      and the qid, so a query's negatives do not depend on the others); ``False``: the top ones in
      ranking order (validation groups: the first stage's own hard cases).
    * Too few candidates: ``fill_random=True`` fills up with random documents of the corpus
      (allowed, not relevant), otherwise the group keeps fewer negatives.

    A query without a usable positive (none judged, or none in ``allowed_docids``) or without any
    candidate negative in the run is skipped; the skips are counted in one warning. If no group
    remains, :class:`~clir_ot.errors.ConsistencyError` says why.

    Args:
        topics: ``{qid: query text}``.
        qrels: ``{qid: {docid: relevance}}``; every judged document must be in ``corpus``.
        corpus: ``{docid: passage text}``.
        run: ``{qid: {docid: score}}`` (:func:`~clir_ot.formats.load_run`) or ``{qid: [Hit, ...]}``.
        num_negatives: negatives per group.
        seed: seeds the sampling of negatives.
        depth: how many of the run's top documents are candidate negatives.
        exclude_qids: queries never used (e.g. a test fold's).
        allowed_docids: the only documents that may appear in a group (e.g. the training folds').
        min_relevance: the smallest relevance grade that counts as relevant.
        sample, fill_random: see above.

    Returns:
        The groups, in topics order.
    """
    if num_negatives < 1:
        raise ConfigError(f"negatives must be at least 1, got {num_negatives}")
    if depth < 1:
        raise ConfigError(f"depth must be at least 1, got {depth}")
    unknown = sorted({d for judged in qrels.values() for d in judged} - set(corpus))
    if unknown:
        raise ConsistencyError(f"the qrels name {len(unknown)} documents that are not in the corpus: {_shown(unknown)}")
    excluded = set(exclude_qids)
    allowed = set(allowed_docids) if allowed_docids is not None else None
    fill_pool: list[str] | None = None
    groups: list[TrainingGroup] = []
    no_positive: list[str] = []
    no_negatives: list[str] = []
    filled = 0
    used = 0
    for qid, query in topics.items():
        if qid in excluded or qid not in qrels:
            continue
        used += 1
        judged = qrels[qid]
        relevant = {d for d, rel in judged.items() if rel >= min_relevance}
        positives = sorted((d for d in relevant if allowed is None or d in allowed), key=lambda d: (-judged[d], d))
        if not positives:
            no_positive.append(qid)
            continue
        ranked = _ranked_docids(run.get(qid, {}))[:depth]
        candidates = [d for d in ranked if d not in relevant and (allowed is None or d in allowed)]
        if not candidates:
            no_negatives.append(qid)
            continue
        rng = np.random.default_rng([seed, _stable_int(qid)])
        for positive in positives:
            if sample and len(candidates) > num_negatives:
                picks = sorted(rng.choice(len(candidates), size=num_negatives, replace=False).tolist())
                negatives = [candidates[i] for i in picks]
            else:
                negatives = candidates[:num_negatives]
            if len(negatives) < num_negatives and fill_random:
                if fill_pool is None:
                    fill_pool = sorted(d for d in corpus if allowed is None or d in allowed)
                taken = set(negatives)
                spare = [d for d in fill_pool if d not in relevant and d not in taken]
                need = min(num_negatives - len(negatives), len(spare))
                negatives += [spare[i] for i in sorted(rng.choice(len(spare), size=need, replace=False).tolist())]
                filled += 1
            groups.append(TrainingGroup(query, corpus[positive], tuple(corpus[d] for d in negatives), qid,
                                        (positive, *negatives)))
    if no_positive or no_negatives:
        logger.warning(
            "skipped %d of %d queries: %d without a relevant document%s (%s), %d without a candidate negative in "
            "the run's top %d (%s)", len(no_positive) + len(no_negatives), used, len(no_positive),
            " among the allowed documents" if allowed is not None else "", _shown(no_positive) or "-",
            len(no_negatives), depth, _shown(no_negatives) or "-",
        )
    if filled:
        logger.warning("%d groups had fewer than %d candidate negatives in the run's top %d and were filled with "
                       "random corpus documents", filled, num_negatives, depth)
    if not groups:
        raise ConsistencyError(
            f"no training group could be built from {used} queries: {len(no_positive)} have no relevant document"
            f"{' among the allowed documents' if allowed is not None else ''} and {len(no_negatives)} have no "
            f"candidate negative in the run's top {depth}"
            + ("" if used else " (no query of the topics has qrels, or all are excluded)")
        )
    return groups


def attach_target_scores(
    groups: Sequence[TrainingGroup], run: Mapping[str, Mapping[str, float]], where: str = "the soft-target run"
) -> list[TrainingGroup]:
    """The groups with ``target_scores`` looked up in ``run`` (``{qid: {docid: score}}``).

    A document the run does not list for the query ranked below the run's cut-off, so it gets the
    query's lowest listed score (its best possible score under the run; a soft target then treats it
    as the run's least likely candidate). A group without ids, or whose query the run lacks, is an error.
    """
    out = []
    missing_docs = 0
    for group in groups:
        if group.qid is None or group.docids is None:
            raise ConsistencyError(f"soft targets from {where} need groups with query and document ids "
                                   "(a collection source or JSONL groups with qid/positive_id/negative_ids)")
        scores = run.get(group.qid)
        if not scores:
            raise ConsistencyError(f"{where} has no ranking for query {group.qid!r}")
        floor = min(scores.values())
        missing_docs += sum(d not in scores for d in group.docids)
        targets = tuple(float(scores.get(d, floor)) for d in group.docids)
        out.append(TrainingGroup(group.query, group.positive, group.negatives, group.qid, group.docids, targets))
    if missing_docs:
        logger.info("%d of %d passages are not in %s for their query: they get the query's lowest score there",
                    missing_docs, sum(len(g.docids or ()) for g in groups), where)
    return out


def _check_qrels_documents(qrels_path: Path, corpus: Collection[str], corpus_path: Path) -> None:
    """Name the first qrels line whose document is not in the corpus (file:line)."""
    for number, line in iter_lines(qrels_path):
        cols = line.split()
        if len(cols) == 4 and cols[2] not in corpus:
            raise InputFormatError(qrels_path, number, f"document {cols[2]!r} is not in the corpus {corpus_path}")


def groups_from_files(
    topics: PathLike,
    qrels: PathLike,
    corpus: PathLike,
    run: PathLike,
    num_negatives: int = DEFAULT_NEGATIVES,
    seed: int = 42,
    **kwargs: Any,
) -> list[TrainingGroup]:
    """:func:`build_groups` over files: topics (TSV/JSONL), TREC qrels, a JSONL corpus and a TREC run.

    Every file is checked line by line; a qrels or run line naming a document the corpus lacks, or
    a run line naming a query the topics lack, is an error at its ``file:line``.
    """
    topic_map = read_topics(topics)
    docs = load_corpus(corpus)
    qrels_path = Path(qrels)
    judged = read_qrels(qrels_path)
    _check_qrels_documents(qrels_path, docs, Path(corpus))
    ranked = load_run(run, known_qids=topic_map, known_docids=docs)
    return build_groups(topic_map, judged, docs, ranked, num_negatives, seed, **kwargs)


# --------------------------------------------------------------------------------------------------
# Triples TSV and JSONL groups


def read_triples(path: PathLike) -> list[TrainingGroup]:
    """Read ``query<TAB>positive<TAB>negative`` lines (MS MARCO triples; ``.gz`` too).

    Consecutive lines with the same query and positive form one group with several negatives, so a
    file written one line per negative reads back as its groups. An empty field, or a line without
    exactly three fields, is an error at its ``file:line``.
    """
    path = Path(path)
    groups: list[TrainingGroup] = []
    current: tuple[str, str] | None = None
    negatives: list[str] = []

    def flush() -> None:
        if current is not None:
            groups.append(TrainingGroup(current[0], current[1], tuple(negatives)))

    for number, line in iter_lines(path):
        if not line.strip():
            continue
        cols = line.split("\t")
        if len(cols) != 3:
            raise InputFormatError(path, number, f"expected 3 tab-separated fields 'query<TAB>positive<TAB>negative', "
                                                 f"found {len(cols)}")
        for name, value in zip(("query", "positive", "negative"), cols):
            if not value.strip():
                raise InputFormatError(path, number, f"empty {name} field")
        query, positive, negative = (c.strip() for c in cols)
        if (query, positive) != current:
            flush()
            current, negatives = (query, positive), []
        negatives.append(negative)
    flush()
    if not groups:
        raise InputFormatError(path, None, "no triples in the file")
    return groups


def read_groups(path: PathLike) -> list[TrainingGroup]:
    """Read JSONL groups ``{"query", "positive", "negatives": [...]}`` (``.gz`` too).

    Optional fields: ``qid``, ``positive_id`` and ``negative_ids`` (one per negative), and ``scores``
    (soft targets: another model's scores of the positive, then of each negative). A missing or
    empty field, or a group without negatives, is an error at its ``file:line``.
    """
    path = Path(path)
    groups: list[TrainingGroup] = []
    for number, line in iter_lines(path):
        if not line.strip():
            continue
        record = parse_json_line(path, number, line)
        query = text_field(record, "query", path, number)
        positive = text_field(record, "positive", path, number)
        negatives = string_list(record, "negatives", path, number, required=True)
        if not negatives:
            raise InputFormatError(path, number, "the group has no negatives (the 'negatives' list is empty)")
        qid = record.get("qid")
        if qid is not None and not isinstance(qid, (str, int)):
            raise InputFormatError(path, number, f"field 'qid' must be a string, found {type(qid).__name__}")
        docids = None
        negative_ids = string_list(record, "negative_ids", path, number, required=False)
        if negative_ids is not None or "positive_id" in record:
            positive_id = text_field(record, "positive_id", path, number)
            if negative_ids is None or len(negative_ids) != len(negatives):
                raise InputFormatError(path, number, f"'negative_ids' must list one id per negative ({len(negatives)})")
            docids = (positive_id, *negative_ids)
        targets = target_scores_field(record, path, number, 1 + len(negatives))
        groups.append(TrainingGroup(query, positive, tuple(negatives), None if qid is None else str(qid), docids,
                                    targets))
    if not groups:
        raise InputFormatError(path, None, "no groups in the file")
    return groups


def write_groups(path: PathLike, groups: Iterable[TrainingGroup]) -> Path:
    """Write groups as JSONL (atomically), the format :func:`read_groups` reads."""
    with atomic_open(path) as handle:
        for group in groups:
            handle.write(json.dumps(group.to_json(), ensure_ascii=False) + "\n")
    return Path(path)


def split_groups(groups: Sequence[TrainingGroup], fraction: float, seed: int) -> tuple[list[TrainingGroup], list[TrainingGroup]]:
    """Hold out about ``fraction`` of the groups for validation, whole positives at a time.

    Groups are split by their positive passage (its id when known, else its text), so no held-out
    positive is ever a training positive (several questions about one paragraph stay together).
    Returns ``(train, valid)``, each in the original order.
    """
    if not 0 < fraction < 1:
        raise ConfigError(f"the validation fraction must be between 0 and 1, got {fraction}")
    keys = sorted({_positive_key(g) for g in groups})
    if len(keys) < 2:
        raise ConsistencyError(f"cannot hold out a validation split: the data has {len(keys)} distinct positive(s)")
    count = min(len(keys) - 1, max(1, round(fraction * len(keys))))
    order = derived_rng(seed).permutation(len(keys))
    held = {keys[i] for i in order[:count]}
    train = [g for g in groups if _positive_key(g) not in held]
    valid = [g for g in groups if _positive_key(g) in held]
    return train, valid


def _positive_key(group: TrainingGroup) -> str:
    return group.docids[0] if group.docids is not None else group.positive


# --------------------------------------------------------------------------------------------------
# XQuAD cross-fitting


@dataclass(frozen=True)
class FoldSplit:
    """The training side and the test side of one XQuAD article fold.

    ``train_docids`` / ``test_docids`` hold the paragraph ids of every language listed in the folds
    file; ``*_paragraphs`` the language-independent paragraph indices (0..239).
    """

    test_fold: int
    train_qids: frozenset[str]
    train_docids: frozenset[str]
    train_paragraphs: frozenset[int]
    test_qids: frozenset[str]
    test_docids: frozenset[str]
    test_paragraphs: frozenset[int]
    languages: tuple[str, ...] = field(default=())


def _fold_records(folds: PathLike | Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    if isinstance(folds, (str, Path)) or hasattr(folds, "__fspath__"):
        return read_folds(folds)  # type: ignore[arg-type]
    return list(folds)  # type: ignore[arg-type]


def xquad_fold_split(folds: PathLike | Sequence[Mapping[str, Any]], test_fold: int) -> FoldSplit:
    """Split XQuAD by article fold: train on the other folds' questions and paragraphs, test on ``test_fold``.

    ``folds`` is a ``folds.json`` path or its records (:func:`clir_ot.formats.read_folds`).
    """
    records = _fold_records(folds)
    numbers = [int(r["fold"]) for r in records]
    if test_fold not in numbers:
        raise ConfigError(f"no fold {test_fold} in the folds file; it has folds {', '.join(map(str, numbers))}")
    train_qids: set[str] = set()
    train_docids: set[str] = set()
    train_paragraphs: set[int] = set()
    languages: set[str] = set()
    test: Mapping[str, Any] = {}
    for record in records:
        languages.update(record["docids"])
        if int(record["fold"]) == test_fold:
            test = record
            continue
        train_qids.update(record["qids"])
        train_paragraphs.update(int(p) for p in record["paragraphs"])
        for ids in record["docids"].values():
            train_docids.update(ids)
    test_docids = {d for ids in test["docids"].values() for d in ids}
    split = FoldSplit(
        test_fold=test_fold,
        train_qids=frozenset(train_qids), train_docids=frozenset(train_docids),
        train_paragraphs=frozenset(train_paragraphs),
        test_qids=frozenset(test["qids"]), test_docids=frozenset(test_docids),
        test_paragraphs=frozenset(int(p) for p in test["paragraphs"]),
        languages=tuple(sorted(languages)),
    )
    overlap = (split.train_qids & split.test_qids) or (split.train_paragraphs & split.test_paragraphs)
    if overlap:
        raise ConsistencyError(f"the folds file is inconsistent: fold {test_fold} shares {_shown(sorted(map(str, overlap)))} "
                               "with the other folds")
    return split


_XQUAD_DOCID = re.compile(r"^([a-z]{2,3})-(\d+)$")


def assert_no_leakage(
    items: Iterable[TrainingGroup | str],
    folds: PathLike | Sequence[Mapping[str, Any]] | FoldSplit,
    test_fold: int | None = None,
) -> dict[str, int]:
    """Raise :class:`~clir_ot.errors.LeakageError` if anything of the test fold reaches training.

    ``items`` are training groups (their ``qid`` and ``docids`` are checked; groups without ids
    cannot be checked and are an error) or bare ids. An id leaks if it is a test-fold question id,
    a test-fold paragraph id in any language of the folds file, or any ``<lang>-<nnn>`` paragraph id
    whose index ``nnn`` is a test-fold paragraph (so a language missing from the folds file is caught
    too). Returns the counts checked, for manifests.
    """
    split = folds if isinstance(folds, FoldSplit) else xquad_fold_split(folds, int(test_fold if test_fold is not None else -1))
    qids: set[str] = set()
    docids: set[str] = set()
    unchecked = 0
    for item in items:
        if isinstance(item, TrainingGroup):
            if item.qid is None or item.docids is None:
                unchecked += 1
                continue
            qids.add(item.qid)
            docids.update(item.docids)
        else:
            qids.add(item)
            docids.add(item)
    if unchecked:
        raise LeakageError(f"{unchecked} training groups carry no query or document ids, so they cannot be checked "
                           f"against test fold {split.test_fold}; build them from the collection (or JSONL with ids)")
    leaked_qids = sorted(qids & split.test_qids)
    leaked_docs = set(docids & split.test_docids)
    for docid in docids:
        match = _XQUAD_DOCID.match(docid)
        if match and int(match.group(2)) in split.test_paragraphs:
            leaked_docs.add(docid)
    if leaked_qids or leaked_docs:
        parts = []
        if leaked_qids:
            parts.append(f"{len(leaked_qids)} test questions ({_shown(leaked_qids)})")
        if leaked_docs:
            parts.append(f"{len(leaked_docs)} test paragraphs ({_shown(sorted(leaked_docs))})")
        raise LeakageError(f"training data contains {' and '.join(parts)} of test fold {split.test_fold}")
    return {"test_fold": split.test_fold, "qids_checked": len(qids), "docids_checked": len(docids)}


# --------------------------------------------------------------------------------------------------
# Everything `clir-ot train` needs, from one spec


@dataclass(frozen=True)
class DataSpec:
    """Where the training and validation groups come from (exactly one training source).

    * collection: ``topics``, ``qrels``, ``corpus`` and ``run`` (hard negatives), optionally with
      ``folds`` and ``exclude_fold`` for XQuAD cross-fitting;
    * ``triples``: a triples TSV; ``groups``: a JSONL groups file;
    * ``id_triples``: MS MARCO id triples ``qid<TAB>pid+<TAB>pid-`` or ``ir_datasets export ... docpairs``
      (TSV or JSONL), with ``queries`` (``queries.train.tsv``) and ``collection`` (``collection.tsv`` or a
      JSONL corpus) -- always streamed (:mod:`clir_ot.training.streaming`).

    ``stream``: read ``triples`` / ``groups`` from disk on demand instead of into memory (JSONL groups
    of ids only then take their texts from ``queries`` and ``collection``).

    Validation: ``valid`` (a triples TSV or JSONL groups file), or ``valid_fraction`` of the training
    queries held out by positive document (from a collection they get ``valid_negatives`` negatives:
    the top non-relevant documents of ``valid_run``, default ``run``), or neither.

    ``soft_run``: a run whose scores become the groups' ``target_scores`` (soft targets).
    """

    topics: PathLike | None = None
    qrels: PathLike | None = None
    corpus: PathLike | None = None
    run: PathLike | None = None
    triples: PathLike | None = None
    groups: PathLike | None = None
    valid: PathLike | None = None
    valid_fraction: float | None = None
    folds: PathLike | None = None
    exclude_fold: int | None = None
    soft_run: PathLike | None = None
    valid_run: PathLike | None = None
    id_triples: PathLike | None = None
    queries: PathLike | None = None
    collection: PathLike | None = None
    stream: bool = False

    def __post_init__(self) -> None:
        collection = [self.topics, self.qrels, self.corpus, self.run]
        sources = (int(any(p is not None for p in collection)) + int(self.triples is not None)
                   + int(self.groups is not None) + int(self.id_triples is not None))
        if sources != 1:
            raise ConfigError("give exactly one training source: --topics/--qrels/--corpus/--run, --triples, --groups "
                              "or --id-triples")
        if self.id_triples is not None and (self.queries is None or self.collection is None):
            raise ConfigError("--id-triples (qid<TAB>pid+<TAB>pid-) needs --queries (e.g. queries.train.tsv) and "
                              "--collection (e.g. collection.tsv) to look the texts up in")
        if (self.queries is not None or self.collection is not None) and not self.streamed:
            raise ConfigError("--queries and --collection are the stores of streamed data: use them with "
                              "--id-triples, or with --stream and --groups/--triples")
        if self.stream and self.topics is not None:
            raise ConfigError("--stream reads --triples, --groups or --id-triples from disk; groups built from a "
                              "collection (--topics/--qrels/--corpus/--run) are built in memory")
        if any(p is not None for p in collection) and not all(p is not None for p in collection):
            missing = [n for n, p in zip(("--topics", "--qrels", "--corpus", "--run"), collection) if p is None]
            raise ConfigError(f"training from a collection needs {', '.join(missing)} too")
        if (self.folds is None) != (self.exclude_fold is None):
            raise ConfigError("--exclude-fold and --folds go together")
        if self.folds is not None and self.topics is None:
            raise ConfigError("--exclude-fold needs a collection source (--topics/--qrels/--corpus/--run) with ids")
        if self.valid is not None and self.valid_fraction is not None:
            raise ConfigError("give --valid or --valid-fraction, not both")
        if self.valid_run is not None and self.valid_fraction is None:
            raise ConfigError("--valid-run (the run whose top documents the held-out questions are validated on) "
                              "goes with --valid-fraction")
        if self.soft_run is not None and self.topics is None:
            raise ConfigError("--soft-run (soft targets from a first-stage run) needs a collection source with ids "
                              "(--topics/--qrels/--corpus/--run); JSONL groups carry their own 'scores'")

    @property
    def source(self) -> str:
        if self.id_triples is not None:
            return "id-triples"
        return "collection" if self.topics is not None else "triples" if self.triples is not None else "groups"

    @property
    def streamed(self) -> bool:
        """Whether the training groups are read from disk on demand (:mod:`clir_ot.training.streaming`)."""
        return self.id_triples is not None or self.stream

    def files(self) -> dict[str, PathLike]:
        names = ("topics", "qrels", "corpus", "run", "triples", "groups", "valid", "folds", "soft_run", "valid_run",
                 "id_triples", "queries", "collection")
        return {n: getattr(self, n) for n in names if getattr(self, n) is not None}


def describe_files(files: Mapping[str, PathLike]) -> dict[str, dict[str, str]]:
    """``{role: {"path": absolute path, "sha256": ...}}`` for a manifest."""
    return {role: {"path": str(Path(p).resolve()), "sha256": sha256_of(p)} for role, p in files.items()}


def _read_group_file(path: PathLike) -> list[TrainingGroup]:
    if is_jsonl(path):
        return read_groups(path)
    if is_tsv(path):
        return read_triples(path)
    raise ConfigError(f"cannot tell the format of {path}: name triples '.tsv' and groups '.jsonl'")


def load_training_data(
    spec: DataSpec,
    *,
    negatives: int | None = None,
    depth: int = DEFAULT_DEPTH,
    valid_negatives: int = DEFAULT_VALID_NEGATIVES,
    seed: int = 42,
) -> TrainingData:
    """Read or build the training and validation groups that ``spec`` describes.

    ``negatives`` is the number of negatives per training group (default 7 for a collection; for a
    file, every group must already have the same number, or it cuts them to the first ``negatives``).
    With ``folds``/``exclude_fold`` both splits are checked by :func:`assert_no_leakage`. A streamed
    spec (``spec.streamed``) gives a lazy :class:`~clir_ot.training.streaming.StreamedGroups` as ``train``.
    """
    if spec.streamed:

        return load_streamed_data(spec, negatives=negatives)
    info: dict[str, Any] = {"source": spec.source, "files": describe_files(spec.files())}
    valid: list[TrainingGroup] = []
    if spec.source == "collection":
        num_negatives = negatives or DEFAULT_NEGATIVES
        topics = read_topics(spec.topics)  # type: ignore[arg-type]
        corpus = load_corpus(spec.corpus)  # type: ignore[arg-type]
        qrels_path = Path(spec.qrels)  # type: ignore[arg-type]
        qrels = read_qrels(qrels_path)
        _check_qrels_documents(qrels_path, corpus, Path(spec.corpus))  # type: ignore[arg-type]
        run = load_run(spec.run, known_qids=topics, known_docids=corpus)  # type: ignore[arg-type]
        split = None
        exclude: set[str] = set()
        allowed = None
        if spec.folds is not None:
            split = xquad_fold_split(spec.folds, int(spec.exclude_fold))  # type: ignore[arg-type]
            exclude, allowed = set(split.test_qids), split.train_docids
        held: set[str] = set()
        if spec.valid_fraction is not None:
            held = _holdout_qids(topics, qrels, exclude, allowed, spec.valid_fraction, seed)
        common = dict(depth=depth, allowed_docids=allowed)
        train = build_groups(topics, qrels, corpus, run, num_negatives, seed, exclude_qids=exclude | held, **common)
        runs = {Path(spec.run).resolve(): run}  # type: ignore[arg-type]

        def other_run(path: PathLike) -> dict[str, dict[str, float]]:
            key = Path(path).resolve()
            if key not in runs:
                runs[key] = load_run(path, known_qids=topics, known_docids=corpus)
            return runs[key]

        if held:
            valid_ranking = run if spec.valid_run is None else other_run(spec.valid_run)
            valid = build_groups(topics, qrels, corpus, valid_ranking, valid_negatives, seed,
                                 exclude_qids=set(topics) - held, sample=False, fill_random=False, **common)
        if spec.soft_run is not None:
            soft = other_run(spec.soft_run)
            train = attach_target_scores(train, soft, str(spec.soft_run))
            valid = attach_target_scores(valid, soft, str(spec.soft_run)) if valid else valid
        info.update(negatives=num_negatives, depth=depth)
        if split is not None:
            info["xquad"] = {"test_fold": split.test_fold, "train_qids_available": len(split.train_qids),
                             "test_qids": len(split.test_qids), "test_paragraphs": len(split.test_paragraphs),
                             "leakage_check": {"train": assert_no_leakage(train, split)}}
            if valid:
                info["xquad"]["leakage_check"]["valid"] = assert_no_leakage(valid, split)
    else:
        train = _read_group_file(spec.triples if spec.triples is not None else spec.groups)  # type: ignore[arg-type]
        if spec.valid_fraction is not None:
            train, valid = split_groups(train, spec.valid_fraction, seed)
        train = cut_negatives(train, negatives, where=str(spec.triples or spec.groups))
        info["negatives"] = len(train[0].negatives)
    if spec.valid is not None:
        valid = _read_group_file(spec.valid)
        if spec.folds is not None:
            info["xquad"]["leakage_check"]["valid"] = assert_no_leakage(valid, _fold_records(spec.folds),
                                                                         spec.exclude_fold)
    info["train_groups"] = len(train)
    info["valid_groups"] = len(valid)
    if spec.valid_fraction is not None:
        info["valid_fraction"] = spec.valid_fraction
    if not valid:
        logger.warning("no validation data (--valid or --valid-fraction): no periodic MRR@10, no best checkpoint")
    return TrainingData(train=train, valid=valid, info=info)


def _holdout_qids(
    topics: Mapping[str, str],
    qrels: Mapping[str, Mapping[str, int]],
    exclude: Collection[str],
    allowed: Collection[str] | None,
    fraction: float,
    seed: int,
) -> set[str]:
    """Queries held out for validation: about ``fraction`` of the usable queries, grouped by their
    best positive document, so held-out positives are never training positives."""
    if not 0 < fraction < 1:
        raise ConfigError(f"the validation fraction must be between 0 and 1, got {fraction}")
    by_positive: dict[str, list[str]] = {}
    for qid in topics:
        if qid in exclude or qid not in qrels:
            continue
        relevant = sorted((d for d, r in qrels[qid].items() if r > 0 and (allowed is None or d in allowed)),
                          key=lambda d: (-qrels[qid][d], d))
        if relevant:
            by_positive.setdefault(relevant[0], []).append(qid)
    keys = sorted(by_positive)
    if len(keys) < 2:
        raise ConsistencyError(f"cannot hold out a validation split: only {len(keys)} distinct positive document(s)")
    queries = sum(len(v) for v in by_positive.values())
    order = derived_rng(seed).permutation(len(keys))
    held: set[str] = set()
    for i in order:
        if len(held) >= math.ceil(fraction * queries) or len(held) + len(by_positive[keys[i]]) >= queries:
            break
        held.update(by_positive[keys[i]])
    return held
