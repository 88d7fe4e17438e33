"""Index files: fixed-size records over a text file, built once, rebuilt when the source changes.

An index file holds ``count`` fixed-size little-endian records and then a JSON header (what it
indexes: each source file's identity, the record layout, counts), its length and a magic number. It is read with ``os.pread``
-- never memory-mapped or loaded whole -- so a process holds only the records it asked for, however
large the source: resident memory does not grow with the data.

Staleness: a source's identity is its size, its modification time (ns) and the SHA-256 of its first
and last MiB. An index whose recorded identities differ from the sources' is rebuilt (and the log
says which file changed and how); it is never used silently stale. Index files live in
``$CLIR_OT_STORE_DIR`` (default ``~/.cache/clir_ot/stores``), one per (source path, kind), never beside
the data: a data folder stays byte-for-byte what the user put there (its SHA-256 is part of run
stamps elsewhere in the toolkit), and read-only data folders work. Builds are atomic (a temporary
file renamed into place) and serialised between processes by a lock file, so ``torchrun`` ranks that
start together build an index once.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from clir_ot.errors import ConfigError, InputFormatError
from clir_ot.io import atomic_open

logger = logging.getLogger(__name__)

STORE_DIR_ENV = "CLIR_OT_STORE_DIR"
MAGIC = b"CLIROTIX"
FORMAT = 1
_EDGE = 1 << 20  # bytes hashed at each end of a source file

__all__ = ["STORE_DIR_ENV", "IndexFile", "build_index_file", "content_identity", "file_identity", "index_path",
           "line_number_at", "open_index", "plain_file", "store_dir"]


def store_dir() -> Path:
    """Where index files live: ``$CLIR_OT_STORE_DIR``, else ``~/.cache/clir_ot/stores``."""
    env = os.environ.get(STORE_DIR_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "clir_ot" / "stores"


def plain_file(path: Path, role: str) -> Path:
    """``path`` as an existing, uncompressed regular file (random access needs one)."""
    if not path.exists():
        raise InputFormatError(path, None, "no such file")
    if path.is_dir():
        raise InputFormatError(path, None, f"is a folder, expected a {role} file")
    if path.suffix == ".gz":
        raise InputFormatError(path, None, f"a compressed {role} cannot be read at random offsets: decompress it "
                               f"once (gunzip -k {path}) and give the .tsv/.jsonl")
    return path


def file_identity(path: Path) -> dict[str, Any]:
    """``{"path", "size", "mtime_ns", "edges_sha256"}``: what decides whether an index is stale."""
    stat = path.stat()
    return {"path": str(path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
            "edges_sha256": _edges_sha256(path, stat.st_size)}


def content_identity(path: Path) -> dict[str, Any]:
    """The part of :func:`file_identity` that survives a copy (size and edge hash): a training data
    fingerprint that does not hash gigabytes, and does not change when the file is moved."""
    identity = file_identity(path)
    return {"size": identity["size"], "edges_sha256": identity["edges_sha256"]}


def _edges_sha256(path: Path, size: int) -> str:
    digest = hashlib.sha256(str(size).encode())
    with open(path, "rb") as handle:
        digest.update(handle.read(_EDGE))
        if size > 2 * _EDGE:
            handle.seek(size - _EDGE)
            digest.update(handle.read(_EDGE))
        elif size > _EDGE:
            digest.update(handle.read())
    return digest.hexdigest()


def index_path(sources: Sequence[Path], kind: str) -> Path:
    """The index file of ``sources`` for ``kind`` (a name in the store folder, unique per path and kind)."""
    key = hashlib.sha256(json.dumps([kind, [str(p.resolve()) for p in sources]]).encode()).hexdigest()[:20]
    return store_dir() / f"{sources[0].name}.{kind}.{key}.idx"


@dataclass
class IndexFile:
    """An open index file: its header and ``count`` records of ``record_size`` bytes read by ``pread``."""

    path: Path
    header: dict[str, Any]
    data_start: int
    fd: int

    @property
    def count(self) -> int:
        return int(self.header["count"])

    @property
    def record_size(self) -> int:
        return int(self.header["record_size"])

    @property
    def meta(self) -> dict[str, Any]:
        return self.header.get("meta", {})

    def records(self, start: int, stop: int) -> np.ndarray:
        """Records ``[start, stop)`` as a ``uint64`` array of shape ``(stop - start, record_size // 8)``."""
        start, stop = max(0, start), min(self.count, stop)
        width = self.record_size // 8
        if stop <= start:
            return np.zeros((0, width), dtype="<u8")
        raw = os.pread(self.fd, (stop - start) * self.record_size, self.data_start + start * self.record_size)
        return np.frombuffer(raw, dtype="<u8").reshape(-1, width)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __del__(self) -> None:  # pragma: no cover - best effort
        with contextlib.suppress(Exception):
            self.close()


def _read_header(path: Path) -> tuple[dict[str, Any], int] | None:
    """The header of an index file (records first, then the JSON header, its length and the magic)."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            if size < 16:
                return None
            handle.seek(size - 16)
            tail = handle.read(16)
            if tail[8:] != MAGIC:
                return None
            length = int.from_bytes(tail[:8], "little")
            handle.seek(size - 16 - length)
            header = json.loads(handle.read(length).decode("utf-8"))
    except (OSError, ValueError):
        return None
    expected = int(header.get("count", -1)) * int(header.get("record_size", 0)) + length + 16
    if header.get("format") != FORMAT or size != expected:
        return None
    return header, 0


def _stale_reason(header: dict[str, Any], sources: list[dict[str, Any]], kind: str) -> str | None:
    if header.get("kind") != kind:
        return f"it indexes {header.get('kind')!r}, not {kind!r}"
    before = header.get("sources", [])
    if [s["path"] for s in before] != [s["path"] for s in sources]:
        return "its source files differ"
    for old, new in zip(before, sources):
        changed = [k for k in ("size", "mtime_ns", "edges_sha256") if old.get(k) != new[k]]
        if changed:
            return f"{new['path']} changed ({', '.join(changed)})"
    return None


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


def build_index_file(path: Path, header: dict[str, Any], write_records: Callable[[Any], int], record_size: int) -> None:
    """Write an index file atomically: ``write_records(handle)`` writes the records and returns their
    count; the header (encoded after the records, so a build may fill it in) follows them."""
    with atomic_open(path, "wb") as out:  # an index file name never ends in .gz: written as it is
        count = write_records(out)
        full = {**header, "format": FORMAT, "count": count, "record_size": record_size}
        encoded = json.dumps(full, sort_keys=True).encode("utf-8")
        out.write(encoded + len(encoded).to_bytes(8, "little") + MAGIC)


def open_index(sources: Sequence[Path], kind: str, build: Callable[[Path, dict[str, Any]], None],
               location: Path | None = None) -> IndexFile:
    """Open the index of ``sources`` for ``kind``, building it with ``build(path, header)`` when it is
    missing, unreadable or stale (a source's size, mtime or edge hash changed)."""
    sources = list(sources)
    path = location or index_path(sources, kind)
    try:
        with _locked(path):
            identities = [file_identity(p) for p in sources]
            existing = _read_header(path) if path.is_file() else None
            reason = "no index yet" if existing is None and not path.is_file() else (
                "the index file is unreadable or truncated" if existing is None
                else _stale_reason(existing[0], identities, kind))
            if reason is not None:
                if existing is not None or path.is_file():
                    logger.warning("rebuilding the %s index of %s: %s", kind, sources[0], reason)
                else:
                    logger.info("building the %s index of %s into %s", kind, sources[0], path)
                build(path, {"kind": kind, "sources": identities})
                existing = _read_header(path)
                if existing is None:  # pragma: no cover - a build that wrote nothing usable
                    raise ConfigError(f"could not write a readable index {path}")
                if [file_identity(p) for p in sources] != identities:
                    raise InputFormatError(sources[0], None, "changed while its index was being built; retry "
                                           "once nothing writes to it")
    except PermissionError as err:
        raise ConfigError(f"cannot write the index {path} ({err.strerror}); set ${STORE_DIR_ENV} to a writable "
                          "folder") from None
    header, data_start = existing
    return IndexFile(path, header, data_start, os.open(path, os.O_RDONLY))


def line_number_at(path: Path, offset: int) -> int:
    """The 1-based line number of the line starting at byte ``offset`` (counts newlines; for error messages)."""
    count = 0
    with open(path, "rb") as handle:
        remaining = offset
        while remaining > 0:
            block = handle.read(min(remaining, 1 << 22))
            if not block:
                break
            count += block.count(b"\n")
            remaining -= len(block)
    return count + 1


def read_line(fd: int, offset: int, guess: int = 2048) -> bytes:
    """The line starting at byte ``offset`` of the open file ``fd``, without its line ending."""
    chunk = os.pread(fd, guess, offset)
    end = chunk.find(b"\n")
    while end < 0 and len(chunk) == guess:
        guess *= 4
        chunk = os.pread(fd, guess, offset)
        end = chunk.find(b"\n")
    line = chunk if end < 0 else chunk[:end]
    return line[:-1] if line.endswith(b"\r") else line
