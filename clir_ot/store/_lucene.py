"""Texts by id straight from a Lucene index that stores raw documents (Pyserini's ``-storeRaw``)."""
from __future__ import annotations

import json
import logging
from collections import OrderedDict
from pathlib import Path
from typing import Any, Iterator

from clir_ot.errors import ConfigError
from clir_ot.io import PathLike
from clir_ot.java import ensure_jvm
from clir_ot.store._lookup import TextLookup

logger = logging.getLogger(__name__)

__all__ = ["LuceneTextStore"]

_CACHE = 4096
_MANIFEST = "clir_ot.json"  # what clir_ot.retrieval.lucene.build_index writes beside an index it built


def raw_text(raw: str) -> str:
    """The passage text of a stored raw document: its JSON ``contents`` (or ``text``, with a ``title``
    before it), or the raw string itself when it is not a JSON object."""
    try:
        parsed = json.loads(raw)
    except (TypeError, json.JSONDecodeError):
        return raw
    if not isinstance(parsed, dict):
        return raw
    if isinstance(parsed.get("contents"), str):
        return parsed["contents"]
    if isinstance(parsed.get("text"), str):
        title = parsed.get("title")
        return f"{title.strip()} {parsed['text']}" if isinstance(title, str) and title.strip() else parsed["text"]
    return raw


class LuceneTextStore(TextLookup):
    """``{docid: passage text}`` read on demand from a Lucene index's stored raw documents.

    Works on any Pyserini/Anserini index built with ``-storeRaw`` (Pyserini's prebuilt MS MARCO
    indexes, ``clir-ot index``): the JVM holds the index, Python holds a few thousand recent texts.
    An index without raw documents, or one that ``clir-ot index`` built from *pretokenised* text
    (Thai: its raw documents are the segmented words, not the passages), is refused with the fix.
    """

    def __init__(self, index_dir: PathLike):
        self.index_dir = Path(index_dir)
        if not self.index_dir.is_dir():
            raise ConfigError(f"index {self.index_dir} does not exist (build one with: clir-ot index, or give a "
                              "Pyserini index folder)")
        manifest = self.index_dir / _MANIFEST
        if manifest.is_file():
            analysis: Any = json.loads(manifest.read_text(encoding="utf-8")).get("analysis", {})
            if isinstance(analysis, dict) and analysis.get("method") == "pretokenized":
                raise ConfigError(f"index {self.index_dir} stores pretokenised text (its raw documents are "
                                  f"{analysis.get('tokenizer', 'segmented')} words, not the passages); rerank with "
                                  "--corpus instead")
        ensure_jvm()
        from pyserini.search.lucene import LuceneSearcher  # only after the JVM is started with our settings

        self._searcher = LuceneSearcher(str(self.index_dir))
        self._count = int(self._searcher.num_docs)
        if self._count == 0:
            raise ConfigError(f"index {self.index_dir} holds no documents")
        probe = self._searcher.doc(0)
        if probe is None or probe.raw() is None:
            raise ConfigError(f"index {self.index_dir} stores no raw documents (it was built without -storeRaw); "
                              "rebuild it with -storeRaw, or rerank with --corpus")
        self._cache: OrderedDict[str, str] = OrderedDict()

    def _lookup(self, docid: str) -> str | None:
        if docid in self._cache:
            self._cache.move_to_end(docid)
            return self._cache[docid]
        document = self._searcher.doc(docid)
        if document is None:
            return None
        raw = document.raw()
        if raw is None:
            raise ConfigError(f"document {docid!r} of index {self.index_dir} has no stored raw text")
        text = raw_text(raw)
        self._cache[docid] = text
        if len(self._cache) > _CACHE:
            self._cache.popitem(last=False)
        return text

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[str]:
        """The external docids, in the index's internal order."""
        for i in range(self._count):
            document = self._searcher.doc(i)
            if document is not None:
                yield document.docid()

    def describe(self) -> dict[str, Any]:
        return {"index": str(self.index_dir.resolve()), "count": self._count}

    def close(self) -> None:
        self._searcher.close()

    def __repr__(self) -> str:
        return f"LuceneTextStore({str(self.index_dir)!r}, {self._count} documents)"
