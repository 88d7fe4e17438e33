"""Training groups read from disk on demand, so memory does not grow with the data (MS MARCO scale).

:class:`StreamedGroups` is a lazy ``Sequence[TrainingGroup]``: ``len()`` is the number of lines of
the training file, ``groups[i]`` reads line ``i`` through a byte-offset index (:class:`~clir_ot.store.LineFile`)
and looks its ids up in on-disk :class:`~clir_ot.store.TextStore` s. Nothing else is held: no list of
groups, no dict of passages. The :class:`~clir_ot.training.Trainer` uses it as it uses a list --
epoch ``e`` visits ``numpy.random.default_rng([seed, e]).permutation(len(groups))``, a seeded
shuffle of line *positions* (4 bytes a line), so the data order, exact resume after a kill and the
disjoint ``torchrun`` shards are the in-memory ones; only the fingerprint differs (the files'
identities, :meth:`StreamedGroups.fingerprint`, instead of hashing every group).

Formats (``format``):

* ``text-triples`` -- MS MARCO ``triples.train.small.tsv``: ``query<TAB>positive<TAB>negative``, one
  group (one negative) per line. (Unlike :func:`~clir_ot.training.read_triples`, consecutive lines
  with the same query and positive are *not* merged: a line is a group.)
* ``id-triples`` -- MS MARCO ``qidpidtriples.train.full.2.tsv`` and ``ir_datasets export ...
  docpairs``: ``qid<TAB>pid+<TAB>pid-[<TAB>pid-...]``, texts from a query store (``queries.train.tsv``,
  ``ir_datasets export ... queries``) and a passage store (``collection.tsv``, ``ir_datasets export
  ... docs``, a Pyserini JSONL corpus).
* ``jsonl`` -- JSONL groups ``{"query", "positive", "negatives": [...]}`` (optional ``qid``,
  ``positive_id``, ``negative_ids``, ``scores``, as :func:`~clir_ot.training.read_groups` reads),
  groups of ids only ``{"qid", "positive_id", "negative_ids"}`` looked up in the stores, or
  ``ir_datasets export ... docpairs --format jsonl`` lines ``{"query_id", "doc_id_a", "doc_id_b"}``.

Every line is checked when the index is first built (an error names its ``file:line``); an id
missing from a store is an error at its ``file:line`` when that group is read. Files must be plain
(uncompressed): random access needs offsets.
"""
from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Mapping

from clir_ot.errors import ConfigError, ConsistencyError, InputFormatError
from clir_ot.formats import parse_json_line
from clir_ot.io import PathLike, is_jsonl, is_tsv
from clir_ot.store import LineFile, TextStore, content_identity
from clir_ot.training.groups import TrainingData, TrainingGroup, string_list, target_scores_field, text_field

logger = logging.getLogger(__name__)

__all__ = ["FORMATS", "StreamedGroups", "format_of", "load_streamed_data"]

FORMATS = ("text-triples", "id-triples", "jsonl")
_PARSER_VERSION = 1  # part of the line index's kind: a change in what a line may hold rebuilds the index

_DOCPAIR_KEYS = ("query_id", "doc_id_a", "doc_id_b")


def format_of(path: PathLike, ids: bool) -> str:
    """The format of a training file by its name: ``.jsonl``/``.json`` -> ``jsonl``; ``.tsv``/``.txt`` ->
    ``id-triples`` when ``ids`` else ``text-triples``."""
    if Path(path).suffix == ".gz":
        raise InputFormatError(path, None, f"streamed training data is read at random offsets: decompress it once "
                               f"(gunzip -k {path}) and give the plain file")
    if is_jsonl(path):
        return "jsonl"
    if is_tsv(path):
        return "id-triples" if ids else "text-triples"
    raise ConfigError(f"cannot tell the format of {path}: name triples '.tsv' and groups '.jsonl'")


def _check_id(path: Path, number: int, what: str, value: str) -> str:
    value = value.strip()
    if not value or any(c.isspace() for c in value):
        raise InputFormatError(path, number, f"{what} {value!r} is empty or contains whitespace")
    return value


class _Line:
    """One parsed line: texts where the file holds them, ids where it names them."""

    __slots__ = ("qid", "query", "ids", "texts", "scores")

    def __init__(self, qid=None, query=None, ids=None, texts=None, scores=None):
        self.qid: str | None = qid
        self.query: str | None = query
        self.ids: list[str] | None = ids  # positive first
        self.texts: list[str] | None = texts  # positive first
        self.scores: tuple[float, ...] | None = scores

    @property
    def negatives(self) -> int:
        return len(self.texts if self.texts is not None else self.ids) - 1  # type: ignore[arg-type]


def _parse_text_triple(path: Path, number: int, line: str) -> _Line:
    cols = line.split("\t")
    if len(cols) != 3:
        raise InputFormatError(path, number, "expected 3 tab-separated fields 'query<TAB>positive<TAB>negative', "
                                             f"found {len(cols)}")
    for name, value in zip(("query", "positive", "negative"), cols):
        if not value.strip():
            raise InputFormatError(path, number, f"empty {name} field")
    return _Line(query=cols[0].strip(), texts=[cols[1].strip(), cols[2].strip()])


def _parse_id_triple(path: Path, number: int, line: str) -> _Line:
    cols = line.split("\t")
    if len(cols) < 3:
        raise InputFormatError(path, number, "expected 'qid<TAB>positive pid<TAB>negative pid' (3 or more "
                                             f"tab-separated ids), found {len(cols)} field(s)")
    qid = _check_id(path, number, "query id", cols[0])
    ids = [_check_id(path, number, "passage id", c) for c in cols[1:]]
    return _Line(qid=qid, ids=ids)


def _parse_jsonl(path: Path, number: int, line: str) -> _Line:
    record = parse_json_line(path, number, line)
    if all(k in record for k in _DOCPAIR_KEYS):  # ir_datasets docpairs --format jsonl
        values = []
        for key in _DOCPAIR_KEYS:
            value = record[key]
            values.append(_check_id(path, number, key, value if isinstance(value, str) else str(value)))
        return _Line(qid=values[0], ids=values[1:])
    qid = record.get("qid")
    if qid is not None and not isinstance(qid, (str, int)):
        raise InputFormatError(path, number, f"field 'qid' must be a string, found {type(qid).__name__}")
    qid = None if qid is None else _check_id(path, number, "qid", str(qid))
    query = text_field(record, "query", path, number) if "query" in record or qid is None else None
    texts = ids = None
    if "positive" in record or "negatives" in record or "positive_id" not in record:
        positive = text_field(record, "positive", path, number)
        negatives = string_list(record, "negatives", path, number, required=True) or []
        texts = [positive, *negatives]
    negative_ids = string_list(record, "negative_ids", path, number, required=False)
    if negative_ids is not None or "positive_id" in record:
        positive_id = text_field(record, "positive_id", path, number)
        if negative_ids is None:
            raise InputFormatError(path, number, "'positive_id' without 'negative_ids'")
        ids = [positive_id, *negative_ids]
        if texts is not None and len(ids) != len(texts):
            raise InputFormatError(path, number, f"'negative_ids' must list one id per negative ({len(texts) - 1})")
    size = len(texts if texts is not None else ids)  # type: ignore[arg-type]
    if size < 2:
        raise InputFormatError(path, number, "the group has no negatives (the 'negatives' list is empty)")
    return _Line(qid=qid, query=query, ids=ids, texts=texts, scores=target_scores_field(record, path, number, size))


_PARSERS = {"text-triples": _parse_text_triple, "id-triples": _parse_id_triple, "jsonl": _parse_jsonl}


class StreamedGroups(Sequence):
    """Training groups read from a file on demand (see the module docstring for the formats).

    Args:
        path: the training file (plain TSV or JSONL).
        format: one of :data:`FORMATS`.
        queries: query texts by id (a :class:`~clir_ot.store.TextStore` or any mapping), for lines
            that give a query id without its text.
        passages: passage texts by id, for lines that give passage ids without texts.
        negatives: negatives per group: ``None`` requires every line to have the same number; a
            number cuts each group to its first ``negatives`` (a line with fewer is an error).
        uniform: ``False`` lets groups keep different numbers of negatives (validation groups).

    ``groups[i]`` is a :class:`~clir_ot.training.TrainingGroup` (with ``qid``/``docids`` when the
    line names them); slices give lists.
    """

    def __init__(self, path: PathLike, format: str, *, queries: Mapping[str, str] | None = None,
                 passages: Mapping[str, str] | None = None, negatives: int | None = None, uniform: bool = True):
        if format not in _PARSERS:
            raise ConfigError(f"unknown training data format {format!r}; valid: {', '.join(FORMATS)}")
        self.path = Path(path)
        self.format = format
        self.queries = queries
        self.passages = passages
        self._parse = _PARSERS[format]
        self._lines = LineFile(self.path, f"groups-{format}-v{_PARSER_VERSION}", self._check_line)
        summary = self._lines.meta.get("summary", {})
        counts = summary.get("negatives", {})
        low, high = int(counts.get("min", 0)), int(counts.get("max", 0))
        self.scored = summary.get("scored", {}).get("min") == 1  # every line carries target scores
        self.has_ids = summary.get("named", {}).get("min") == 1  # every line names its query and passages
        if negatives is not None and negatives < 1:
            raise ConfigError(f"negatives must be at least 1, got {negatives}")
        if uniform and negatives is None and low != high:
            raise ConsistencyError(
                f"{self.path}: groups have between {low} (line {counts['min_line']}) and {high} (line "
                f"{counts['max_line']}) negatives; training needs the same number in every group: set --negatives "
                f"(at most {low}) to cut them")
        if negatives is not None and negatives > low:
            raise ConsistencyError(f"{self.path}:{counts['min_line']}: the group has {low} negatives, fewer than the "
                                   f"{negatives} asked (--negatives)")
        self.negatives: int = negatives if negatives is not None else low
        self._cut = negatives if (negatives is not None and uniform) else None
        needs_queries = summary.get("query_texts", {}).get("min") == 0
        needs_passages = summary.get("passage_texts", {}).get("min") == 0
        if needs_queries and queries is None:
            line = summary["query_texts"]["min_line"]
            raise ConfigError(f"{self.path}:{line} gives a query id without its text: give the queries file "
                              "(--queries, e.g. queries.train.tsv)")
        if needs_passages and passages is None:
            line = summary["passage_texts"]["min_line"]
            raise ConfigError(f"{self.path}:{line} gives passage ids without their texts: give the passages "
                              "(--collection, e.g. collection.tsv, or a JSONL corpus)")

    def _check_line(self, number: int, text: str) -> dict[str, int]:
        parsed = self._parse(self.path, number, text)
        return {"negatives": parsed.negatives, "scored": int(parsed.scores is not None),
                "named": int(parsed.qid is not None and parsed.ids is not None),
                "query_texts": int(parsed.query is not None), "passage_texts": int(parsed.texts is not None)}

    def __len__(self) -> int:
        return len(self._lines)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self._group(i) for i in range(*index.indices(len(self)))]
        i = int(index)
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(f"group {index} of {len(self)}")
        return self._group(i)

    def _group(self, i: int) -> TrainingGroup:
        text = self._lines.line(i)
        parsed = self._parse(self.path, i + 1, text)  # a valid line (checked at indexing) parses again
        cut = self._cut
        query = parsed.query
        if query is None:
            query = self._look_up(self.queries, parsed.qid, "query", i)  # type: ignore[arg-type]
        ids = parsed.ids[: 1 + cut] if (parsed.ids is not None and cut) else parsed.ids
        texts = parsed.texts[: 1 + cut] if (parsed.texts is not None and cut) else parsed.texts
        if texts is None:
            texts = [self._look_up(self.passages, d, "passage", i) for d in ids]  # type: ignore[union-attr]
        scores = parsed.scores[: 1 + cut] if (parsed.scores is not None and cut) else parsed.scores
        return TrainingGroup(query, texts[0], tuple(texts[1:]), parsed.qid, None if ids is None else tuple(ids),
                             scores)

    def _look_up(self, store: Mapping[str, str] | None, key: str, role: str, i: int) -> str:
        try:
            return store[key]  # type: ignore[index]
        except KeyError:
            where = getattr(store, "path", None)
            raise InputFormatError(self.path, self._lines.line_number(i),
                                   f"{role} id {key!r} is not in the {role}s" + (f" ({where})" if where else "")) from None

    def __iter__(self):
        for i in range(len(self)):
            yield self._group(i)

    def fingerprint(self) -> str:
        """SHA-256 of what the groups are made of: the format, the negatives per group, and each
        file's size and first/last MiB (not the path or mtime, so a copied file resumes)."""
        return hashlib.sha256(json.dumps(self.describe(paths=False), sort_keys=True).encode("utf-8")).hexdigest()

    def describe(self, paths: bool = True) -> dict[str, Any]:
        """The manifest entry: format, negatives, groups and the files' identities."""

        def identity(store: Any) -> Any:
            if store is None:
                return None
            if hasattr(store, "describe"):
                entry = dict(store.describe())
                if not paths:
                    entry.pop("path", None)
                return entry
            return {"count": len(store)}

        train = content_identity(self.path)
        if paths:
            train = {"path": str(self.path.resolve()), **train}
        return {"format": self.format, "negatives": self.negatives, "groups": len(self), "train": train,
                "queries": identity(self.queries), "passages": identity(self.passages)}

    def __repr__(self) -> str:
        return f"StreamedGroups({str(self.path)!r}, {self.format}, {len(self)} groups x {self.negatives} negatives)"


def load_streamed_data(spec: Any, *, negatives: int | None = None) -> TrainingData:
    """:func:`~clir_ot.training.load_training_data` for a streamed :class:`~clir_ot.training.DataSpec`:
    an id-triples/docpairs source, or ``--triples`` / ``--groups`` with ``stream``.

    Validation comes from ``spec.valid`` (read through the same stores, then held in memory: a
    validation set is small); ``valid_fraction`` needs the groups in memory and is refused.
    """
    if spec.valid_fraction is not None:
        raise ConfigError("--valid-fraction holds out queries of groups held in memory; with streamed training data "
                          "give a held-out file with --valid (e.g. a few thousand lines split off with head/tail)")
    queries = TextStore(spec.queries, "query") if spec.queries is not None else None
    passages = TextStore(spec.collection, "passage") if spec.collection is not None else None
    if spec.id_triples is not None:
        path, form = spec.id_triples, format_of(spec.id_triples, ids=True)
    elif spec.triples is not None:
        path, form = spec.triples, format_of(spec.triples, ids=False)
    else:
        path, form = spec.groups, "jsonl"
        format_of(path, ids=False)
    train = StreamedGroups(path, form, queries=queries, passages=passages, negatives=negatives)
    valid: list[TrainingGroup] = []
    if spec.valid is not None:
        valid = list(StreamedGroups(spec.valid, format_of(spec.valid, ids=spec.id_triples is not None),
                                    queries=queries, passages=passages, uniform=False))
    info: dict[str, Any] = {"source": spec.source, "streamed": train.describe(), "negatives": train.negatives,
                            "train_groups": len(train), "valid_groups": len(valid)}
    if spec.valid is not None:
        info["streamed"]["valid"] = {"path": str(Path(spec.valid).resolve()), **content_identity(Path(spec.valid))}
    logger.info("streaming %d training groups from %s (%s, %d negatives each)", len(train), path, form, train.negatives)
    if not valid:
        logger.warning("no validation data (--valid): no periodic MRR@10, no best checkpoint")
    return TrainingData(train=train, valid=valid, info=info)  # type: ignore[arg-type]
