"""File-system plumbing that every stage shares: atomic files and folders, hashing, format by suffix.

Nothing here knows a file format's contents (that is :mod:`clir_ot.formats`) or a stage's layout; it
is the layer at the bottom that only :mod:`clir_ot.errors` is below.

* :data:`PathLike` -- what every function that takes a path accepts.
* :func:`atomic_open` -- write a file through a hidden temporary that replaces it only on success.
* :func:`atomic_dir` -- build a folder as a hidden sibling that is renamed into place on success;
  :func:`remove_tree` deletes a folder without it ever being seen half-deleted under its name;
  :func:`check_replaceable` -- the check before replacing a folder: only an earlier output of the
  same kind, never a folder of other files or one that holds the inputs.
* :func:`sha256_of` (a file, or a folder's files), :func:`sha256_text` -- the identities recorded in
  manifests and resume signatures.
* :func:`data_suffix`, :func:`is_jsonl`, :func:`is_tsv` -- which text format a file name announces
  (``.gz`` is looked through), the one place that reads it from the name.

A killed writer leaves only hidden ``.<name>.<pid>-<host>.*.tmp`` entries, which no reader takes for
output; the next writer of the same name removes those whose process is gone
(:func:`sweep_leftovers`), so repeated kills do not pile up work folders.
"""
from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import logging
import os
import re
import shutil
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Callable, Iterable, Iterator

from clir_ot.errors import ConfigError

logger = logging.getLogger(__name__)

PathLike = str | os.PathLike
"""A path argument: a string or any ``os.PathLike`` (``pathlib.Path``)."""


@dataclass(frozen=True)
class FolderLayout:
    """Base of the frozen records that name the files under one folder, ``root`` (given as a str or
    an ``os.PathLike``, kept as a :class:`~pathlib.Path`). Subclasses add one method per file."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))


JSONL_SUFFIXES = (".jsonl", ".json")
"""File name endings (before an optional ``.gz``) of JSON-lines files."""

TSV_SUFFIXES = (".tsv", ".txt")
"""File name endings (before an optional ``.gz``) of tab-separated text files."""

__all__ = [
    "FolderLayout",
    "JSONL_SUFFIXES",
    "PathLike",
    "TSV_SUFFIXES",
    "atomic_dir",
    "atomic_open",
    "cached_sha256",
    "check_replaceable",
    "data_suffix",
    "fsync_dir",
    "fsync_tree",
    "is_jsonl",
    "is_tsv",
    "hash_model_folder",
    "remove_tree",
    "sha256_of",
    "sha256_text",
    "sweep_leftovers",
    "work_prefix",
]


# --------------------------------------------------------------------------------------------------
# Format by suffix


def data_suffix(path: PathLike) -> str:
    """The suffix that names a file's format, looking through a trailing ``.gz``; ``""`` if it has none.

    >>> data_suffix("runs/topics.th.tsv.gz"), data_suffix("corpus.jsonl"), data_suffix("README")
    ('.tsv', '.jsonl', '')
    """
    suffixes = [s for s in Path(path).suffixes if s != ".gz"]
    return suffixes[-1] if suffixes else ""


def is_jsonl(path: PathLike) -> bool:
    """Whether the name announces JSON lines (``*.jsonl``, ``*.json``, ``.gz`` too)."""
    return data_suffix(path) in JSONL_SUFFIXES


def is_tsv(path: PathLike) -> bool:
    """Whether the name announces tab-separated text (``*.tsv``, ``*.txt``, ``.gz`` too)."""
    return data_suffix(path) in TSV_SUFFIXES


# --------------------------------------------------------------------------------------------------
# Hashing


def sha256_of(path: PathLike) -> str:
    """SHA-256 of a file, or of a folder's files in name order (the identity of a corpus or source)."""
    path = Path(path)
    digest = hashlib.sha256()
    files = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
    for file in files:
        with open(file, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


_HASH_CACHE: dict[tuple[str, int, int], str] = {}


def cached_sha256(path: PathLike) -> str:
    """:func:`sha256_of`, memoised per (path, size, mtime) within the process."""
    stat = os.stat(path)
    key = (str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _HASH_CACHE:
        _HASH_CACHE[key] = sha256_of(path)
    return _HASH_CACHE[key]


def hash_model_folder(folder: PathLike) -> str:
    """One hash of a model folder's weights, head and settings (what changes its outputs): its
    ``.safetensors`` / ``.json`` / ``.bin`` files by name, except the training records
    ``best.json`` and ``training.json``."""
    folder = Path(folder)
    names = sorted(p.name for p in folder.iterdir() if p.is_file() and (p.suffix in (".safetensors", ".json", ".bin")))
    digest = hashlib.sha256()
    for name in names:
        if name in ("best.json", "training.json"):
            continue
        digest.update(name.encode() + b"\0" + cached_sha256(folder / name).encode() + b"\n")
    return digest.hexdigest()


def sha256_text(text: str) -> str:
    """SHA-256 (hex) of ``text`` encoded as UTF-8: the short identity of a signature or settings string."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# --------------------------------------------------------------------------------------------------
# Leftovers of killed writers


def _host_tag() -> str:
    """8 hex digits naming this machine *and its process-id namespace*: a pid is only meaningful there, so
    a shared file system's other hosts, and containers that share a host name but not their pids, are
    left alone by :func:`sweep_leftovers`."""
    try:
        namespace = str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:  # no /proc (macOS): the host name alone
        namespace = ""
    return hashlib.sha256(f"{socket.gethostname()}\0{namespace}".encode("utf-8")).hexdigest()[:8]


def work_prefix(target: PathLike) -> str:
    """The name prefix of this process's hidden work entries beside ``target``: ``.<name>.<pid>-<host>.``."""
    return f".{Path(target).name}.{os.getpid()}-{_host_tag()}."


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def sweep_leftovers(target: PathLike) -> list[Path]:
    """Remove the hidden work entries beside ``target`` (``.<name>.<pid>-<host>.*.tmp`` / ``.deleting``)
    whose writer, on this host, no longer runs: what a SIGKILL left. Returns what was removed.

    Entries of live processes, of other hosts, and of other names are never touched.
    """
    target = Path(target)
    pattern = re.compile(rf"^\.{re.escape(target.name)}\.(\d+)-([0-9a-f]{{8}})\..*\b(tmp|deleting)$")
    host = _host_tag()
    removed = []
    try:
        entries = list(target.parent.iterdir())
    except OSError:
        return removed
    for entry in entries:
        match = pattern.match(entry.name)
        if not match or match.group(2) != host or _process_alive(int(match.group(1))):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry)
    if removed:
        logger.info("removed %d leftover(s) of killed writers beside %s", len(removed), target)
    return removed


# --------------------------------------------------------------------------------------------------
# Atomic files


@contextlib.contextmanager
def atomic_open(path: PathLike, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO]:
    """Open ``path`` for writing through a temporary file that replaces it only on success.

    On an exception (or a kill) the target is untouched and the temporary file is removed
    (or, after a kill, left as a hidden ``.<name>.<pid>-<host>.*.tmp`` file that is never mistaken for output and that
    the next write of ``path`` removes).
    ``.gz`` targets are compressed. ``mode`` is ``"w"`` (text) or ``"wb"`` (bytes).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sweep_leftovers(path)
    fd, tmp_name = tempfile.mkstemp(prefix=work_prefix(path), suffix=".tmp", dir=path.parent)
    tmp = Path(tmp_name)
    binary = "b" in mode
    try:
        with os.fdopen(fd, "wb") as raw:
            if path.suffix == ".gz":
                stream: IO = gzip.GzipFile(fileobj=raw, mode="wb", mtime=0)
            else:
                stream = raw
            handle = stream if binary else io.TextIOWrapper(stream, encoding=encoding, newline="\n")
            yield handle
            handle.flush()
            if not binary:
                handle.detach()  # leave `stream` open: closing the wrapper would close the file
            if stream is not raw:
                stream.close()  # writes the gzip trailer; GzipFile leaves `raw` open
            raw.flush()
            os.fsync(raw.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


# --------------------------------------------------------------------------------------------------
# Atomic folders


def fsync_dir(folder: PathLike) -> None:
    """Flush a folder's entries (renames into it) to disk; a no-op where the OS does not allow it."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def fsync_tree(folder: PathLike) -> None:
    """Flush every file below ``folder``, and the folder itself, to disk."""
    folder = Path(folder)
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
    fsync_dir(folder)


def remove_tree(path: PathLike) -> None:
    """Delete a folder so that it is never seen half-deleted under its visible name.

    It is first renamed to a hidden ``.<name>.<pid>-<host>.deleting`` sibling, then removed.
    """
    path = Path(path)
    hidden = path.with_name(f"{work_prefix(path)}deleting")
    os.replace(path, hidden)
    shutil.rmtree(hidden, ignore_errors=True)


def check_replaceable(target: PathLike, *, kind: str, is_kind: Callable[[Path], bool],
                      inputs: Iterable[PathLike] = ()) -> None:
    """Refuse to replace the folder ``target`` with a new ``kind`` unless that loses nothing.

    ``target`` may be missing, an empty folder, or a folder for which ``is_kind`` is true (an earlier
    output of the same kind, which the writer replaces once the new one is complete). It may not be a
    file, a folder of other files, nor one of ``inputs`` or a folder above one of them (replacing it
    would delete the input). Raises :class:`~clir_ot.errors.ConfigError` naming the folder.
    """
    target = Path(target).expanduser().absolute()
    resolved = target.resolve()
    for source in inputs:
        source = Path(source).expanduser().resolve()
        if source == resolved or resolved in source.parents:
            raise ConfigError(f"refusing to write the {kind} {target}: it holds the input {source}")
    if not target.exists():
        return
    if not target.is_dir():
        raise ConfigError(f"refusing to write the {kind} {target}: it exists and is not a folder")
    if any(target.iterdir()) and not is_kind(target):
        raise ConfigError(f"refusing to replace {target}: it is not empty and not a {kind}; "
                          "choose another folder or remove it")


@contextlib.contextmanager
def atomic_dir(target: PathLike, *, durable: bool = False, shared: bool = True) -> Iterator[Path]:
    """Yield an empty hidden folder beside ``target`` that becomes ``target`` when the block succeeds.

    The folder ``.<name>.<pid>-<host>.*.tmp`` is on the same file system, so the final rename is atomic. On
    success an existing ``target`` is moved aside to a hidden ``.<name>.<pid>-<host>.deleting``, the new
    folder renamed into place and the old one deleted; on an exception the temporary folder is removed and ``target``
    is left as it was. ``durable`` flushes every file and the parent folder to disk before and after
    the rename (checkpoints that must survive a power cut); ``shared`` makes the result readable by
    everyone (``0755`` folders, ``0644`` files), since some writers create ``0600`` files.

    Whether an existing ``target`` may be replaced at all is the caller's decision, checked before
    (:func:`check_replaceable`).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    sweep_leftovers(target)
    tmp = Path(tempfile.mkdtemp(prefix=work_prefix(target), suffix=".tmp", dir=target.parent))
    try:
        yield tmp
        if durable:
            fsync_tree(tmp)
        os.chmod(tmp, 0o755)
        if shared:
            for path in tmp.rglob("*"):
                os.chmod(path, 0o755 if path.is_dir() else 0o644)
        if target.exists():
            old = target.with_name(f"{work_prefix(target)}deleting")
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
        if durable:
            fsync_dir(target.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
