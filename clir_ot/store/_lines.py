"""Random access to the lines of a text file through a byte-offset index."""
from __future__ import annotations

import array
import logging
import os
from pathlib import Path
from typing import Any, Callable, Mapping

from clir_ot.errors import InputFormatError
from clir_ot.formats import PathLike
from clir_ot.progress import progress_bar
from clir_ot.store._index import build_index_file, line_number_at, open_index, plain_file, read_line

logger = logging.getLogger(__name__)

__all__ = ["LineFile", "LineCheck"]

#: ``check(line_number, text) -> {name: int} | None``: raises :class:`~clir_ot.errors.InputFormatError`
#: for a bad line; the numbers it returns are summarised in the index (each name's minimum and maximum
#: and the first line of each), e.g. the number of negatives of each training group.
LineCheck = Callable[[int, str], "Mapping[str, int] | None"]


def decode_line(path: Path, number: int, raw: bytes) -> str:
    """``raw`` as UTF-8 text without its line ending (and without a BOM on line 1)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise InputFormatError(path, number, f"invalid UTF-8 (byte {raw[err.start]:#04x} at column {err.start + 1})") from None
    if number == 1 and text.startswith("\ufeff"):
        text = text[1:]
    return text.rstrip("\r\n")


class LineFile:
    """The non-blank lines of a plain (uncompressed) text file, by position, read on demand.

    The first open builds an index of line start offsets (8 bytes a line, in the store folder; see
    :mod:`clir_ot.store`), checking every line with ``check`` on the way, so a malformed line is an
    error at its ``file:line`` before any work starts; later opens reuse the index until the file
    changes. Reading line ``i`` costs two ``pread`` calls, and nothing is held in memory.

    Args:
        path: the text file.
        kind: what the lines are (part of the index's name and staleness check, e.g. ``"id-triples"``).
        check: validates each line and may return a number to summarise (see :data:`LineCheck`).
    """

    def __init__(self, path: PathLike, kind: str, check: LineCheck | None = None):
        self.path = plain_file(Path(path), kind)
        self.kind = kind
        self._check = check
        self._index = open_index([self.path], f"lines-{kind}", self._build)
        self._fd = os.open(self.path, os.O_RDONLY)
        if len(self) == 0:
            raise InputFormatError(self.path, None, f"no {kind} lines in the file")

    def _build(self, target: Path, header: dict[str, Any]) -> None:
        stats: dict[str, Any] = {"blank_lines": 0, "summary": {}}
        summary: dict[str, dict[str, int]] = stats["summary"]

        def note(number: int, values: Mapping[str, int]) -> None:
            for name, value in values.items():
                entry = summary.get(name)
                if entry is None:
                    summary[name] = {"min": value, "min_line": number, "max": value, "max_line": number}
                    continue
                if value < entry["min"]:
                    entry.update(min=value, min_line=number)
                if value > entry["max"]:
                    entry.update(max=value, max_line=number)

        def write(handle) -> int:
            offsets = array.array("Q")
            count = 0
            offset = 0
            size = self.path.stat().st_size
            with open(self.path, "rb") as source, progress_bar(
                    total=size, unit="B", unit_scale=True, leave=False, disable=None,
                    desc=f"indexing {self.path.name}") as bar:
                for number, raw in enumerate(source, start=1):
                    start, offset = offset, offset + len(raw)
                    if not raw.strip():
                        stats["blank_lines"] += 1
                        continue
                    if self._check is not None:
                        values = self._check(number, decode_line(self.path, number, raw))
                        if values:
                            note(number, values)
                    offsets.append(start)
                    count += 1
                    if len(offsets) >= 1 << 16:
                        offsets.tofile(handle)
                        offsets = array.array("Q")
                        bar.update(offset - bar.n)
                offsets.tofile(handle)
                bar.update(offset - bar.n)
            stats["lines"] = count
            return count

        # build_index_file encodes the header after the records, so the summary filled in by the pass is in it
        header["meta"] = stats
        build_index_file(target, header, write, 8)

    def __len__(self) -> int:
        return self._index.count

    @property
    def meta(self) -> dict[str, Any]:
        """What the build found: ``lines``, ``blank_lines`` and ``summary``: ``{name: {"min", "min_line",
        "max", "max_line"}}`` of the numbers the check returned."""
        return self._index.meta

    def offset(self, i: int) -> int:
        if not 0 <= i < len(self):
            raise IndexError(f"line {i} of {len(self)} in {self.path}")
        return int(self._index.records(i, i + 1)[0, 0])

    def line(self, i: int) -> str:
        """The ``i``-th non-blank line (0-based)."""
        return self._decode(i, read_line(self._fd, self.offset(i)))

    def _decode(self, i: int, raw: bytes) -> str:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            return decode_line(self.path, self.line_number(i), raw)
        return text[1:] if i == 0 and text.startswith("\ufeff") else text

    def line_number(self, i: int) -> int:
        """The 1-based line number of the ``i``-th non-blank line (for error messages)."""
        if not self.meta.get("blank_lines"):
            return i + 1
        return line_number_at(self.path, self.offset(i))

    def close(self) -> None:
        self._index.close()
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __getstate__(self):  # pragma: no cover - reopened in the receiving process
        return {"path": self.path, "kind": self.kind, "check": self._check}

    def __setstate__(self, state) -> None:  # pragma: no cover
        self.__init__(state["path"], state["kind"], state["check"])
