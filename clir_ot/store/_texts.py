"""Texts by id (passages, queries) looked up on disk: a hash-sorted offset index over TSV or JSONL."""
from __future__ import annotations

import array
import hashlib
import logging
import os
from collections import OrderedDict
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from clir_ot.errors import InputFormatError
from clir_ot.formats import PathLike, parse_json_line
from clir_ot.progress import progress_bar
from clir_ot.store._index import build_index_file, content_identity, line_number_at, open_index, plain_file, read_line
from clir_ot.store._lines import decode_line
from clir_ot.store._lookup import TextLookup

logger = logging.getLogger(__name__)

__all__ = ["ID_KEYS", "TEXT_KEYS", "TextStore"]

#: JSONL key names of the id, in order of preference (Pyserini, ir_datasets docs/queries, BEIR)
ID_KEYS = ("id", "docid", "doc_id", "_id", "qid", "query_id")
#: JSONL key names of the text, in order of preference; with ``text``, a non-empty ``title`` is put first
TEXT_KEYS = ("contents", "text", "query", "title")

_BLOCK = 512  # records per lookup block (8 KiB); one in _BLOCK hashes is kept in memory
_FILE_BITS = 48
_OFFSET_MASK = (1 << _FILE_BITS) - 1
_CACHE = 4096  # recently read texts kept (a run's ``in`` check and its scoring read the same ids)


def _key_hash(key: str) -> int:
    return int.from_bytes(hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest(), "little")


def _is_jsonl(path: Path) -> bool:
    return path.suffix in (".jsonl", ".json")


class TextStore(TextLookup):
    """``{id: text}`` over one TSV/JSONL file or a folder of JSONL files, read from disk on demand.

    Formats (by file name):

    * ``.tsv`` / ``.txt``: ``id<TAB>text`` -- MS MARCO's ``collection.tsv`` and ``queries.*.tsv``, and
      what ``ir_datasets export ... docs`` / ``queries`` write (further columns, e.g. a title before the
      text, are joined with a space);
    * ``.jsonl`` (or a folder of them): an object per line with an id (:data:`ID_KEYS`) and a text
      (:data:`TEXT_KEYS`): Pyserini's ``{"id", "contents"}``, ir_datasets' ``--format jsonl``
      ``{"doc_id", "text"}`` or ``{"query_id", "text"}``, BEIR's ``{"_id", "title", "text"}``.

    The first open checks every line (an error names its ``file:line``: no id, an id with
    whitespace, an empty text, an id given twice) and writes an index: for each id a 64-bit hash and
    its file offset, sorted by hash (16 bytes per id, in ``$CLIR_OT_STORE_DIR``; see
    :mod:`clir_ot.store`). A lookup reads one 8 KiB block of the index and the line itself; memory
    holds one hash in 512 (80 KB for 10M ids) and a few thousand recent texts. Building the index
    holds 16 bytes per id while it sorts them (an 8.8M-passage collection: about 140 MB, once).

    Args:
        path: the file, or a folder of ``*.jsonl`` files.
        role: what the texts are (``"passage"``, ``"query"``), for messages.
    """

    def __init__(self, path: PathLike, role: str = "passage"):
        self.path = Path(path)
        self.role = role
        if self.path.is_dir():
            files = sorted(p for p in self.path.iterdir() if p.is_file() and _is_jsonl(p))
            if not files:
                raise InputFormatError(self.path, None, "folder contains no .jsonl/.json files")
        else:
            files = [self.path]
        self.files = [plain_file(f, f"{role} file") for f in files]
        self._index = open_index(self.files, f"texts-{role}", self._build)
        self._fds = [os.open(f, os.O_RDONLY) for f in self.files]
        count = self._index.count
        self._fence = np.array([int(self._index.records(i, i + 1)[0, 0]) for i in range(0, count, _BLOCK)],
                               dtype=np.uint64)
        self._cache: OrderedDict[str, str] = OrderedDict()
        if count == 0:
            raise InputFormatError(self.path, None, f"no {role}s in the file")

    # ---------------------------------------------------------------------------------------------
    # parsing

    def _parse(self, file: Path, number: int, text: str) -> tuple[str, str]:
        role = self.role
        if _is_jsonl(file):
            record = parse_json_line(file, number, text)
            present = [k for k in ID_KEYS if k in record]
            if not present:
                raise InputFormatError(file, number, f"missing the id field (one of {', '.join(ID_KEYS)})")
            key = record[present[0]]
            key = key if isinstance(key, str) else str(key)
            body = None
            for name in TEXT_KEYS:
                if name in record:
                    body = record[name]
                    if not isinstance(body, str):
                        raise InputFormatError(file, number, f"{role} {key!r}: field {name!r} must be a string, "
                                               f"found {type(body).__name__}")
                    title = record.get("title")
                    if name == "text" and isinstance(title, str) and title.strip():
                        body = f"{title.strip()} {body}"
                    break
            if body is None:
                raise InputFormatError(file, number, f"{role} {key!r} has no text field (one of {', '.join(TEXT_KEYS)})")
        else:
            cols = text.split("\t")
            if len(cols) < 2:
                raise InputFormatError(file, number, f"expected 'id<TAB>text' in a {role} TSV, found no tab")
            key = cols[0]
            body = " ".join(c.strip() for c in cols[1:] if c.strip())
        key = key.strip()
        if not key or any(c.isspace() for c in key):
            raise InputFormatError(file, number, f"{role} id {key!r} is empty or contains whitespace")
        if not body.strip():
            raise InputFormatError(file, number, f"{role} {key!r} has empty text")
        return key, body.strip()

    def _build(self, target: Path, header: dict[str, Any]) -> None:
        hashes, places = array.array("Q"), array.array("Q")
        total = sum(f.stat().st_size for f in self.files)
        with progress_bar(total=total, unit="B", unit_scale=True, leave=False, disable=None,
                          desc=f"indexing {self.path.name}") as bar:
            for fileno, file in enumerate(self.files):
                offset = 0
                with open(file, "rb") as source:
                    for number, raw in enumerate(source, start=1):
                        start, offset = offset, offset + len(raw)
                        if number % 65536 == 0:
                            bar.update(start - bar.n + sum(f.stat().st_size for f in self.files[:fileno]))
                        if not raw.strip():
                            continue
                        key, _ = self._parse(file, number, decode_line(file, number, raw))
                        hashes.append(_key_hash(key))
                        places.append((fileno << _FILE_BITS) | start)
        keys = np.frombuffer(hashes, dtype=np.uint64)
        order = np.argsort(keys, kind="stable")
        records = np.empty((len(keys), 2), dtype="<u8")
        records[:, 0] = keys[order]
        records[:, 1] = np.frombuffer(places, dtype=np.uint64)[order]
        del hashes, places, keys, order
        for j in np.nonzero(records[1:, 0] == records[:-1, 0])[0]:
            first, second = (self._locate(int(p)) for p in records[j:j + 2, 1])
            if first[2] == second[2]:
                a, b = sorted([first, second], key=lambda f: (f[0], f[1]))
                raise InputFormatError(self.files[b[0]], line_number_at(self.files[b[0]], b[1]),
                                       f"{self.role} {b[2]!r} appears twice (also at "
                                       f"{self.files[a[0]].name}:{line_number_at(self.files[a[0]], a[1])})")

        def write(handle) -> int:
            records.tofile(handle)
            return len(records)

        build_index_file(target, header, write, 16)

    def _locate(self, place: int) -> tuple[int, int, str, str]:
        """``(file number, offset, id, text)`` of the line at an index ``place``."""
        fileno, offset = place >> _FILE_BITS, place & _OFFSET_MASK
        file = self.files[fileno]
        with open(file, "rb") as handle:
            handle.seek(offset)
            raw = handle.readline()
        key, body = self._parse(file, line_number_at(file, offset), decode_line(file, 1 if offset == 0 else 2, raw))
        return fileno, offset, key, body

    # ---------------------------------------------------------------------------------------------
    # lookup

    def _lookup(self, key: str) -> str | None:
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        target = np.uint64(_key_hash(key))
        block = int(np.searchsorted(self._fence, target, side="right")) - 1
        if block < 0:
            return None
        start = block * _BLOCK
        rows = self._index.records(start, start + _BLOCK)
        position = start + int(np.searchsorted(rows[:, 0], target, side="left"))
        while position < self._index.count:
            row = rows[position - start] if position - start < len(rows) else self._index.records(position, position + 1)[0]
            if row[0] != target:
                break
            place = int(row[1])
            fileno, offset = place >> _FILE_BITS, place & _OFFSET_MASK
            raw = read_line(self._fds[fileno], offset)
            found, body = self._parse(self.files[fileno], 0, decode_line(self.files[fileno], 1 if offset == 0 else 2, raw))
            if found == key:
                self._cache[key] = body
                if len(self._cache) > _CACHE:
                    self._cache.popitem(last=False)
                return body
            position += 1
        return None

    def __len__(self) -> int:
        return self._index.count

    def __iter__(self) -> Iterator[str]:
        """The ids in file order (read from the files, one line at a time)."""
        for file in self.files:
            with open(file, "rb") as source:
                for number, raw in enumerate(source, start=1):
                    if raw.strip():
                        yield self._parse(file, number, decode_line(file, number, raw))[0]

    def describe(self) -> dict[str, Any]:
        """For manifests: the files, their identities (see :func:`~clir_ot.store.content_identity`) and the count."""
        return {"path": str(self.path.resolve()), "count": len(self),
                "files": [content_identity(f) for f in self.files]}

    def close(self) -> None:
        self._index.close()
        for fd in self._fds:
            os.close(fd)
        self._fds = []

    def __repr__(self) -> str:
        return f"TextStore({str(self.path)!r}, role={self.role!r}, {len(self)} {self.role}s)"
